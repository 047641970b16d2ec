"""The promotion gate: wait without samples, break on a real regression, pass a healthy canary."""

from __future__ import annotations

import numpy as np

from rtserve.rollout.gate import Agreement, ArmFigures, Quality, evaluate
from rtserve.rollout.spec import GateSpec

RNG = np.random.default_rng(3)


def arm(requests: int, errors: int = 0, latency: float = 0.002, shift: float = 0.0) -> ArmFigures:
    return ArmFigures(
        requests=requests,
        errors=errors,
        latencies=RNG.normal(latency, latency / 10, requests - errors).clip(1e-5),
        scores=(RNG.beta(2, 5, requests) + shift).clip(0, 1),
    )


GATE = GateSpec(min_requests=200)


def test_the_gate_waits_until_both_arms_have_their_minimum() -> None:
    result = evaluate(GATE, arm(50), arm(5000))
    assert result.verdict == "wait"
    assert "needs 200 requests per arm (canary 50" in result.describe()


def test_a_healthy_canary_passes_every_check() -> None:
    result = evaluate(GATE, arm(400), arm(4000))
    assert result.verdict == "pass", result.describe()
    assert {c.name for c in result.checks} == {"errors", "p99_ratio", "psi"}


def test_a_canary_failing_one_request_in_ten_breaks_the_error_check() -> None:
    result = evaluate(GATE, arm(400, errors=40), arm(4000))
    assert result.verdict == "break"
    assert [c.name for c in result.broken] == ["errors"]
    assert result.to_dict()["canary"]["errors"] == 40


def test_a_slow_canary_breaks_the_latency_check_and_a_shifted_one_the_psi_check() -> None:
    assert [c.name for c in evaluate(GATE, arm(400, latency=0.01), arm(4000)).broken] == [
        "p99_ratio"
    ]
    assert [c.name for c in evaluate(GATE, arm(400, shift=0.4), arm(4000)).broken] == ["psi"]


def test_shadow_disagreement_is_judged_when_the_gate_asks_for_it() -> None:
    gate = GateSpec(min_requests=200, max_disagreement=0.02)
    assert evaluate(gate, arm(400), arm(4000), None).verdict == "wait"
    broken = evaluate(gate, arm(400), arm(4000), Agreement(compared=500, disagreed=60))
    assert [c.name for c in broken.broken] == ["disagreement"]
    assert evaluate(gate, arm(400), arm(4000), Agreement(500, 2)).verdict == "pass"


def test_an_accuracy_threshold_waits_for_labels_and_then_judges_them() -> None:
    gate = GateSpec(min_requests=200, max_accuracy_drop=0.02)
    waiting = evaluate(gate, arm(400), arm(4000))
    assert waiting.verdict == "wait"
    assert "labels are not joined" in waiting.describe()
    worse = Quality(labelled=400, correct=320, reference_labelled=4000, reference_correct=3600)
    assert [c.name for c in evaluate(gate, arm(400), arm(4000), quality=worse).broken] == [
        "accuracy"
    ]
    same = Quality(labelled=400, correct=359, reference_labelled=4000, reference_correct=3600)
    assert evaluate(gate, arm(400), arm(4000), quality=same).verdict == "pass"
