"""The batcher's cost model: what a prediction costs, and which batches may run on the event loop."""

from __future__ import annotations

import sys

import pytest

from rtserve.engine.batch_cost import INLINE_MAX_ROWS, RECENT, CostModel, prediction_cost


def test_a_predictions_cost_is_its_cpu_time_unless_it_took_longer_than_a_switch_interval() -> None:
    switch = sys.getswitchinterval()
    # a fast call that waited for the GIL in a worker thread: the wait is not the model's
    assert prediction_cost(wall=switch / 2, cpu=0.0001) == 0.0001
    # a call that blocked (I/O, a lock, a hang): its wall time, however little CPU it used
    assert prediction_cost(wall=switch * 4, cpu=0.0001) == switch * 4


def test_a_new_model_never_runs_inline_until_a_prediction_was_measured() -> None:
    cost = CostModel(inline_below=1.0)
    assert not cost.lone_inline(1)
    assert not cost.batch_inline(1)
    cost.learn(0.0001, 1)
    assert cost.lone_inline(1)
    assert cost.batch_inline(1)


def test_only_small_requests_run_inline_alone() -> None:
    cost = CostModel(inline_below=1.0)
    cost.learn(0.0001, 1)
    assert cost.lone_inline(INLINE_MAX_ROWS)
    assert not cost.lone_inline(INLINE_MAX_ROWS + 1)


def test_the_typical_cost_is_the_least_recent_one_so_one_slow_call_does_not_stick() -> None:
    cost = CostModel(inline_below=0.005)
    cost.learn(0.0001, 1)
    cost.learn(0.02, 1)  # the first call after loading, or a moment of CPU contention
    assert cost.typical_seconds == 0.0001
    assert cost.lone_inline(1)


def test_a_model_that_became_slow_leaves_the_event_loop_once_its_fast_calls_are_forgotten() -> None:
    cost = CostModel(inline_below=0.005)
    cost.learn(0.0001, 1)
    for _ in range(RECENT - 1):
        cost.learn(0.02, 1)
    assert cost.lone_inline(1)  # the fast call is still among the recent ones
    cost.learn(0.02, 1)
    assert cost.typical_seconds == 0.02
    assert not cost.lone_inline(1)


def test_a_batch_runs_inline_when_its_expected_cost_is_under_the_limit() -> None:
    cost = CostModel(inline_below=0.001)
    cost.learn(0.0001, 1)  # small batch: 0.1 ms; per row 0.1 ms
    cost.learn(0.00064, 64)  # a big batch teaches the per-row cost (10 us), not the typical one
    assert cost.typical_seconds == 0.0001
    assert cost.per_row == pytest.approx(0.00001)
    assert cost.batch_inline(64)  # 0.1 ms + 64 x 10 us = 0.74 ms
    assert not cost.batch_inline(128)  # 1.38 ms


def test_with_several_runtime_threads_every_batch_goes_to_the_pool() -> None:
    cost = CostModel(inline_below=1.0, concurrency=2)
    cost.learn(0.0001, 1)
    assert not cost.batch_inline(1)
    assert cost.lone_inline(1)  # an idle runtime's lone request still may
