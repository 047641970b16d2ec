"""The demo model: a synthetic card-transaction data set and a fraud pipeline trained on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COUNTRIES = ["DE", "FR", "GB", "US", "NL", "ES", "IT", "PL", "SE", "BR"]
MERCHANT_CATEGORIES = [
    "grocery",
    "electronics",
    "travel",
    "fuel",
    "restaurant",
    "gaming",
    "fashion",
]
CHANNELS = ["pos", "web", "app"]
DEMO_NAME = "card-fraud"
DEMO_VERSION = "1"


def card_transactions(n: int = 20_000, seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    """A realistic synthetic fraud data set: numeric and categorical fields, some missing values.

    Fraud is rarer than 1 in 10 and more likely for large night-time web payments abroad, new
    accounts, risky merchant categories and mismatching countries.
    """
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(mean=3.6, sigma=1.1, size=n), 2)
    hour = rng.integers(0, 24, size=n)
    account_age_days = rng.integers(0, 3650, size=n)
    home = rng.choice(
        COUNTRIES, size=n, p=[0.3, 0.15, 0.12, 0.12, 0.08, 0.07, 0.06, 0.04, 0.03, 0.03]
    )
    abroad = rng.random(n) < 0.12
    country = np.where(abroad, rng.choice(COUNTRIES, size=n), home)
    category = rng.choice(MERCHANT_CATEGORIES, size=n, p=[0.3, 0.12, 0.08, 0.15, 0.2, 0.05, 0.1])
    channel = rng.choice(CHANNELS, size=n, p=[0.55, 0.3, 0.15])
    tx_last_24h = rng.poisson(2.0, size=n)
    distance_km = np.round(rng.exponential(20, size=n) + abroad * rng.exponential(800, size=n), 1)
    logit = (
        -4.2
        + 0.55 * np.log1p(amount) / 2
        + 0.9 * (country != home)
        + 0.8 * np.isin(category, ["electronics", "gaming", "travel"])
        + 0.7 * (channel == "web")
        + 0.6 * ((hour < 6) | (hour > 22))
        - 0.0006 * account_age_days
        + 0.12 * tx_last_24h
        + 0.0005 * distance_km
    )
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "amount": amount,
            "hour": hour.astype(np.int64),
            "account_age_days": account_age_days.astype(np.float64),
            "tx_last_24h": tx_last_24h.astype(np.int64),
            "distance_km": distance_km,
            "country": country,
            "home_country": home,
            "merchant_category": category,
            "channel": channel,
        }
    )
    # Missing values as real data has them: unknown account age, unknown distance, no channel.
    frame.loc[rng.random(n) < 0.04, "account_age_days"] = np.nan
    frame.loc[rng.random(n) < 0.06, "distance_km"] = np.nan
    frame.loc[rng.random(n) < 0.03, "channel"] = np.nan
    return frame, pd.Series(fraud.astype(np.int64), name="is_fraud")


def fraud_pipeline() -> Any:
    """Preprocessing (impute, scale, one-hot) + gradient boosting, as a data scientist would write it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["amount", "hour", "account_age_days", "tx_last_24h", "distance_km"]
    categorical = ["country", "home_country", "merchant_category", "channel"]
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )
    return Pipeline(
        [("preprocess", preprocess), ("model", HistGradientBoostingClassifier(max_iter=60))]
    )


def build_demo_bundle(target: Path, *, rows: int = 20_000) -> Path:
    """Train the demo pipeline and save its bundle to ``target`` (reused if already there)."""
    from rtserve.building.builder import build
    from rtserve.bundle.bundle import Bundle

    if (target / "rtserve.yaml").is_file():
        Bundle.open(target)  # verify it is intact before reusing it
        return target
    X, y = card_transactions(rows)
    model = fraud_pipeline().fit(X, y)
    bundle = build(
        model,
        X,
        name=DEMO_NAME,
        version=DEMO_VERSION,
        description="Card-transaction fraud demo: impute + scale + one-hot + gradient boosting",
        schema_overrides={"amount": {"minimum": 0.0}, "hour": {"minimum": 0, "maximum": 23}},
    )
    bundle.save(target, overwrite=True)
    return target


def example_record() -> dict[str, Any]:
    """One plausible transaction for curl examples and smoke tests."""
    return {
        "amount": 249.9,
        "hour": 23,
        "account_age_days": 40,
        "tx_last_24h": 5,
        "distance_km": 912.5,
        "country": "BR",
        "home_country": "DE",
        "merchant_category": "electronics",
        "channel": "web",
    }
