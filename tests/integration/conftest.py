"""Fixtures for the in-process server tests: small real bundles and a running app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.server.app import create_app
from rtserve.settings import Settings


@pytest.fixture(scope="session")
def cards() -> tuple[pd.DataFrame, pd.Series]:
    """A small card-transaction data set (mixed numeric/categorical, with missing values)."""
    return card_transactions(3000, seed=3)


@pytest.fixture(scope="session")
def fraud_bundle(
    tmp_path_factory: pytest.TempPathFactory, cards: tuple[pd.DataFrame, pd.Series]
) -> Path:
    """A mixed-type scikit-learn pipeline bundle named ``fraud``, version ``1``."""
    X, y = cards
    model = fraud_pipeline().set_params(model__max_iter=15).fit(X, y)
    path = tmp_path_factory.mktemp("bundles") / "fraud-1"
    rtserve.build(
        model, X, name="fraud", version="1", schema_overrides={"amount": {"minimum": 0.0}}
    ).save(path)
    return path


@pytest.fixture(scope="session")
def dense_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An all-numeric logistic regression over four float features, named ``dense``."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=["f0", "f1", "f2", "f3"])
    y = (X.f0 + X.f1 * 0.5 > 0).astype(int)
    path = tmp_path_factory.mktemp("bundles") / "dense-2"
    rtserve.build(LogisticRegression().fit(X, y), X, name="dense", version="2").save(path)
    return path


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll readiness until the background load finishes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/v2/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(
        f"server not ready after {timeout}s: {client.get('/v1/models/fraud').text}"
    )


@pytest.fixture(scope="module")
def client(fraud_bundle: Path, dense_bundle: Path) -> Iterator[TestClient]:
    """The app serving both bundles, ready."""
    settings = Settings.load(
        bundles=[str(fraud_bundle), str(dense_bundle)], limits__max_body_bytes=64 * 1024
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client
