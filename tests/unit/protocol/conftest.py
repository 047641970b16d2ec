"""Fixtures for the protocol codecs: an all-numeric model, and request bodies made by tritonclient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

import rtserve


@pytest.fixture(scope="session")
def numeric_frame(transactions: pd.DataFrame) -> pd.DataFrame:
    """Float (with missing values), int and bool columns only: an all-numeric schema."""
    return transactions[["amount", "hour", "card_present"]]


@pytest.fixture(scope="session")
def numeric_predictor(
    tmp_path_factory: pytest.TempPathFactory, numeric_frame: pd.DataFrame
) -> rtserve.Predictor:
    """A 3-class (string labels) logistic regression on the all-numeric frame, built and loaded."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))
    amount = numeric_frame["amount"].fillna(0).to_numpy()
    labels = np.where(amount > 90, "high", np.where(amount > 40, "medium", "low"))
    model.fit(numeric_frame, labels)
    target = tmp_path_factory.mktemp("protocol") / "risk-numeric-1"
    rtserve.build(model, numeric_frame, name="risk-numeric", version="1").save(target)
    return rtserve.load(target)


@pytest.fixture(scope="session")
def loss_predictor(
    tmp_path_factory: pytest.TempPathFactory, loss_pipeline: Any, transactions: pd.DataFrame
) -> rtserve.Predictor:
    """The shared ridge-regression pipeline (mixed schema), built and loaded."""
    target = tmp_path_factory.mktemp("protocol") / "loss-1"
    rtserve.build(loss_pipeline, transactions, name="loss", version="1").save(target)
    return rtserve.load(target)


@pytest.fixture(scope="session")
def risk_predictor(
    tmp_path_factory: pytest.TempPathFactory, risk_pipeline: Any, transactions: pd.DataFrame
) -> rtserve.Predictor:
    """The shared random-forest pipeline with string classes (mixed schema), built and loaded."""
    target = tmp_path_factory.mktemp("protocol") / "risk-1"
    rtserve.build(risk_pipeline, transactions, name="risk", version="1").save(target)
    return rtserve.load(target)


def triton_input(name: str, array: np.ndarray[Any, Any], *, binary: bool) -> triton.InferInput:
    """A tritonclient input holding ``array`` (datatype from its dtype), JSON or binary."""
    from tritonclient.utils import np_to_triton_dtype

    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    return tensor.set_data_from_numpy(array, binary_data=binary)


def triton_request(
    inputs: Sequence[triton.InferInput],
    outputs: Sequence[triton.InferRequestedOutput] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    """The exact body and Inference-Header-Content-Length tritonclient would send."""
    body, header_length = triton.InferenceServerClient.generate_request_body(
        list(inputs), outputs=list(outputs) if outputs else None, **kwargs
    )
    return bytes(body), header_length


def frame_inputs(frame: pd.DataFrame, *, binary: bool) -> list[triton.InferInput]:
    """One tritonclient input per column, as a client of a mixed-type model sends them."""
    inputs = []
    for name in frame.columns:
        series = frame[name]
        if series.dtype.kind in "fiub":
            array = series.to_numpy()
        else:
            array = np.array(series.tolist(), dtype=object)
        inputs.append(triton_input(str(name), array, binary=binary))
    return inputs
