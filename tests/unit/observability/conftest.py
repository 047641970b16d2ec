"""Observability fixtures: one small real fraud bundle (with a profile) and a loaded predictor."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd
import pytest
import structlog

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.engine.predictor import Predictor
from rtserve.observability.drift import Reference


@pytest.fixture(scope="session")
def training() -> pd.DataFrame:
    """The training sample the bundle's profile is computed from."""
    return card_transactions(3000, seed=3)[0]


@pytest.fixture(scope="session")
def fraud_path(tmp_path_factory: pytest.TempPathFactory, training: pd.DataFrame) -> Path:
    """A fraud bundle whose `home_country` is flagged as PII."""
    X = training
    y = card_transactions(3000, seed=3)[1]
    model = fraud_pipeline().set_params(model__max_iter=10).fit(X, y)
    path = tmp_path_factory.mktemp("obs-bundles") / "fraud-1"
    rtserve.build(
        model, X, name="fraud", version="1", schema_overrides={"home_country": {"pii": True}}
    ).save(path)
    return path


@pytest.fixture(scope="session")
def predictor(fraud_path: Path) -> Predictor:
    """The fraud bundle, loaded."""
    return rtserve.load(fraud_path)


@pytest.fixture(scope="session")
def reference(predictor: Predictor) -> Reference:
    """Schema + profile the drift monitor compares against."""
    return Reference(predictor.schema, predictor.bundle.read_profile(), predictor.digest)


@pytest.fixture
def stream():
    """A stream for configure_logging; the logging setup is undone afterwards."""
    buffer = io.StringIO()
    yield buffer
    logging.getLogger().handlers[:] = []
    structlog.reset_defaults()
