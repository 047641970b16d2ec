"""The compared numbers: each model's metric (scikit-learn's) and the same metric under resampling.

Point values come from ``sklearn.metrics``. A bootstrap needs each metric hundreds of times per
segment, so every metric is also written as a function of row weights: a resample is a row of
integer weights (how often each row was drawn), and a block of resamples is one matrix product
(means) or one sort and cumulative sum (AUC). With every weight 1 these functions give exactly
scikit-learn's values (the tests check it), so the point value and its interval describe the
same number.

Every difference is oriented so that a positive value means NEW is worse: ``auc_drop`` is OLD's
AUC minus NEW's, ``log_loss_increase`` is NEW's minus OLD's; ``rmse_increase`` and
``mae_increase`` are relative to OLD's (0.05: 5 % worse), since their units are the target's.
``disagreement`` (1 - label agreement) and, for regressors, ``value_shift`` (mean |NEW - OLD|
in units of the standard deviation of OLD's outputs) compare the models with no label at all.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rtserve.evaluation.pairing import Paired
from rtserve.types import AnyArray, FloatArray, Task

#: Uniform bins of predicted probability for the expected calibration error and the curves.
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Metric:
    """A compared quantity: its difference's name, direction and default tolerance.

    ``name`` is the per-model metric (``auc``); ``delta`` the oriented difference that flags and
    gates use (``auc_drop``). A paired metric (agreement, value shift) has no per-model value.
    """

    name: str
    delta: str
    title: str
    tolerance: float
    higher_is_better: bool = False
    relative: bool = False
    paired: bool = False
    needs_labels: bool = True
    tasks: tuple[Task, ...] = (Task.CLASSIFICATION,)
    needs_probabilities: bool = False


METRICS: tuple[Metric, ...] = (
    Metric(
        "agreement", "disagreement", "label agreement", 0.02, higher_is_better=True,
        paired=True, needs_labels=False,
    ),
    Metric(
        "value_shift", "value_shift", "mean |Δ value| / sd(OLD)", 0.1, paired=True,
        needs_labels=False, tasks=(Task.REGRESSION,),
    ),
    Metric("auc", "auc_drop", "ROC AUC", 0.01, higher_is_better=True, needs_probabilities=True),
    Metric("accuracy", "accuracy_drop", "accuracy", 0.01, higher_is_better=True),
    Metric("log_loss", "log_loss_increase", "log-loss", 0.02, needs_probabilities=True),
    Metric("brier", "brier_increase", "Brier score", 0.01, needs_probabilities=True),
    Metric(
        "ece", "ece_increase", "expected calibration error", 0.02, needs_probabilities=True
    ),
    Metric("rmse", "rmse_increase", "RMSE", 0.05, relative=True, tasks=(Task.REGRESSION,)),
    Metric("mae", "mae_increase", "MAE", 0.05, relative=True, tasks=(Task.REGRESSION,)),
)  # fmt: skip
#: Metrics by the name of their difference (what ``--tolerance`` and ``--fail-on`` name).
BY_DELTA: dict[str, Metric] = {m.delta: m for m in METRICS}


@dataclass(frozen=True)
class Outcomes:
    """Both models' outputs (and the truth) on a set of rows, ready for every metric.

    Built once from ``Paired`` and cut per segment with ``take``. ``positive`` is the index of
    the positive class of a binary classifier (the second class, scikit-learn's convention);
    ``scale`` the standard deviation of OLD's outputs over all rows (the unit of
    ``value_shift``), the same for every segment.
    """

    task: Task
    n_classes: int = 0
    positive: int | None = None
    old_labels: AnyArray | None = None
    new_labels: AnyArray | None = None
    old_proba: FloatArray | None = None
    new_proba: FloatArray | None = None
    old_values: FloatArray | None = None
    new_values: FloatArray | None = None
    truth: AnyArray | None = None
    scale: float = 1.0

    @classmethod
    def from_paired(cls, paired: Paired) -> Outcomes:
        """The outcomes of every scored row."""
        if paired.task is Task.CLASSIFICATION:
            n_classes = len(paired.classes or [])
            return cls(
                task=paired.task,
                n_classes=n_classes,
                positive=1 if n_classes == 2 else None,
                old_labels=paired.old_labels,
                new_labels=paired.new_labels,
                old_proba=paired.old_proba,
                new_proba=paired.new_proba,
                truth=paired.truth,
            )
        old = paired.old_values
        spread = float(np.std(old)) if old is not None and old.size else 0.0
        return cls(
            task=paired.task,
            old_values=paired.old_values,
            new_values=paired.new_values,
            truth=paired.truth,
            scale=spread if spread > 0 else 1.0,
        )

    @property
    def rows(self) -> int:
        """Rows described."""
        first = self.old_labels if self.task is Task.CLASSIFICATION else self.old_values
        return 0 if first is None else int(first.shape[0])

    def take(self, index: AnyArray) -> Outcomes:
        """The outcomes of the rows at ``index``."""

        def cut(array: AnyArray | None) -> Any:
            return None if array is None else array[index]

        return replace(
            self,
            old_labels=cut(self.old_labels),
            new_labels=cut(self.new_labels),
            old_proba=cut(self.old_proba),
            new_proba=cut(self.new_proba),
            old_values=cut(self.old_values),
            new_values=cut(self.new_values),
            truth=cut(self.truth),
        )

    def applies(self, metric: Metric) -> bool:
        """Whether ``metric`` can be computed for these models and data."""
        if self.task not in metric.tasks:
            return False
        if metric.needs_labels and self.truth is None:
            return False
        return not (metric.needs_probabilities and self.old_proba is None)

    def metrics(self) -> list[Metric]:
        """Every metric that applies, in report order."""
        return [m for m in METRICS if self.applies(m)]

    # --- pieces the metrics share ------------------------------------------------------------

    def score(self, which: str) -> FloatArray:
        """The score a distribution shows: P(positive), the top probability, or the value."""
        if self.task is Task.REGRESSION:
            values = self.old_values if which == "old" else self.new_values
            return np.asarray(values, dtype=np.float64)
        proba = self.old_proba if which == "old" else self.new_proba
        if proba is None:
            raise ValueError("no probabilities")
        return proba[:, self.positive] if self.positive is not None else proba.max(axis=1)

    def calibration_pairs(self, which: str) -> tuple[FloatArray, FloatArray]:
        """(confidence, hit) per row: P(positive) and whether the row is positive (binary), or
        the top probability and whether its class is the true one (multiclass, top-label)."""
        proba = self.old_proba if which == "old" else self.new_proba
        if proba is None or self.truth is None:
            raise ValueError("calibration needs probabilities and labels")
        if self.positive is not None:
            return proba[:, self.positive], (self.truth == self.positive).astype(np.float64)
        top = proba.argmax(axis=1)
        return proba.max(axis=1), (top == self.truth).astype(np.float64)


# --- point values: scikit-learn ------------------------------------------------------------


def point(metric: Metric, o: Outcomes) -> tuple[float | None, float | None]:
    """Each model's value of a per-model metric (None where it is undefined, e.g. AUC of one
    class)."""
    return _point_one(metric, o, "old"), _point_one(metric, o, "new")


def _point_one(metric: Metric, o: Outcomes, which: str) -> float | None:
    from sklearn import metrics as sk

    y = o.truth
    if y is None or y.size == 0:
        return None
    if metric.name == "rmse":
        return float(sk.root_mean_squared_error(y, _values(o, which)))
    if metric.name == "mae":
        return float(sk.mean_absolute_error(y, _values(o, which)))
    if metric.name == "accuracy":
        return float(sk.accuracy_score(y, _labels(o, which)))
    if metric.name == "ece":
        ones = np.ones((1, y.size))
        return float(from_sums(metric, ones @ parts(metric, o, which), ones.sum(axis=1))[0])
    proba = _proba(o, which)
    labels = list(range(o.n_classes))
    with warnings.catch_warnings():
        # float32 runtimes' probabilities sum to 1 within 1e-7, not scikit-learn's 1e-8
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one")
        if metric.name == "log_loss":
            return float(sk.log_loss(y, proba, labels=labels))
        if metric.name == "brier":
            if o.positive is not None:
                return float(sk.brier_score_loss(y == o.positive, proba[:, o.positive]))
            return float(sk.brier_score_loss(y, proba, labels=labels))
    if metric.name == "auc":
        return _point_auc(sk.roc_auc_score, y, proba, o.positive)
    raise ValueError(f"{metric.name} has no point value")


def _point_auc(
    roc_auc: Callable[..., float], y: AnyArray, proba: FloatArray, positive: int | None
) -> float | None:
    """Binary: AUC of P(positive). Multiclass: the mean one-vs-rest AUC over the classes that
    occur with both outcomes here (scikit-learn's ``ovr`` macro when all of them do)."""
    classes = [positive] if positive is not None else range(proba.shape[1])
    found = [
        float(roc_auc(y == c, proba[:, c]))
        for c in classes
        if 0 < int(np.count_nonzero(y == c)) < y.size
    ]
    return float(np.mean(found)) if found else None


def paired_point(metric: Metric, o: Outcomes) -> float:
    """A paired metric's value: label agreement, or the value shift."""
    ones = np.ones((1, o.rows))
    return float(paired_weighted(metric, o, ones)[0])


# --- the same numbers under row weights (bootstrap) ----------------------------------------
#
# Every metric but AUC is a function of weighted sums of per-row columns: a mean of one column
# (accuracy, log-loss, Brier, MAE, agreement, value shift), the square root of one (RMSE), or
# the summed absolute value of ten (ECE, one column per calibration bin). ``parts`` gives those
# columns and ``from_sums`` the metric from their sums, so ``Resampler`` evaluates every such
# metric of both models over a block of resamples with one matrix product.

SHARED = "shared"


def parts(metric: Metric, o: Outcomes, which: str) -> FloatArray:
    """The per-row columns (rows x k) whose weighted sums give ``metric`` for ``which`` model
    (``SHARED`` for a paired metric)."""
    if metric.name == "ece":
        confidence, hit = o.calibration_pairs(which)
        return _calibration_gaps(confidence, hit)
    return np.asarray(_per_row(metric, o, which), dtype=np.float64).reshape(-1, 1)


def _per_row(metric: Metric, o: Outcomes, which: str) -> Any:
    """The one per-row column of a metric that is a mean (or, RMSE, the root of one)."""
    if metric.name == "agreement":
        return _labels(o, "old") == _labels(o, "new")
    if metric.name == "value_shift":
        return np.abs(_values(o, "new") - _values(o, "old")) / o.scale
    y = o.truth
    if y is None:
        raise ValueError(f"{metric.name} needs labels")
    if metric.name == "rmse":
        return (_values(o, which) - y) ** 2
    if metric.name == "mae":
        return np.abs(_values(o, which) - y)
    if metric.name == "accuracy":
        return _labels(o, which) == y
    proba = _proba(o, which)
    if metric.name == "log_loss":
        eps = np.finfo(np.float64).eps
        return -np.log(np.clip(proba[np.arange(y.size), y], eps, 1 - eps))
    if metric.name == "brier":
        if o.positive is not None:
            return (proba[:, o.positive] - (y == o.positive)) ** 2
        return ((proba - np.eye(o.n_classes)[y]) ** 2).sum(axis=1)
    raise ValueError(f"{metric.name} is not a function of weighted sums")


def from_sums(metric: Metric, sums: FloatArray, total: FloatArray) -> FloatArray:
    """``metric`` from the weighted sums of its ``parts`` (resamples x k) and the weights'
    totals (resamples)."""
    if metric.name == "ece":
        return np.abs(sums).sum(axis=1) / total  # type: ignore[no-any-return]
    mean = sums[:, 0] / total
    return np.sqrt(mean) if metric.name == "rmse" else mean


def _calibration_gaps(confidence: FloatArray, hit: FloatArray) -> FloatArray:
    """hit - confidence of each row, in the column of its bin (10 uniform bins): the weighted
    column sums over the total weight, absolute and summed, are the expected calibration error
    (each bin's |hit rate - mean confidence| weighted by its share of rows)."""
    bins = np.clip((confidence * CALIBRATION_BINS).astype(np.int64), 0, CALIBRATION_BINS - 1)
    gaps = np.zeros((confidence.size, CALIBRATION_BINS))
    gaps[np.arange(confidence.size), bins] = hit - confidence
    return gaps


class Resampler:
    """Every metric of one set of rows, for both models, over blocks of resamples.

    The per-row columns of all sum-based metrics are laid side by side once, so a block of
    resamples costs one matrix product; AUC sorts each model's scores once (``AucPlan``).
    """

    def __init__(self, o: Outcomes, metrics: list[Metric]) -> None:
        self._o = o
        self._metrics = metrics
        self._plans: dict[tuple[str, int], AucPlan] = {}
        self._slices: dict[tuple[str, str], slice] = {}
        columns: list[FloatArray] = []
        at = 0
        for metric in metrics:
            if metric.name == "auc":
                continue
            for which in (SHARED,) if metric.paired else ("old", "new"):
                part = parts(metric, o, which)
                self._slices[metric.delta, which] = slice(at, at + part.shape[1])
                columns.append(part)
                at += part.shape[1]
        self._columns = np.hstack(columns) if columns else np.zeros((o.rows, 0))

    def block(self, weights: FloatArray) -> dict[tuple[str, str], FloatArray]:
        """``{(delta, "old" | "new" | SHARED): values}``, one value per resample of the block."""
        sums = weights @ self._columns
        total = weights.sum(axis=1)
        values: dict[tuple[str, str], FloatArray] = {}
        for metric in self._metrics:
            if metric.name == "auc":
                for which in ("old", "new"):
                    values[metric.delta, which] = _auc(self._o, which, weights, self._plans)
                continue
            for which in (SHARED,) if metric.paired else ("old", "new"):
                values[metric.delta, which] = from_sums(
                    metric, sums[:, self._slices[metric.delta, which]], total
                )
        return values


def paired_weighted(metric: Metric, o: Outcomes, weights: FloatArray) -> FloatArray:
    """A paired metric for each row of ``weights`` (resamples x rows)."""
    return from_sums(metric, weights @ parts(metric, o, SHARED), weights.sum(axis=1))


def weighted(metric: Metric, o: Outcomes, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each model's value of ``metric`` for each row of ``weights`` (resamples x rows)."""
    if metric.name == "auc":
        plans: dict[tuple[str, int], AucPlan] = {}
        return _auc(o, "old", weights, plans), _auc(o, "new", weights, plans)
    total = weights.sum(axis=1)
    return (
        from_sums(metric, weights @ parts(metric, o, "old"), total),
        from_sums(metric, weights @ parts(metric, o, "new"), total),
    )


def _auc(
    o: Outcomes, which: str, weights: FloatArray, plans: dict[tuple[str, int], AucPlan]
) -> FloatArray:
    """AUC (binary) or the mean one-vs-rest AUC over the classes present (multiclass)."""
    y = o.truth
    if y is None:
        raise ValueError("auc needs labels")
    proba = _proba(o, which)
    classes = [o.positive] if o.positive is not None else range(o.n_classes)
    per_class = []
    for c in classes:
        if 0 < int(np.count_nonzero(y == c)) < y.size:
            plan = plans.get((which, c))
            if plan is None:
                plan = plans[which, c] = AucPlan.of(proba[:, c], y == c)
            per_class.append(weighted_auc(proba[:, c], y == c, weights, plan))
    if not per_class:
        return np.full(weights.shape[0], np.nan)
    stacked = np.vstack(per_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without a class
        return np.nanmean(stacked, axis=0)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class AucPlan:
    """What ``weighted_auc`` needs from the scores, computed once per segment: the rows of
    each class in score order, and for each positive how many negatives score below it and
    how many score below or the same."""

    positives: AnyArray
    negatives: AnyArray
    below: AnyArray
    through: AnyArray

    @classmethod
    def of(cls, scores: FloatArray, positive: AnyArray) -> AucPlan:
        """Sort once."""
        order = np.argsort(scores, kind="mergesort")
        ordered = scores[order]
        is_pos = positive[order].astype(bool)
        negatives_through = np.cumsum(~is_pos)  # negatives at sorted positions 0..i
        new_value = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.cumsum(new_value) - 1  # the tie group of each sorted position
        starts = np.flatnonzero(new_value)
        ends = np.r_[starts[1:], ordered.size] - 1
        below = np.where(starts > 0, negatives_through[starts - 1], 0)
        through = negatives_through[ends]
        groups = group[is_pos]
        return cls(order[is_pos], order[~is_pos], below[groups], through[groups])


def weighted_auc(
    scores: FloatArray, positive: AnyArray, weights: FloatArray, plan: AucPlan | None = None
) -> FloatArray:
    """ROC AUC (ties count one half, as scikit-learn's) for each row of ``weights``.

    The Mann-Whitney form: the weight of (positive, negative) pairs the scores order rightly,
    over all such pairs. With the scores sorted once (``AucPlan``), a cumulative sum of the
    negatives' weights per resample gives each positive the negative weight below its score
    and tied with it. NaN where a resample holds only one class.
    """
    plan = plan or AucPlan.of(scores, positive)
    w_pos = weights[:, plan.positives]
    cumulative = np.zeros((weights.shape[0], plan.negatives.size + 1))
    np.cumsum(weights[:, plan.negatives], axis=1, out=cumulative[:, 1:])
    pairs_right = w_pos * (cumulative[:, plan.below] + cumulative[:, plan.through])
    right = pairs_right.sum(axis=1) * 0.5
    pairs = w_pos.sum(axis=1) * cumulative[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, right / pairs, np.nan)


def calibration_curve(o: Outcomes, which: str) -> dict[str, list[float]]:
    """scikit-learn's reliability curve (uniform bins): mean predicted vs observed frequency."""
    from sklearn.calibration import calibration_curve as curve

    confidence, hit = o.calibration_pairs(which)
    if np.unique(hit).size < 2:
        return {"predicted": [], "observed": []}
    observed, predicted = curve(hit, confidence, n_bins=CALIBRATION_BINS, strategy="uniform")
    return {"predicted": predicted.tolist(), "observed": observed.tolist()}


def _labels(o: Outcomes, which: str) -> AnyArray:
    labels = o.old_labels if which == "old" else o.new_labels
    if labels is None:
        raise ValueError("no labels")
    return labels


def _proba(o: Outcomes, which: str) -> FloatArray:
    proba = o.old_proba if which == "old" else o.new_proba
    if proba is None:
        raise ValueError("no probabilities")
    return proba


def _values(o: Outcomes, which: str) -> FloatArray:
    values = o.old_values if which == "old" else o.new_values
    if values is None:
        raise ValueError("no values")
    return values


def oriented(metric: Metric, old: float, new: float) -> float:
    """The difference with positive meaning NEW is worse (relative to OLD where so defined)."""
    worse = old - new if metric.higher_is_better else new - old
    if metric.relative:
        return worse / old if old else (0.0 if worse == 0 else np.inf * np.sign(worse))
    return worse


def oriented_array(metric: Metric, old: FloatArray, new: FloatArray) -> FloatArray:
    """``oriented`` for arrays of resampled values."""
    worse = old - new if metric.higher_is_better else new - old
    if metric.relative:
        with np.errstate(invalid="ignore", divide="ignore"):
            return worse / old
    return worse
