"""Drift: PSI and shares per feature over a sliding window, judged against thresholds."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from rtserve.bundle.profile import NumericProfile
from rtserve.demo import card_transactions
from rtserve.observability import drift
from rtserve.observability.drift import (
    DriftMonitor,
    DriftObserver,
    _label_counts,
    _Numeric,
    _NumericBlock,
    psi,
)
from rtserve.observability.metrics import Metrics
from rtserve.runtimes.base import ModelOutput
from rtserve.settings import DriftSettings


def feed(monitor, predictor, frame, *, chunk=100, start=1_000.0):
    for i in range(0, len(frame), chunk):
        columns = predictor.validate(frame.iloc[i : i + chunk])
        monitor.add(columns, predictor.run(columns), start + i / 1000)


def test_psi_is_zero_for_identical_distributions_and_grows_with_the_shift():
    expected = np.full(10, 0.1)
    assert psi(expected, np.full(10, 50.0)) == pytest.approx(0.0)
    mild = np.array([60, 55, 50, 50, 50, 50, 50, 50, 45, 40.0])
    strong = np.array([0, 0, 0, 0, 0, 0, 0, 0, 100, 400.0])
    assert 0 < psi(expected, mild) < 0.1 < psi(expected, strong)


def test_traffic_from_the_training_distribution_stays_under_every_threshold(predictor, reference):
    monitor = DriftMonitor("fraud", "1", reference, DriftSettings(window_rows=2000))
    live, _ = card_transactions(2000, seed=99)
    feed(monitor, predictor, live)
    report = monitor.report(now=1_010.0)
    assert report["status"] == "ok", report["drifted_features"]
    assert report["drifted_features"] == []
    assert report["window"]["rows"] == 2000
    for name, score in report["features"].items():
        assert score["psi"] < 0.05, (name, score)
    assert report["outputs"]["psi"] < 0.05
    assert report["outputs"]["mean_confidence"] == pytest.approx(
        report["outputs"]["reference_mean_confidence"], abs=0.03
    )


def test_shifted_traffic_makes_exactly_the_shifted_features_cross(predictor, reference):
    monitor = DriftMonitor("fraud", "1", reference, DriftSettings(window_rows=2000))
    live, _ = card_transactions(2000, seed=98)
    live["amount"] = live["amount"] * 6  # a numeric shift
    live["channel"] = "web"  # a categorical shift
    feed(monitor, predictor, live)
    report = monitor.report(now=1_010.0)
    assert report["status"] == "drift"
    assert report["drifted_features"] == ["amount", "channel"]
    assert report["features"]["amount"]["reasons"] == ["psi"]
    assert report["features"]["channel"]["reasons"] == ["psi"]
    assert report["features"]["country"]["psi"] < 0.05


def test_unseen_categories_and_missing_values_are_scored(predictor, reference):
    monitor = DriftMonitor("fraud", "1", reference, DriftSettings(window_rows=1000))
    live, _ = card_transactions(1000, seed=97)
    live.loc[live.index[:200], "country"] = "XX"  # never seen in training
    live["distance_km"] = np.nan
    live.loc[live.index[-100:], "amount"] = 1e7  # far above the training maximum
    feed(monitor, predictor, live)
    features = monitor.report(now=1_010.0)["features"]
    assert features["country"]["unseen_share"] == pytest.approx(0.2)
    assert "unseen_share" in features["country"]["reasons"]
    assert features["distance_km"]["null_rate"] == 1.0
    assert "null_rate_change" in features["distance_km"]["reasons"]
    assert features["distance_km"]["psi"] is None  # nothing present to bin
    assert features["amount"]["out_of_range_share"] == pytest.approx(0.1, abs=0.005)
    assert "out_of_range_share" in features["amount"]["reasons"]


def test_the_window_keeps_the_newest_rows_and_forgets_old_ones_by_time(predictor, reference):
    config = DriftSettings(window_rows=500, window_s=60, min_rows=10)
    monitor = DriftMonitor("fraud", "1", reference, config)
    live, _ = card_transactions(1000, seed=96)
    feed(monitor, predictor, live)
    assert monitor.report(now=1_001.0)["window"]["rows"] == 500
    assert monitor.report(now=1_001.0 + 120)["window"]["rows"] == 0


def test_too_few_rows_are_reported_as_insufficient_data_not_as_drift(predictor, reference):
    monitor = DriftMonitor("fraud", "1", reference, DriftSettings(min_rows=200))
    live, _ = card_transactions(50, seed=95)
    live["amount"] = live["amount"] * 50
    feed(monitor, predictor, live)
    report = monitor.report(now=1_000.0)
    assert report["status"] == "insufficient_data"
    assert report["drifted_features"] == []
    assert report["features"]["amount"]["psi"] > 0.2  # scored, but not judged yet


def test_the_observer_sets_gauges_per_feature(predictor, reference):
    from rtserve.events import BatchInfo, PredictionEvent

    metrics = Metrics()
    observer = DriftObserver(
        lambda name, version: reference, DriftSettings(min_rows=10, refresh_s=60), metrics
    )
    live, _ = card_transactions(300, seed=94)
    live["amount"] = live["amount"] * 6
    columns = predictor.validate(live)
    event = PredictionEvent(
        "r", time.time(), "fraud", "1", predictor.digest, "records", columns,
        predictor.run(columns), 300, 0.01, BatchInfo(0, 0, 300, 1),
    )  # fmt: skip
    observer.start()
    observer.observe(event)
    observer.queue.flush()
    observer.close()  # the last tick refreshes the gauges
    sample = metrics.registry.get_sample_value
    labels = {"model": "fraud", "version": "1"}
    assert sample("rtserve_drift_psi", {**labels, "feature": "amount"}) > 0.2
    assert sample("rtserve_drift_features_drifted", labels) >= 1
    assert sample("rtserve_drift_window_rows", labels) == 300
    assert sample("rtserve_prediction_mean_confidence", labels) > 0.5


def test_a_model_without_a_profile_has_no_monitor():
    observer = DriftObserver(lambda name, version: None, DriftSettings())
    assert observer.report("fraud", "1") is None


def searched_summary(feature: _Numeric, values: np.ndarray) -> np.ndarray:
    """The per-field formulation the vectorised binning replaced: a binary search per value."""
    arr = np.asarray(values, dtype=np.float64)
    nulls = np.isnan(arr)
    present = arr[~nulls]
    out = np.zeros(feature.size)
    if feature.bins:
        where = np.searchsorted(feature.edges, present, side="right")
        out[: feature.bins] = np.bincount(where, minlength=feature.bins)[: feature.bins]
    out[-2] = nulls.sum()
    out[-1] = np.count_nonzero((present < feature.low) | (present > feature.high))
    return out


def numeric(
    edges: list[float], counts: list[int], low: float | None, high: float | None
) -> _Numeric:
    return _Numeric(
        NumericProfile(
            count=100, null_rate=0.0, min=low, max=high, mean=None, std=None,
            edges=edges, counts=counts,
        )
    )  # fmt: skip


@pytest.mark.parametrize("chunk", [drift._COMPARE_CHUNK, 64])  # 64: several chunks of rows
def test_binning_every_numeric_field_at_once_counts_exactly_as_a_search_per_field(
    chunk, monkeypatch
):
    monkeypatch.setattr(drift, "_COMPARE_CHUNK", chunk)
    rng = np.random.default_rng(7)
    features = [
        numeric(sorted(rng.normal(size=9).tolist()), [10] * 10, -2.0, 2.0),
        numeric([-1.0, 0.0, 1.0], [5, 5, 5, 5], None, 1.5),  # fewer edges than the others
        numeric([0.0, 0.0, np.inf], [1, 2, 3, 4], -np.inf, None),  # repeated and infinite edges
        numeric([0.5], [3, 4, 5, 6, 7], 0.0, 1.0),  # more bins than edges + 1
        numeric([-1.0, 0.0, 1.0], [1, 1], -1.0, 1.0),  # fewer bins than edges + 1
        numeric([], [], None, None),  # a field never present in training
        numeric([2.0, -2.0], [1, 1, 1], -3.0, 3.0),  # unsorted: keeps the binary search
    ]
    for rows in (0, 1, 5, 300):
        block = rng.normal(scale=2, size=(len(features), rows))
        block[rng.random(block.shape) < 0.1] = np.nan
        block[rng.random(block.shape) < 0.05] = np.inf
        block[rng.random(block.shape) < 0.05] = -np.inf
        if rows:
            block[:, 0] = 0.0  # exactly on an edge
        for feature, values in zip(features, block, strict=True):
            np.testing.assert_array_equal(
                feature.summarize(values), searched_summary(feature, values)
            )
        sortable = [(str(i), f) for i, f in enumerate(features) if f.sorted_edges]
        places, offset = [], 0
        for _, feature in sortable:
            places.append(slice(offset, offset + feature.size))
            offset += feature.size
        summary = np.zeros(offset)
        _NumericBlock(
            [(n, f, p) for (n, f), p in zip(sortable, places, strict=True)]
        ).summarize_into(summary, block[[int(n) for n, _ in sortable]])
        for (name, feature), place in zip(sortable, places, strict=True):
            np.testing.assert_array_equal(
                summary[place], searched_summary(feature, block[int(name)])
            )


@pytest.mark.parametrize(
    "labels",
    [
        np.array([1, 0, 1, 1, 7]),
        np.array([True, False, True]),
        np.array(["yes", "no", "yes", "maybe"]),
        np.array([0.0, -0.0, 1.5, np.nan, np.nan]),
        np.array([1, True, "a", None], dtype=object),
        np.array([], dtype=np.int64),
    ],
)
def test_labels_are_counted_by_their_str_as_each_label_one_by_one(labels):
    assert dict(_label_counts(labels)) == dict(Counter(str(v) for v in labels.tolist()))


def test_a_batch_of_requests_makes_the_report_of_their_concatenation(predictor, reference):
    live, _ = card_transactions(400, seed=93)
    live.loc[live.index[:40], "country"] = "XX"
    live.loc[live.index[50:90], "distance_km"] = np.nan
    requests = [predictor.validate(live.iloc[i : i + 4]) for i in range(0, 400, 4)]
    outputs = [predictor.run(columns) for columns in requests]
    one_by_one = DriftMonitor("fraud", "1", reference, DriftSettings(min_rows=10))
    joined = DriftMonitor("fraud", "1", reference, DriftSettings(min_rows=10))
    one_by_one.add_requests(requests, outputs, 1_000.0)
    joined.add(
        {name: np.concatenate([r[name] for r in requests]) for name in requests[0]},
        ModelOutput.concat(outputs),
        1_000.0,
    )
    assert one_by_one.report(now=1_001.0) == joined.report(now=1_001.0)


def test_gauges_are_recomputed_only_when_the_window_changed(predictor, reference, monkeypatch):
    from rtserve.events import BatchInfo, PredictionEvent

    metrics = Metrics()
    observer = DriftObserver(lambda name, version: reference, DriftSettings(min_rows=10), metrics)
    live, _ = card_transactions(50, seed=92)
    columns = predictor.validate(live)
    event = PredictionEvent(
        "r", time.time(), "fraud", "1", predictor.digest, "records", columns,
        predictor.run(columns), 50, 0.01, BatchInfo(0, 0, 50, 1),
    )  # fmt: skip
    monitor = observer.monitor("fraud", "1")
    assert monitor is not None
    reports = []
    report = monitor.report
    monkeypatch.setattr(monitor, "report", lambda: reports.append(1) or report())
    observer.observe(event)
    observer.queue.flush()  # no thread started: drained here
    observer.refresh_gauges()
    observer.refresh_gauges()  # nothing changed: the gauges already hold these scores
    assert len(reports) == 1
    observer.observe(event)
    observer.queue.flush()
    observer.refresh_gauges()
    assert len(reports) == 2
    labels = {"model": "fraud", "version": "1"}
    assert metrics.registry.get_sample_value("rtserve_drift_window_rows", labels) == 100
