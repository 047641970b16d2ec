"""Drift: PSI and shares per feature over a sliding window, judged against thresholds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtserve.demo import card_transactions
from rtserve.observability.drift import DriftMonitor, DriftObserver, psi
from rtserve.observability.metrics import Metrics
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
