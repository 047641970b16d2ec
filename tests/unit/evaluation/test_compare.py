"""Flags: a difference is flagged only when it is beyond its tolerance, its interval is above zero
and its segment is large enough; segments beyond the top K are merged into '(other)'."""

from __future__ import annotations

import json

import numpy as np

from rtserve.evaluation.compare import Options, compare
from rtserve.evaluation.pairing import Paired, Side
from rtserve.evaluation.segments import OTHER
from rtserve.types import Task

OLD_SIDE = Side("fraud", "1", "sha256:old", "old")
NEW_SIDE = Side("fraud", "2", "sha256:new", "new")


def _paired(segments: dict[str, tuple[int, int]], seed: int = 0) -> Paired:
    """Rows per segment value: (rows, rows where NEW gets the label wrong and OLD does not).

    OLD is right on about 90 % of every segment; NEW copies OLD except on that many of the
    rows OLD gets right.
    """
    rng = np.random.default_rng(seed)
    truth, old, new, region = [], [], [], []
    for value, (rows, broken) in segments.items():
        y = rng.integers(0, 2, rows)
        o = np.where(rng.random(rows) < 0.9, y, 1 - y)
        n = o.copy()
        right = np.flatnonzero(o == y)[:broken]
        n[right] = 1 - y[right]
        truth.append(y)
        old.append(o)
        new.append(n)
        region += [value] * rows
    y, o, n = (np.concatenate(a) for a in (truth, old, new))

    def proba(labels: np.ndarray) -> np.ndarray:
        p = np.where(labels == 1, 0.85, 0.15)
        return np.column_stack([1 - p, p])

    return Paired(
        old=OLD_SIDE,
        new=NEW_SIDE,
        task=Task.CLASSIFICATION,
        classes=["0", "1"],
        positions=np.arange(y.size),
        old_labels=o,
        new_labels=n,
        old_proba=proba(o),
        new_proba=proba(n),
        truth=y,
        fields={"region": np.asarray(region, dtype=object)},
        rows_read=y.size,
    )


def _flagged(paired: Paired, **options: object) -> set[tuple[str, str]]:
    result = compare(
        paired,
        source="test",
        labels="y",
        specs=[("region",)],
        options=Options(resamples=300, **options),  # type: ignore[arg-type]
    )
    return {(f.segment.name, f.check.metric.delta) for f in result.flags}


def test_only_the_broken_segment_is_flagged() -> None:
    paired = _paired({"north": (800, 0), "south": (800, 0), "east": (800, 200)})
    flagged = _flagged(paired)
    assert {segment for segment, _ in flagged} == {"overall", "region=east"}
    assert ("region=east", "accuracy_drop") in flagged
    assert ("region=east", "disagreement") in flagged


def test_a_drop_within_tolerance_is_not_flagged() -> None:
    paired = _paired({"north": (2000, 10), "south": (2000, 10)})  # 0.5 % of rows
    result = compare(
        paired, source="t", labels="y", specs=[("region",)], options=Options(resamples=300)
    )
    check = result.overall.check("accuracy_drop")
    assert check is not None
    assert check.value is not None
    assert 0 < check.value < check.tolerance
    assert check.interval is not None
    assert check.interval[0] > 0
    assert not check.flagged


def test_a_drop_beyond_tolerance_that_noise_explains_is_not_flagged() -> None:
    # 40 rows, one of them broken: 2.5 % > 1 % tolerance, but a third of the resamples
    # miss that row, so the interval reaches zero
    paired = _paired({"tiny": (40, 1)})
    result = compare(
        paired, source="t", labels="y", specs=[("region",)], options=Options(resamples=300)
    )
    check = result.segments[0].check("accuracy_drop")
    assert check is not None
    assert check.value is not None
    assert check.interval is not None
    assert check.value > check.tolerance
    assert check.interval[0] <= 0
    assert not check.flagged


def test_a_segment_below_min_rows_is_shown_but_never_flagged() -> None:
    paired = _paired({"big": (1000, 0), "small": (25, 12)})
    assert ("region=small", "accuracy_drop") not in _flagged(paired)
    assert ("region=small", "accuracy_drop") in _flagged(paired, min_rows=20)


def test_improvements_are_never_flagged_though_disagreement_is_any_change() -> None:
    paired = _paired({"north": (800, 200)})
    paired.old_labels, paired.new_labels = paired.new_labels, paired.old_labels
    paired.old_proba, paired.new_proba = paired.new_proba, paired.old_proba
    assert _flagged(paired) == {("overall", "disagreement"), ("region=north", "disagreement")}


def test_a_tolerance_can_be_raised_per_difference() -> None:
    paired = _paired({"north": (800, 0), "east": (800, 200)})
    loose = dict.fromkeys(
        ("disagreement", "accuracy_drop", "auc_drop", "log_loss_increase", "brier_increase"), 1.0
    )
    assert {delta for _, delta in _flagged(paired, tolerances=loose)} == {"ece_increase"}


def test_segments_beyond_the_top_k_form_other_and_the_summary_says_so() -> None:
    paired = _paired({"a": (300, 0), "b": (200, 0), "c": (100, 0), "d": (50, 0)})
    result = compare(
        paired,
        source="t",
        labels="y",
        specs=[("region",)],
        options=Options(resamples=100, max_segments=2),
    )
    assert [(s.value, s.rows) for s in result.segments] == [("a", 300), ("b", 200), (OTHER, 150)]
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["segment_fields"] == [
        {"field": "region", "values": 4, "shown": 2, "other_values": 2, "other_rows": 150}
    ]


def test_a_metric_undefined_in_a_segment_is_shown_as_such_and_never_flagged() -> None:
    paired = _paired({"mixed": (600, 0), "pure": (200, 150)})
    pure = paired.fields["region"] == "pure"
    paired.truth = np.where(pure, 0, paired.truth)  # one class only: no AUC there
    result = compare(
        paired, source="t", labels="y", specs=[("region",)], options=Options(resamples=100)
    )
    segment = next(s for s in result.segments if s.value == "pure")
    auc = segment.check("auc_drop")
    assert (auc.old, auc.new, auc.value, auc.interval) == (None, None, None, None)
    assert auc.note == "undefined here (e.g. one class only)"
    assert not auc.flagged
    assert segment.check("disagreement").flagged  # the other checks still run
    assert json.dumps(result.to_dict(), allow_nan=False)
