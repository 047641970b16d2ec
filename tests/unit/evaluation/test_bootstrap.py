"""Paired bootstrap intervals: they cover the true difference about as often as they claim, they
are reproducible from the seed, and the resamples are real draws of n rows."""

from __future__ import annotations

import numpy as np
import pytest

from rtserve.evaluation import bootstrap
from rtserve.evaluation.compare import Options, evaluate
from rtserve.evaluation.metrics import Outcomes
from rtserve.types import Task

#: Synthetic truth: OLD is right on 85 % of rows, NEW on 80 %, independently.
OLD_RIGHT, NEW_RIGHT = 0.85, 0.80
TRUE_DROP = OLD_RIGHT - NEW_RIGHT
TRUE_DISAGREEMENT = OLD_RIGHT * (1 - NEW_RIGHT) + (1 - OLD_RIGHT) * NEW_RIGHT


def _draw(rng: np.random.Generator, n: int) -> Outcomes:
    truth = rng.integers(0, 2, n)
    old = np.where(rng.random(n) < OLD_RIGHT, truth, 1 - truth)
    new = np.where(rng.random(n) < NEW_RIGHT, truth, 1 - truth)

    def proba(labels: np.ndarray) -> np.ndarray:
        p = np.where(labels == 1, 0.8, 0.2) + rng.uniform(-0.1, 0.1, n)
        return np.column_stack([1 - p, p])

    return Outcomes(
        task=Task.CLASSIFICATION,
        n_classes=2,
        positive=1,
        old_labels=old,
        new_labels=new,
        old_proba=proba(old),
        new_proba=proba(new),
        truth=truth,
    )


def test_intervals_cover_the_true_difference_about_as_often_as_claimed() -> None:
    rng = np.random.default_rng(2024)
    options = Options(resamples=200, confidence=0.9)
    trials = 100
    covered = {"accuracy_drop": 0, "disagreement": 0}
    truth = {"accuracy_drop": TRUE_DROP, "disagreement": TRUE_DISAGREEMENT}
    for trial in range(trials):
        result = evaluate(_draw(rng, 600), "trial", str(trial), options)
        for name in covered:
            check = result.check(name)
            assert check is not None
            assert check.interval is not None
            low, high = check.interval
            covered[name] += low <= truth[name] <= high
    for name, hits in covered.items():
        # 90 % intervals: with 100 trials, coverage outside 80-98 % would be a broken bootstrap
        assert 0.80 <= hits / trials <= 0.98, (name, hits / trials)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    o = _draw(np.random.default_rng(1), 400)
    first = evaluate(o, "country", "FR", Options(resamples=200, seed=7))
    again = evaluate(o, "country", "FR", Options(resamples=200, seed=7))
    other = evaluate(o, "country", "FR", Options(resamples=200, seed=8))
    assert first.check("auc_drop") == again.check("auc_drop")
    assert first.check("auc_drop").interval != other.check("auc_drop").interval


def test_resamples_draw_n_rows_each_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "MAX_CELLS", 1000)
    blocks = list(bootstrap.weight_blocks(300, 25, np.random.default_rng(0)))
    assert sum(b.shape[0] for b in blocks) == 25
    assert all(b.shape[0] * b.shape[1] <= 1000 for b in blocks)
    weights = np.vstack(blocks)
    assert (weights.sum(axis=1) == 300).all()
    # drawn with replacement: about 1 - 1/e of the rows appear in a resample
    assert 0.55 < np.mean(weights > 0) < 0.72


def test_an_interval_is_withheld_when_too_few_resamples_are_defined() -> None:
    samples = np.r_[np.full(80, 0.1), np.full(20, np.nan)]
    assert bootstrap.interval(samples, 0.95) is None
    low, high = bootstrap.interval(np.linspace(0, 1, 101), 0.9)
    assert (low, high) == pytest.approx((0.05, 0.95))
