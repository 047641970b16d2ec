"""Shared fixtures: a synthetic card-transaction data set and tiny real models fitted once per session.

The data mixes float, int, bool and string columns with missing values, the shape most tabular
fraud models have. Models are fitted at session scope (they are small: a suite-wide cost of a few
seconds) and never mutated by tests; a test that needs to tamper with a bundle copies it first.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve

# --- tests that need a real service ------------------------------------------------------------

#: Set by .ci/run: a test whose service is missing then fails instead of being skipped.
REQUIRE_SERVICES_ENV = "RTSERVE_REQUIRE_SERVICES"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


#: marker -> (what it needs, how to tell it is there)
SERVICES: dict[str, tuple[str, Callable[[], bool]]] = {
    "postgres": ("PostgreSQL on 127.0.0.1:5432", lambda: _listening(5432)),
    "redis": ("Redis on 127.0.0.1:6379", lambda: _listening(6379)),
    "nats": ("NATS with JetStream on 127.0.0.1:4222", lambda: _listening(4222)),
    "rabbitmq": ("RabbitMQ on 127.0.0.1:5672 (guest/guest)", lambda: _listening(5672)),
    "kubectl": ("kubectl on PATH (for kustomize)", lambda: shutil.which("kubectl") is not None),
    "prometheus": (
        "the prometheus and promtool commands (Debian's prometheus package)",
        lambda: bool(shutil.which("prometheus") and shutil.which("promtool")),
    ),
    "chromium": (
        "Debian's chromium (headless) for the rendered-report tests",
        lambda: shutil.which("chromium") is not None,
    ),
    "nginx": (
        "Debian's nginx for the replicas-behind-a-load-balancer tests",
        lambda: shutil.which("nginx") is not None or os.path.exists("/usr/sbin/nginx"),
    ),
    "podman": (
        "podman, buildah, runc and mmdebstrap (Debian's packages) for the container image tests",
        lambda: all(shutil.which(tool) for tool in ("podman", "buildah", "runc", "mmdebstrap")),
    ),
}


@functools.cache
def _service_available(marker: str) -> bool:
    return SERVICES[marker][1]()


def require_service(marker: str) -> None:
    """Skip the running test when the service ``marker`` names is missing; under .ci/run, fail it.

    Tests carry the marker (``@pytest.mark.postgres``); a fixture that needs a service calls this.
    """
    needs = SERVICES[marker][0]
    if _service_available(marker):
        return
    if os.environ.get(REQUIRE_SERVICES_ENV):
        pytest.fail(
            f"needs {needs}, which is not there; {REQUIRE_SERVICES_ENV} is set (.ci/run sets it), "
            "so a missing service fails the run instead of skipping its tests",
            pytrace=False,
        )
    pytest.skip(f"needs {needs} (bash scripts/test-services.sh installs what it can)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply ``require_service`` to every service marker of the test."""
    for marker in SERVICES:
        if item.get_closest_marker(marker) is not None:
            require_service(marker)


N_ROWS = 400
COUNTRIES = ["DE", "FR", "GB", "NL", "US"]
MERCHANTS = ["electronics", "fuel", "grocery", "travel"]
NUMERIC = ["amount", "hour", "prior_transactions"]
CATEGORICAL = ["country", "merchant"]


def make_transactions(n_rows: int = N_ROWS, seed: int = 7) -> pd.DataFrame:
    """Card transactions: float + int + bool + string columns, missing amount and merchant values."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 40.0, n_rows).round(2)
    amount[rng.random(n_rows) < 0.1] = np.nan
    merchant = rng.choice(MERCHANTS, n_rows).astype(object)
    merchant[rng.random(n_rows) < 0.1] = None
    return pd.DataFrame(
        {
            "amount": amount,  # float64 with NaN
            "hour": rng.integers(0, 24, n_rows),  # int64
            "prior_transactions": rng.integers(0, 50, n_rows),  # int64
            "country": pd.Series(rng.choice(COUNTRIES, n_rows), dtype="str"),  # pandas 3 "str"
            "merchant": pd.Series(merchant, dtype="str"),  # "str" with missing values
            "card_present": rng.random(n_rows) < 0.6,  # bool
        }
    )


def fraud_target(frame: pd.DataFrame, seed: int = 1) -> np.ndarray[Any, Any]:
    """Binary label (0/1): large card-not-present amounts and night-time US purchases, plus noise."""
    rng = np.random.default_rng(seed)
    amount = frame["amount"].fillna(0).to_numpy()
    risky = ((amount > 90) & ~frame["card_present"].to_numpy()) | (
        (frame["country"] == "US").to_numpy() & (frame["hour"].to_numpy() < 6)
    )
    flip = rng.random(len(frame)) < 0.05
    return (risky ^ flip).astype(np.int64)


def risk_target(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Three string classes (low / medium / high) from the amount and merchant."""
    amount = frame["amount"].fillna(frame["amount"].median()).to_numpy()
    travel = (frame["merchant"] == "travel").to_numpy()
    score = amount / 40 + travel
    return np.where(score > 3, "high", np.where(score > 1.5, "medium", "low")).astype(object)


def loss_target(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    """A continuous value: expected loss grows with amount, shrinks when the card is present."""
    amount = frame["amount"].fillna(0).to_numpy()
    return amount * np.where(frame["card_present"].to_numpy(), 0.05, 0.3) + frame["hour"] * 0.1


@pytest.fixture(scope="session")
def transactions() -> pd.DataFrame:
    """The training sample every sklearn model here was fitted on (do not mutate)."""
    return make_transactions()


@pytest.fixture(scope="session")
def holdout_transactions() -> pd.DataFrame:
    """New rows no model was fitted on (same columns and categories)."""
    return make_transactions(120, seed=99)


@pytest.fixture(scope="session")
def categorical_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """The same rows with pandas ``category`` columns, as XGBoost and LightGBM take them."""
    frame = transactions.copy()
    frame["country"] = pd.Categorical(frame["country"], categories=COUNTRIES)
    frame["merchant"] = pd.Categorical(frame["merchant"], categories=MERCHANTS)
    return frame


@pytest.fixture(scope="session")
def fraud_labels(transactions: pd.DataFrame) -> np.ndarray[Any, Any]:
    return fraud_target(transactions)


def _preprocessor() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                CATEGORICAL,
            ),
            ("flag", "passthrough", ["card_present"]),
        ]
    )


@pytest.fixture(scope="session")
def fraud_pipeline(transactions: pd.DataFrame, fraud_labels: np.ndarray[Any, Any]) -> Any:
    """Binary classifier: ColumnTransformer (impute, scale, one-hot) + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("prepare", _preprocessor()), ("model", LogisticRegression())])
    return pipeline.fit(transactions, fraud_labels)


@pytest.fixture(scope="session")
def risk_pipeline(transactions: pd.DataFrame) -> Any:
    """Multiclass classifier with string classes: ColumnTransformer + random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    pipeline = Pipeline([("prepare", _preprocessor()), ("model", model)])
    return pipeline.fit(transactions, risk_target(transactions))


@pytest.fixture(scope="session")
def loss_pipeline(transactions: pd.DataFrame) -> Any:
    """Regressor: ColumnTransformer + ridge regression."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("prepare", _preprocessor()), ("model", Ridge())])
    return pipeline.fit(transactions, loss_target(transactions))


@pytest.fixture(scope="session")
def fraud_bundle_dir(
    tmp_path_factory: pytest.TempPathFactory, fraud_pipeline: Any, transactions: pd.DataFrame
) -> Path:
    """The fraud pipeline built and saved once; tests that modify it use ``fraud_bundle_copy``."""
    target = tmp_path_factory.mktemp("bundles") / "fraud-1"
    rtserve.build(fraud_pipeline, transactions, name="fraud", version="1").save(target)
    return target


@pytest.fixture
def fraud_bundle_copy(fraud_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the saved fraud bundle that a test may tamper with."""
    target = tmp_path / "fraud-1"
    shutil.copytree(fraud_bundle_dir, target)
    return target


@pytest.fixture(scope="session")
def fraud_predictor(fraud_bundle_dir: Path) -> rtserve.Predictor:
    """The fraud bundle loaded back from disk."""
    return rtserve.load(fraud_bundle_dir)


@pytest.fixture
def build_and_load(tmp_path: Path) -> Callable[..., rtserve.Predictor]:
    """``build_and_load(model, sample, **build_args)``: build, save to disk, load back."""
    counter = iter(range(1_000))

    def run(model: Any, sample: Any, **kwargs: Any) -> rtserve.Predictor:
        kwargs.setdefault("name", "model")
        kwargs.setdefault("version", "1")
        # These tests hold the native adapters to exact reproduction; ONNX exports (within a
        # tolerance) have their own tests in tests/unit/runtimes/test_convert*.py.
        kwargs.setdefault("optimize", "off")
        target = tmp_path / f"bundle-{next(counter)}"
        rtserve.build(model, sample, **kwargs).save(target)
        return rtserve.load(target)

    return run
