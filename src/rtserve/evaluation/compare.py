"""The comparison of two models on the same rows: every metric, overall and per segment, with
bootstrap intervals and flags.

A metric's difference is **flagged** in a segment when all three hold:

1. it is worse than its tolerance (``auc_drop > 0.01``: NEW's AUC is more than 0.01 below OLD's);
2. its confidence interval lies entirely above zero (NEW is worse, and chance does not explain
   it: a drop within the noise of a small segment is shown but not flagged);
3. the segment has at least ``min_rows`` rows (below that a bootstrap interval is not trusted).

The tolerance decides how much worse matters; the interval decides whether the data show it.
Improvements are never flagged. Differences are oriented so that positive means NEW is worse
(``rtserve.evaluation.metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtserve.evaluation import bootstrap
from rtserve.evaluation.metrics import (
    BY_DELTA,
    SHARED,
    Metric,
    Outcomes,
    Resampler,
    calibration_curve,
    oriented,
    oriented_array,
    paired_point,
    point,
)
from rtserve.evaluation.pairing import Paired
from rtserve.evaluation.segments import DEFAULT_MAX_SEGMENTS, Grouping, group
from rtserve.types import FloatArray, Task

#: Bootstrap resamples unless ``--resamples`` says otherwise.
DEFAULT_RESAMPLES = 500
#: Segments with fewer rows are reported but never flagged.
DEFAULT_MIN_ROWS = 30
#: Bins of the score distributions.
DISTRIBUTION_BINS = 20
#: The name of the segment of all rows.
OVERALL = "overall"
#: How the flag rule reads in the report and summary.
FLAG_RULE = (
    "flagged when the difference (positive = NEW worse) exceeds its tolerance, its "
    "{confidence:.0%} bootstrap interval lies entirely above zero, and the segment has at "
    "least {min_rows} rows"
)


@dataclass(frozen=True)
class Options:
    """How the numbers are computed and judged."""

    resamples: int = DEFAULT_RESAMPLES
    confidence: float = 0.95
    seed: int = 0
    tolerances: Mapping[str, float] = field(default_factory=dict)
    max_segments: int = DEFAULT_MAX_SEGMENTS
    min_rows: int = DEFAULT_MIN_ROWS

    def tolerance(self, metric: Metric) -> float:
        """The tolerance of ``metric``'s difference (given, or its default)."""
        return self.tolerances.get(metric.delta, metric.tolerance)

    def rule(self) -> str:
        """The flag rule in words."""
        return FLAG_RULE.format(confidence=self.confidence, min_rows=self.min_rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, every tolerance spelled out."""
        return {
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
            "max_segments": self.max_segments,
            "min_rows": self.min_rows,
            "tolerances": {m.delta: self.tolerance(m) for m in BY_DELTA.values()},
            "flag_rule": self.rule(),
        }


@dataclass(frozen=True)
class Check:
    """One metric in one segment: each model's value, the difference, its interval, the flag."""

    metric: Metric
    old: float | None
    new: float | None
    value: float | None
    interval: tuple[float, float] | None
    tolerance: float
    flagged: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "metric": self.metric.name,
            "delta": self.metric.delta,
            "old": _finite(self.old),
            "new": _finite(self.new),
            "value": _finite(self.value),
            "ci": None if self.interval is None else [_finite(v) for v in self.interval],
            "tolerance": self.tolerance,
            "relative": self.metric.relative,
            "flagged": self.flagged,
            "note": self.note,
        }


@dataclass(frozen=True)
class SegmentResult:
    """Every check of one segment (or of all rows), the agreement and the output deltas."""

    field: str | None
    value: str | None
    rows: int
    flaggable: bool
    checks: list[Check]
    agreement: float | None
    agreement_interval: tuple[float, float] | None
    deltas: dict[str, Any]

    @property
    def name(self) -> str:
        """``country=FR``, or ``overall``."""
        return OVERALL if self.field is None else f"{self.field}={self.value}"

    def check(self, delta: str) -> Check | None:
        """The check of the difference named ``delta``, if computed here."""
        return next((c for c in self.checks if c.metric.delta == delta), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "segment": self.name,
            "field": self.field,
            "value": self.value,
            "rows": self.rows,
            "flaggable": self.flaggable,
            "agreement": _finite(self.agreement),
            "agreement_ci": None
            if self.agreement_interval is None
            else [_finite(v) for v in self.agreement_interval],
            "checks": [c.to_dict() for c in self.checks],
            "deltas": self.deltas,
        }


@dataclass(frozen=True)
class Flag:
    """A flagged check: where, which difference, how large."""

    segment: SegmentResult
    check: Check

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "segment": self.segment.name,
            "field": self.segment.field,
            "value": self.segment.value,
            "rows": self.segment.rows,
            "metric": self.check.metric.delta,
            "difference": _finite(self.check.value),
            "ci": None if self.check.interval is None else list(self.check.interval),
            "tolerance": self.check.tolerance,
            "old": _finite(self.check.old),
            "new": _finite(self.check.new),
        }


@dataclass
class Comparison:
    """Everything ``rtserve compare`` found; ``to_dict`` is ``summary.json``."""

    paired: Paired
    source: str
    labels: str | None
    options: Options
    overall: SegmentResult
    groupings: list[Grouping]
    segments: list[SegmentResult]
    distributions: dict[str, Any]
    calibration: dict[str, Any] | None
    served: dict[str, int] = field(default_factory=dict)

    @property
    def flags(self) -> list[Flag]:
        """Every flagged check, overall first, then segments in report order."""
        return [
            Flag(result, check)
            for result in [self.overall, *self.segments]
            for check in result.checks
            if check.flagged
        ]

    @property
    def positive(self) -> str | None:
        """The positive class of a binary classifier."""
        classes = self.paired.classes or []
        return classes[1] if len(classes) == 2 else None

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable summary: every number of the report."""
        paired = self.paired
        return {
            "old": paired.old.to_dict(),
            "new": paired.new.to_dict(),
            "data": {
                "source": self.source,
                "labels": self.labels,
                "rows_read": paired.rows_read,
                "rows_compared": paired.rows,
                "rows_invalid": paired.invalid_count,
                "invalid_reasons": [
                    {"by": by, "field": name, "rule": rule, "rows": count}
                    for (by, name, rule), count in paired.invalid_reasons.most_common()
                ],
                "invalid_rows": [row.to_dict() for row in paired.invalid],
                "served": self.served,
            },
            "task": paired.task.value,
            "classes": paired.classes,
            "positive_class": self.positive,
            "options": self.options.to_dict(),
            "overall": self.overall.to_dict(),
            "segment_fields": [
                {
                    "field": g.field,
                    "values": g.distinct,
                    "shown": len(g.segments) - (1 if g.other_values else 0),
                    "other_values": g.other_values,
                    "other_rows": g.other_rows,
                }
                for g in self.groupings
            ],
            "segments": [s.to_dict() for s in self.segments],
            "flags": [f.to_dict() for f in self.flags],
            "distributions": self.distributions,
            "calibration": self.calibration,
        }


def compare(
    paired: Paired,
    *,
    source: str,
    labels: str | None,
    specs: list[tuple[str, ...]],
    options: Options,
    served: Mapping[str, int] | None = None,
) -> Comparison:
    """Compute every check overall and per segment, with intervals and flags."""
    outcomes = Outcomes.from_paired(paired)
    overall = evaluate(outcomes, None, None, options)
    groupings = group(paired.fields, specs, options.max_segments)
    segments = [
        evaluate(outcomes.take(segment.index), segment.field, segment.value, options)
        for grouping in groupings
        for segment in grouping.segments
    ]
    calibration = None
    if outcomes.truth is not None and outcomes.old_proba is not None:
        calibration = {
            "kind": "positive class" if outcomes.positive is not None else "top label",
            "old": calibration_curve(outcomes, "old"),
            "new": calibration_curve(outcomes, "new"),
        }
    return Comparison(
        paired=paired,
        source=source,
        labels=labels,
        options=options,
        overall=overall,
        groupings=groupings,
        segments=segments,
        distributions=distributions(outcomes),
        calibration=calibration,
        served=dict(served or {}),
    )


def evaluate(
    o: Outcomes, field_name: str | None, value: str | None, options: Options
) -> SegmentResult:
    """The checks of one set of rows."""
    metrics = o.metrics()
    name = OVERALL if field_name is None else f"{field_name}={value}"
    resampled: dict[str, list[FloatArray]] = {m.delta: [] for m in metrics}
    agreement_samples: list[FloatArray] = []
    rng = bootstrap.generator(options.seed, name)
    resampler = Resampler(o, metrics)
    for weights in bootstrap.weight_blocks(o.rows, options.resamples, rng):
        values = resampler.block(weights)
        for metric in metrics:
            if metric.name == "agreement":
                agreement_samples.append(values[metric.delta, SHARED])
                resampled[metric.delta].append(1.0 - values[metric.delta, SHARED])
            elif metric.paired:
                resampled[metric.delta].append(values[metric.delta, SHARED])
            else:
                old, new = values[metric.delta, "old"], values[metric.delta, "new"]
                resampled[metric.delta].append(oriented_array(metric, old, new))
    flaggable = o.rows >= options.min_rows
    checks = [
        _check(metric, o, np.concatenate(resampled[metric.delta]), options, flaggable)
        for metric in metrics
    ]
    agreement = agreement_interval = None
    if o.task is Task.CLASSIFICATION:
        agreement = paired_point(BY_DELTA["disagreement"], o)
        agreement_interval = bootstrap.interval(
            np.concatenate(agreement_samples), options.confidence
        )
    return SegmentResult(
        field=field_name,
        value=value,
        rows=o.rows,
        flaggable=flaggable,
        checks=checks,
        agreement=agreement,
        agreement_interval=agreement_interval,
        deltas=output_deltas(o),
    )


def _check(
    metric: Metric, o: Outcomes, samples: FloatArray, options: Options, flaggable: bool
) -> Check:
    tolerance = options.tolerance(metric)
    interval = bootstrap.interval(samples, options.confidence)
    if metric.paired:
        shared = paired_point(metric, o)
        old_value = new_value = None
        value: float | None = 1.0 - shared if metric.name == "agreement" else shared
        note = ""
    else:
        old_value, new_value = point(metric, o)
        value = None
        note = ""
        if old_value is None or new_value is None:
            note = "undefined here (e.g. one class only)"
        else:
            value = oriented(metric, old_value, new_value)
    flagged = bool(
        flaggable
        and value is not None
        and value > tolerance
        and interval is not None
        and interval[0] > 0
    )
    if not flaggable and not note:
        note = f"fewer than {options.min_rows} rows: not flagged"
    return Check(metric, old_value, new_value, value, interval, tolerance, flagged, note)


def output_deltas(o: Outcomes) -> dict[str, Any]:
    """How far the outputs moved, row by row: quantiles of |Δ probability| or |Δ value|.

    ``headline`` is what the ``p99_delta`` and ``max_delta`` gates read: the positive class of
    a binary classifier, the largest move over classes of a multiclass one, the value of a
    regressor.
    """
    if o.task is Task.REGRESSION:
        delta = np.asarray(o.new_values) - np.asarray(o.old_values)
        shifted = _quantiles(np.abs(delta))
        return {"headline": shifted, "value": {**shifted, "mean_signed": float(delta.mean())}}
    if o.old_proba is None or o.new_proba is None:
        return {}
    moved = np.abs(o.new_proba - o.old_proba)
    per_class = [_quantiles(moved[:, c]) for c in range(moved.shape[1])]
    if o.positive is not None:
        return {"headline": per_class[o.positive], "per_class": per_class}
    largest = _quantiles(moved.max(axis=1))
    return {"headline": largest, "per_class": per_class, "max_over_classes": largest}


def _quantiles(values: FloatArray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    p50, p99 = np.quantile(values, [0.5, 0.99])
    return {"p50": float(p50), "p99": float(p99), "max": float(values.max())}


def distributions(o: Outcomes) -> dict[str, Any]:
    """Histograms of both models' scores on shared bins (what the report plots)."""
    if o.task is Task.CLASSIFICATION and o.old_proba is None:
        return {}
    old, new = o.score("old"), o.score("new")
    if o.task is Task.REGRESSION:
        edges = np.histogram_bin_edges(np.concatenate([old, new]), bins=DISTRIBUTION_BINS)
        kind = "value"
    else:
        edges = np.linspace(0.0, 1.0, DISTRIBUTION_BINS + 1)
        kind = "P(positive class)" if o.positive is not None else "top class probability"
    return {
        "kind": kind,
        "edges": edges.tolist(),
        "old": np.histogram(old, bins=edges)[0].tolist(),
        "new": np.histogram(new, bins=edges)[0].tolist(),
    }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such a value is written as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
