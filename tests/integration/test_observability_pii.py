"""PII: a sentinel planted in fields flagged ``pii`` appears nowhere the server writes.

The test drives successes and every kind of error through both protocols, with the decision log
recording (redacted) inputs, then scans the log stream, every response, and every byte the
decision log wrote (JSON-lines files or the SQLite database).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import structlog
from starlette.testclient import TestClient

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.observability.decisions import DecisionQuery, SqlReader
from rtserve.observability.logging import configure_logging
from rtserve.server.app import create_app
from rtserve.settings import Settings

EMAIL = "sentinel-7f3a9c1e@pii.example"
ACCOUNT = 918273645
SENTINELS = (EMAIL, str(ACCOUNT), "7f3a9c1e")


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll readiness until the background load finishes."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pii_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud model with two PII columns it does not use: a free-text email and an account."""
    X, y = card_transactions(1500, seed=5)
    rng = np.random.default_rng(5)
    X = X.assign(
        email=[f"user{i}@mail.example" for i in range(len(X))],
        account=rng.integers(10_000, 99_999, len(X)),
    )
    model = fraud_pipeline().set_params(model__max_iter=5).fit(X, y)
    path = tmp_path_factory.mktemp("pii") / "kyc-1"
    overrides = {"email": {"pii": True}, "account": {"pii": True, "minimum": 0}}
    rtserve.build(model, X, name="kyc", version="1", schema_overrides=overrides).save(path)
    return path


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream
    logging.getLogger().handlers[:] = []
    structlog.reset_defaults()


def row(**changes: Any) -> dict[str, Any]:
    X, _ = card_transactions(1, seed=9)
    base = json.loads(X.to_json(orient="records"))[0]
    return {**base, "email": EMAIL, "account": ACCOUNT, **changes}


def v2_body(rows: list[dict[str, Any]], types: dict[str, str]) -> dict[str, Any]:
    frame = pd.DataFrame(rows)
    return {
        "id": "v2-pii",
        "inputs": [
            {
                "name": name,
                "shape": [len(frame)],
                "datatype": types.get(name, "BYTES" if name in STRING_FIELDS else "FP64"),
                "data": frame[name].tolist(),
            }
            for name in frame.columns
        ],
    }


STRING_FIELDS = {"country", "home_country", "merchant_category", "channel", "email"}
INT_FIELDS = {"hour": "INT64", "tx_last_24h": "INT64", "account": "INT64"}


def drive(client: TestClient) -> list[str]:
    """Successes and failures that all carry the sentinel; returns every response as text."""
    seen: list[str] = []

    def post(path: str, body: Any, expected: int) -> None:
        response = client.post(path, json=body)
        assert response.status_code == expected, response.text
        seen.append(json.dumps(dict(response.headers)) + response.text)

    good = row(account_age_days=100.0, distance_km=3.0, channel="web")
    post("/v1/models/kyc:predict", {"instances": [good, good]}, 200)
    post("/v1/models/kyc:predict", {"instances": [row(account=-ACCOUNT)]}, 422)  # minimum
    post("/v1/models/kyc:predict", {"instances": [row(account=f"{ACCOUNT}x")]}, 422)  # type
    post("/v1/models/kyc:predict", {"instances": [row(account=float(ACCOUNT) + 0.5)]}, 422)
    post("/v1/models/kyc:predict", {"instances": [row(email=["nested", EMAIL])]}, 422)
    post("/v1/models/kyc:predict", {"instances": [row(amount="bad"), row()]}, 422)
    post("/v1/models/kyc:predict", {"instances": [row(), {"email": EMAIL}]}, 422)
    post("/v2/models/kyc/infer", v2_body([good], INT_FIELDS), 200)
    post("/v2/models/kyc/infer", v2_body([row(account=-ACCOUNT)], INT_FIELDS), 422)
    post("/v2/models/kyc/infer", v2_body([good], {**INT_FIELDS, "account": "BYTES"}), 400)
    post("/v2/models/kyc/infer", v2_body([good], {**INT_FIELDS, "email": "FP64"}), 400)
    return seen


def scan(texts: list[str]) -> list[str]:
    return [s for s in SENTINELS for text in texts if s in text]


@pytest.mark.parametrize("sink", ["jsonl", "sqlite"])
def test_the_pii_sentinel_appears_nowhere_the_server_writes(pii_bundle, tmp_path, log_stream, sink):
    directory = tmp_path / "decisions"
    database = tmp_path / "decisions.db"
    log: dict[str, Any] = {"include_inputs": True, "directory": str(directory)}
    if sink == "sqlite":
        log |= {"sink": "sql", "database_url": f"sqlite:///{database}"}
    settings = Settings.load(bundles=[str(pii_bundle)], decision_log=log, logging__level="debug")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        responses = drive(client)
        responses.append(client.get("/metrics").text)
        responses.append(client.get("/v1/models/kyc/drift").text)
    written = [log_stream.getvalue(), *responses]
    if sink == "jsonl":
        files = list(directory.glob("*.jsonl"))
        written += [f.read_text(errors="replace") for f in files]
        decisions = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    else:
        written.append(database.read_bytes().decode("latin-1"))
        found = SqlReader(f"sqlite:///{database}").query(DecisionQuery(model="kyc"))
        decisions = [d.to_json() for d in found]
    leaks = [
        t[max(t.find(s) - 200, 0) : t.find(s) + 80] for s in SENTINELS for t in written if s in t
    ]
    assert leaks == []
    # The scan can fail: the sentinel did reach the server, and its redacted forms were written.
    assert len(decisions) == 3  # two records rows + one v2 row
    assert all(d["inputs"]["email"].startswith("hmac:") for d in decisions)
    assert all(d["inputs"]["account"].startswith("hmac:") for d in decisions)
    assert sum("withheld" in text for text in responses) >= 4
    assert "kyc" in log_stream.getvalue()
