"""Specification: the response cache is an LRU with a time to live, keyed by the canonical
validated input, bounded in entries and in rows per request, and it counts what it does."""

from __future__ import annotations

import numpy as np
import pytest

from rtserve.engine.cache import MAX_CACHED_ROWS, ResponseCache
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


class Clock:
    """A hand-turned clock, so expiry is exact rather than slept for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def columns(amount: float = 12.5, country: str | None = "DE", rows: int = 1) -> Columns:
    return {
        "amount": np.full(rows, amount, dtype=np.float64),
        "hour": np.full(rows, 3, dtype=np.int64),
        "country": np.array([country] * rows, dtype=object),
    }


def output(p: float = 0.25) -> ModelOutput:
    return ModelOutput(label=np.array([0]), probabilities=np.array([[1 - p, p]]))


def test_equal_validated_inputs_share_a_key_and_any_difference_changes_it() -> None:
    key = ResponseCache.key(columns())

    assert key == ResponseCache.key(columns())
    assert key == ResponseCache.key({name: values.copy() for name, values in columns().items()})
    assert key != ResponseCache.key(columns(amount=12.6))
    assert key != ResponseCache.key(columns(country="FR"))
    assert key != ResponseCache.key(columns(country=None))
    assert ResponseCache.key(columns(country=None)) != ResponseCache.key(columns(country="None"))
    as_float = {**columns(), "hour": columns()["hour"].astype(np.float64)}
    assert key != ResponseCache.key(as_float)  # int 3 vs float 3.0 (a missing-capable column)


def test_string_boundaries_are_part_of_the_key() -> None:
    def pair(a: str, b: str) -> Columns:
        return {"x": np.array([a], dtype=object), "y": np.array([b], dtype=object)}

    assert ResponseCache.key(pair("ab", "c")) != ResponseCache.key(pair("a", "bc"))


def test_requests_with_many_rows_are_not_cached() -> None:
    assert ResponseCache.key(columns(rows=MAX_CACHED_ROWS)) is not None
    assert ResponseCache.key(columns(rows=MAX_CACHED_ROWS + 1)) is None


def test_a_stored_output_is_a_hit_until_its_time_to_live_passes() -> None:
    clock = Clock()
    cache = ResponseCache(4, ttl_seconds=30.0, clock=clock)
    key = ResponseCache.key(columns())
    assert key is not None

    assert cache.get(key) is None
    cache.put(key, output(0.25))
    clock.now += 29.9
    hit = cache.get(key)
    clock.now += 0.1
    expired = cache.get(key)

    assert hit is not None
    assert hit.probabilities is not None
    assert hit.probabilities.tolist() == [[0.75, 0.25]]
    assert expired is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (1, 2, 1, 0)
    assert stats.hit_rate == pytest.approx(1 / 3)


def test_the_least_recently_used_entry_is_evicted_when_full() -> None:
    cache = ResponseCache(2, ttl_seconds=60.0)
    a, b, c = (ResponseCache.key(columns(amount=v)) for v in (1.0, 2.0, 3.0))
    assert a is not None
    assert b is not None
    assert c is not None
    cache.put(a, output(0.1))
    cache.put(b, output(0.2))
    assert cache.get(a) is not None  # a is now the most recently used

    cache.put(c, output(0.3))

    assert cache.get(b) is None
    assert cache.get(a) is not None
    assert cache.get(c) is not None
    stats = cache.stats()
    assert (stats.size, stats.capacity, stats.evictions) == (2, 2, 1)


def test_stored_outputs_are_private_read_only_copies() -> None:
    cache = ResponseCache(2, ttl_seconds=60.0)
    key = ResponseCache.key(columns())
    assert key is not None
    batch = np.array([[0.9, 0.1], [0.6, 0.4]])
    cache.put(key, ModelOutput(label=np.array([0]), probabilities=batch[1:]))
    batch[1, 1] = 0.99  # the batch array the request's slice came from changes later

    stored = cache.get(key)

    assert stored is not None
    assert stored.probabilities is not None
    assert stored.probabilities.tolist() == [[0.6, 0.4]]
    with pytest.raises(ValueError, match="read-only"):
        stored.probabilities[0, 0] = 0.0


def test_clear_drops_entries_and_keeps_counters() -> None:
    cache = ResponseCache(2, ttl_seconds=60.0)
    key = ResponseCache.key(columns())
    assert key is not None
    cache.put(key, output())
    assert cache.get(key) is not None

    cache.clear()

    assert cache.get(key) is None
    assert (cache.stats().hits, cache.stats().misses, cache.stats().size) == (1, 1, 0)


@pytest.mark.parametrize(("capacity", "ttl"), [(0, 60.0), (4, 0.0), (4, -1.0)])
def test_a_cache_needs_room_and_a_positive_time_to_live(capacity: int, ttl: float) -> None:
    with pytest.raises(ValueError, match=r"cache\.max_entries: 0 to switch it off"):
        ResponseCache(capacity, ttl_seconds=ttl)
