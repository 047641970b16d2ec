"""The compared numbers: the resampling forms of every metric give scikit-learn's values, and the
differences are oriented so that positive means NEW is worse."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from rtserve.evaluation.metrics import (
    BY_DELTA,
    Outcomes,
    oriented,
    paired_point,
    point,
    weighted,
    weighted_auc,
)
from rtserve.types import Task


def _classifier(n: int = 500, classes: int = 2, seed: int = 0, labelled: bool = True) -> Outcomes:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)

    def proba(noise: float) -> np.ndarray:
        logits = rng.normal(size=(n, classes)) * noise
        logits[np.arange(n), truth] += 1.0
        logits = np.round(logits, 1)  # ties, as real scores have
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    old, new = proba(1.0), proba(1.5)
    return Outcomes(
        task=Task.CLASSIFICATION,
        n_classes=classes,
        positive=1 if classes == 2 else None,
        old_labels=old.argmax(axis=1),
        new_labels=new.argmax(axis=1),
        old_proba=old,
        new_proba=new,
        truth=truth if labelled else None,
    )


def _regressor(n: int = 400, seed: int = 0) -> Outcomes:
    rng = np.random.default_rng(seed)
    truth = rng.normal(10, 3, n)
    old = truth + rng.normal(0, 1, n)
    new = truth + rng.normal(0.5, 1.5, n)
    return Outcomes(
        task=Task.REGRESSION, old_values=old, new_values=new, truth=truth, scale=float(old.std())
    )


@pytest.mark.parametrize("classes", [2, 3])
def test_every_classifier_metric_at_unit_weights_is_scikit_learns(classes: int) -> None:
    o = _classifier(classes=classes)
    ones = np.ones((1, o.rows))
    names = [m.name for m in o.metrics()]
    assert names == ["agreement", "auc", "accuracy", "log_loss", "brier", "ece"]
    for metric in o.metrics():
        if metric.paired:
            continue
        old, new = point(metric, o)
        w_old, w_new = weighted(metric, o, ones)
        assert w_old[0] == pytest.approx(old, rel=1e-12), metric.name
        assert w_new[0] == pytest.approx(new, rel=1e-12), metric.name


def test_the_point_values_are_scikit_learns_own_calls() -> None:
    o = _classifier(classes=2)
    y = o.truth
    old_auc, _ = point(BY_DELTA["auc_drop"], o)
    old_loss, _ = point(BY_DELTA["log_loss_increase"], o)
    old_brier, _ = point(BY_DELTA["brier_increase"], o)
    assert old_auc == sk.roc_auc_score(y, o.old_proba[:, 1])
    assert old_loss == pytest.approx(sk.log_loss(y, o.old_proba))
    assert old_brier == pytest.approx(sk.brier_score_loss(y, o.old_proba[:, 1]))


def test_multiclass_auc_is_the_one_vs_rest_macro_average() -> None:
    o = _classifier(classes=3)
    old, _ = point(BY_DELTA["auc_drop"], o)
    assert old == pytest.approx(sk.roc_auc_score(o.truth, o.old_proba, multi_class="ovr"))


def test_regressor_metrics_at_unit_weights_are_scikit_learns() -> None:
    o = _regressor()
    assert [m.delta for m in o.metrics()] == ["value_shift", "rmse_increase", "mae_increase"]
    ones = np.ones((1, o.rows))
    rmse_old, rmse_new = point(BY_DELTA["rmse_increase"], o)
    assert rmse_old == pytest.approx(sk.root_mean_squared_error(o.truth, o.old_values))
    assert weighted(BY_DELTA["rmse_increase"], o, ones)[1][0] == pytest.approx(rmse_new)
    mae_old, _ = point(BY_DELTA["mae_increase"], o)
    assert mae_old == pytest.approx(sk.mean_absolute_error(o.truth, o.old_values))
    shift = paired_point(BY_DELTA["value_shift"], o)
    assert shift == pytest.approx(np.mean(np.abs(o.new_values - o.old_values)) / o.scale)


def test_weighted_auc_equals_scikit_learn_with_the_same_weights() -> None:
    rng = np.random.default_rng(4)
    scores = np.round(rng.random(300), 2)  # many ties
    positive = rng.random(300) < scores
    counts = np.bincount(rng.integers(0, 300, 300), minlength=300).astype(float)
    expected = sk.roc_auc_score(positive, scores, sample_weight=counts)
    assert weighted_auc(scores, positive, counts[None, :])[0] == pytest.approx(expected)


def test_weighted_auc_is_undefined_for_a_resample_of_one_class() -> None:
    scores = np.array([0.1, 0.4, 0.8])
    positive = np.array([False, False, True])
    only_negatives = np.array([[1.0, 2.0, 0.0]])
    assert np.isnan(weighted_auc(scores, positive, only_negatives)[0])


def test_agreement_needs_no_labels_and_the_label_metrics_do() -> None:
    o = _classifier(labelled=False)
    assert [m.name for m in o.metrics()] == ["agreement"]
    expected = np.mean(o.old_labels == o.new_labels)
    assert paired_point(BY_DELTA["disagreement"], o) == pytest.approx(expected)


def test_differences_are_positive_when_new_is_worse() -> None:
    assert oriented(BY_DELTA["auc_drop"], 0.90, 0.85) == pytest.approx(0.05)
    assert oriented(BY_DELTA["auc_drop"], 0.85, 0.90) == pytest.approx(-0.05)
    assert oriented(BY_DELTA["log_loss_increase"], 0.30, 0.40) == pytest.approx(0.10)
    assert oriented(BY_DELTA["rmse_increase"], 2.0, 2.2) == pytest.approx(0.10)  # relative
