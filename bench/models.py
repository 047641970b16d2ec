"""The benchmark's models: trained once, saved with joblib for the peers and as rtserve bundles.

- ``card``: rtserve.demo's card-transaction pipeline (impute + scale + one-hot + gradient
  boosting) on mixed numeric/categorical data with missing values;
- ``dense_lr`` / ``dense_gb``: logistic regression and gradient boosting on 32 float features;
- ``dense_mlp`` (opt-in): a large multi-layer perceptron on the same features.

Everything goes to bench/.work/ (git-ignored): models/NAME.joblib, models/fields.json (numeric
and categorical columns, read by bench/peers/common.py) and bundles/NAME-1 (rtserve bundles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline

NAMES = ("card", "dense_lr", "dense_gb")
#: Opt-in models (``--models``): ``dense_mlp`` is a large model (two 1024-unit layers, ~1 M
#: multiply-adds per row) for comparing worker processes with runtime threads.
EXTRA_NAMES = ("dense_mlp",)
DENSE_FEATURES = [f"f{i}" for i in range(32)]


@dataclass(frozen=True)
class BenchModel:
    """One model of the benchmark, with the rows to send and the in-process reference answers."""

    name: str
    model: Any
    joblib_path: Path
    bundle_path: Path
    numeric: list[str]
    categorical: list[str]
    rows: list[dict[str, Any]]  # the bundle's validation sample (missing values left out)

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Rows as the DataFrame the model was fitted on (NaN for missing)."""
        df = pd.DataFrame(rows, columns=self.numeric + self.categorical)
        for col in self.numeric:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in self.categorical:
            df[col] = df[col].astype(object).where(df[col].notna(), np.nan)
        return df

    def reference(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """In-process probability of class 1 for each row (the answer every target must give)."""
        return np.asarray(self.model.predict_proba(self.frame(rows))[:, 1], dtype=np.float64)


def _train(name: str) -> tuple[Any, pd.DataFrame, list[str], list[str]]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "card":
        X, y = card_transactions(20_000, seed=7)
        numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
        categorical = [c for c in X.columns if c not in numeric]
        return fraud_pipeline().fit(X, y), X, numeric, categorical
    rng = np.random.default_rng(32)
    X = pd.DataFrame(rng.normal(size=(20_000, 32)), columns=DENSE_FEATURES)
    weights = rng.normal(size=32)
    logit = X.to_numpy() @ weights / 4 + 0.5 * np.sin(X["f0"].to_numpy() * 2)
    y = pd.Series((rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(np.int64))
    if name == "dense_lr":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    elif name == "dense_mlp":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        X, y = X.iloc[:5000], y.iloc[:5000]  # enough to fit; training a big net is slow
        model = make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(1024, 1024), max_iter=8, random_state=0),
        )
        with warnings.catch_warnings():  # 8 epochs do not converge; its speed is what counts
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(X, y), X, DENSE_FEATURES, []
    else:
        model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    return model.fit(X, y), X, DENSE_FEATURES, []


def prepare(
    work: Path, names: tuple[str, ...] = NAMES, *, retrain: bool = False
) -> dict[str, BenchModel]:
    """Train (or reuse) ``names``; save joblib files, fields.json and rtserve bundles."""
    import joblib

    models_dir, bundles_dir = work / "models", work / "bundles"
    models_dir.mkdir(parents=True, exist_ok=True)
    bundles_dir.mkdir(parents=True, exist_ok=True)
    index = models_dir / "fields.json"  # every model prepared so far: the peers read it
    fields: dict[str, dict[str, list[str]]] = (
        json.loads(index.read_text()) if index.is_file() else {}
    )
    out: dict[str, BenchModel] = {}
    for name in names:
        joblib_path = models_dir / f"{name}.joblib"
        bundle_path = bundles_dir / f"{name}-1"
        meta_path = models_dir / f"{name}.fields.json"
        if retrain or not (
            joblib_path.is_file()
            and (bundle_path / "rtserve.yaml").is_file()
            and meta_path.is_file()
        ):
            model, X, numeric, categorical = _train(name)
            joblib.dump(model, joblib_path)
            rtserve.build(model, X, name=name, version="1").save(bundle_path, overwrite=True)
            meta_path.write_text(json.dumps({"numeric": numeric, "categorical": categorical}))
        meta = json.loads(meta_path.read_text())
        fields[name] = meta
        rows = rtserve.Bundle.open(bundle_path).read_validation().records()
        out[name] = BenchModel(
            name,
            joblib.load(joblib_path),
            joblib_path,
            bundle_path,
            meta["numeric"],
            meta["categorical"],
            rows,
        )
    index.write_text(json.dumps(fields, indent=2))
    return out
