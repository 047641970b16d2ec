"""Specification: the reference profile and the validation sample stored in every bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve import Bundle
from rtserve.bundle.profile import N_BINS, CategoricalProfile, NumericProfile
from rtserve.bundle.sample import DEFAULT_ROWS
from rtserve.types import Task


@pytest.fixture(scope="module")
def fraud_bundle(fraud_bundle_dir: Path) -> Bundle:
    return Bundle.open(fraud_bundle_dir)


def test_numeric_features_have_quantile_edges_and_counts_per_bin(
    fraud_bundle: Bundle, transactions: pd.DataFrame
) -> None:
    amount = fraud_bundle.read_profile().features["amount"]
    assert isinstance(amount, NumericProfile)
    present = transactions["amount"].dropna().to_numpy()
    assert len(amount.edges) == N_BINS - 1
    assert amount.edges == sorted(amount.edges)
    assert len(amount.counts) == len(amount.edges) + 1
    assert sum(amount.counts) == present.size
    np.testing.assert_allclose(
        amount.edges, np.quantile(present, np.linspace(0, 1, N_BINS + 1)[1:-1])
    )
    assert (amount.min, amount.max) == (present.min(), present.max())


def test_null_rates_are_those_of_the_sample(
    fraud_bundle: Bundle, transactions: pd.DataFrame
) -> None:
    features = fraud_bundle.read_profile().features
    for name in transactions.columns:
        assert features[name].null_rate == pytest.approx(transactions[name].isna().mean()), name
    assert features["amount"].null_rate > 0
    assert features["merchant"].null_rate > 0


def test_categorical_features_have_value_frequencies(
    fraud_bundle: Bundle, transactions: pd.DataFrame
) -> None:
    features = fraud_bundle.read_profile().features
    country = features["country"]
    assert isinstance(country, CategoricalProfile)
    expected = transactions["country"].value_counts(normalize=True).to_dict()
    assert country.frequencies == pytest.approx(expected)
    assert sum(country.frequencies.values()) + country.other == pytest.approx(1.0)
    card_present = features["card_present"]
    assert isinstance(card_present, CategoricalProfile)
    assert set(card_present.frequencies) == {"true", "false"}


def test_a_classifier_profile_holds_the_class_and_confidence_distribution(
    fraud_bundle: Bundle, fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    outputs = fraud_bundle.read_profile().outputs
    assert outputs.task is Task.CLASSIFICATION
    labels = pd.Series(fraud_pipeline.predict(transactions)).astype(str)
    assert outputs.class_frequencies == pytest.approx(labels.value_counts(normalize=True).to_dict())
    assert outputs.confidence is not None
    assert outputs.confidence.min is not None
    assert outputs.confidence.min >= 0.5
    assert sum(outputs.confidence.counts) == len(transactions)


def test_a_regressor_profile_holds_the_value_distribution(
    loss_pipeline: Any, transactions: pd.DataFrame
) -> None:
    profile = rtserve.build(loss_pipeline, transactions, name="loss", version="1").read_profile()
    assert profile.outputs.task is Task.REGRESSION
    assert profile.outputs.value is not None
    assert profile.outputs.value.mean == pytest.approx(loss_pipeline.predict(transactions).mean())
    assert profile.outputs.class_frequencies == {}


def test_the_validation_sample_is_bounded_by_default(
    fraud_bundle: Bundle, transactions: pd.DataFrame
) -> None:
    sample = fraud_bundle.read_validation()
    assert len(transactions) > DEFAULT_ROWS
    assert sample.rows == DEFAULT_ROWS
    assert all(len(values) == DEFAULT_ROWS for values in sample.inputs.values())
    assert len(sample.outputs["label"]) == len(sample.outputs["probabilities"]) == DEFAULT_ROWS


def test_the_validation_sample_size_can_be_chosen(
    fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    small = rtserve.build(fraud_pipeline, transactions, name="f", version="1", validation_rows=25)
    assert small.read_validation().rows == 25
    few = rtserve.build(fraud_pipeline, transactions.head(10), name="f", version="1")
    assert few.read_validation().rows == 10  # never more rows than the sample has


def test_the_validation_sample_records_the_model_outputs_for_its_rows(
    fraud_bundle: Bundle, fraud_pipeline: Any
) -> None:
    sample = fraud_bundle.read_validation()
    frame = pd.DataFrame(sample.inputs)
    frame["country"] = frame["country"].astype("str")
    frame["merchant"] = frame["merchant"].astype("str")
    np.testing.assert_allclose(
        sample.outputs["probabilities"], fraud_pipeline.predict_proba(frame), rtol=0, atol=1e-12
    )
    assert sample.outputs["label"] == fraud_pipeline.predict(frame).tolist()


def test_validation_records_leave_missing_values_out(fraud_bundle: Bundle) -> None:
    sample = fraud_bundle.read_validation()
    records = sample.records()
    assert len(records) == sample.rows
    nulls = [i for i, value in enumerate(sample.inputs["merchant"]) if value is None]
    assert nulls, "the sample should include rows with a missing merchant"
    assert all("merchant" not in records[i] for i in nulls)


def test_a_pii_field_keeps_its_training_values_out_of_schema_and_profile(
    fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    bundle = rtserve.build(
        fraud_pipeline,
        transactions,
        name="f",
        version="pii",
        optimize="off",
        schema_overrides={"country": {"pii": True}},
    )
    country = bundle.manifest.model_schema.field("country")
    assert country.pii
    assert country.allowed is None
    feature = bundle.read_profile().features["country"]
    assert isinstance(feature, CategoricalProfile)
    assert feature.frequencies == {}
    assert feature.null_rate == pytest.approx(float(transactions["country"].isna().mean()))
    assert "DE" not in (bundle.path / "rtserve.yaml").read_text()
    assert '"DE"' not in (bundle.path / "profile.json").read_text()
