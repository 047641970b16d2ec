"""CLI fixtures: model and table files as a user would have them, and an in-process runner.

Files are written once per session from the shared fraud pipeline and transactions (tests never
modify them); a test that edits a bundle works on its own copy.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from rtserve.cli.main import app


@dataclass(frozen=True)
class ModelFiles:
    """A folder of user files: the fraud pipeline as skops and pickle, its sample, rows to score."""

    root: Path
    skops: Path
    pickle: Path
    sample_parquet: Path
    sample_csv: Path
    rows_jsonl: Path
    rows_csv: Path
    rows_parquet: Path


@pytest.fixture(scope="session")
def model_files(
    tmp_path_factory: pytest.TempPathFactory,
    fraud_pipeline: Any,
    transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
) -> ModelFiles:
    import joblib
    import skops.io as sio

    root = tmp_path_factory.mktemp("user-files")
    files = ModelFiles(
        root=root,
        skops=root / "fraud.skops",
        pickle=root / "fraud.pkl",
        sample_parquet=root / "train.parquet",
        sample_csv=root / "train.csv",
        rows_jsonl=root / "rows.jsonl",
        rows_csv=root / "rows.csv",
        rows_parquet=root / "rows.parquet",
    )
    sio.dump(fraud_pipeline, files.skops)
    joblib.dump(fraud_pipeline, files.pickle)
    transactions.to_parquet(files.sample_parquet)
    transactions.to_csv(files.sample_csv, index=False)
    write_jsonl(files.rows_jsonl, records(holdout_transactions))
    holdout_transactions.to_csv(files.rows_csv, index=False)
    holdout_transactions.to_parquet(files.rows_parquet)
    return files


@dataclass(frozen=True)
class NumericFiles:
    """An all-numeric data set and a small model of it in every safe file format."""

    sample: Path
    onnx: Path
    xgboost_ubj: Path
    xgboost_json: Path
    lightgbm_txt: Path
    frame: pd.DataFrame
    labels: np.ndarray[Any, Any]


@pytest.fixture(scope="session")
def numeric_files(tmp_path_factory: pytest.TempPathFactory) -> NumericFiles:
    import lightgbm as lgb
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("numeric-files")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    labels = (frame["a"] + frame["b"] > 0).astype(np.int64).to_numpy()
    frame.to_parquet(root / "sample.parquet")
    logistic = LogisticRegression().fit(frame.to_numpy(), labels)
    proto = to_onnx(logistic, frame.to_numpy()[:1], options={"zipmap": False})
    (root / "model.onnx").write_bytes(proto.SerializeToString())
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(frame, label=labels),
        num_boost_round=4,
    )
    booster.save_model(root / "model.ubj")
    booster.save_model(root / "model.json")
    lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "num_leaves": 4},
        lgb.Dataset(frame, label=labels),
        num_boost_round=4,
    ).save_model(root / "model.txt")
    return NumericFiles(
        sample=root / "sample.parquet",
        onnx=root / "model.onnx",
        xgboost_ubj=root / "model.ubj",
        xgboost_json=root / "model.json",
        lightgbm_txt=root / "model.txt",
        frame=frame,
        labels=labels,
    )


@pytest.fixture(scope="session")
def foreign_type_model(numeric_files: NumericFiles) -> Any:
    """A pipeline holding ``operator.neg``: skops cannot trust it, pickle can store it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    return pipeline.fit(numeric_files.frame.to_numpy(), numeric_files.labels)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts with missing values left out (what a client sends)."""
    rows = json.loads(frame.to_json(orient="records"))
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


Invoke = Callable[..., Result]


@pytest.fixture
def rtserve_cli() -> Invoke:
    """``rtserve_cli("build", ...)`` runs the CLI in-process; stdout and stderr stay apart."""
    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"NO_COLOR": "1", "COLUMNS": "200"})

    return invoke
