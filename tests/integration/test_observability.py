"""Observability of the in-process app: metrics, access log, drift, decision log, switches, tracing."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from typer.testing import CliRunner

from rtserve.cli.main import app as cli
from rtserve.demo import card_transactions
from rtserve.observability.logging import configure_logging
from rtserve.server.app import create_app
from rtserve.settings import Settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    """Poll readiness until the background load finishes."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout}s"
        time.sleep(0.05)


@contextmanager
def serve(bundles: list[Path], tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    """The app serving ``bundles``, ready, its decision log under ``tmp_path``."""
    overrides.setdefault("decision_log", {"directory": str(tmp_path / "decisions")})
    settings = Settings.load(bundles=[str(b) for b in bundles], **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Everything the server logs from now on, as parsed JSON lines."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().handlers[:] = []
    structlog.reset_defaults()


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (observers work off the hot path)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_metrics_count_every_request_by_model_version_protocol_endpoint_and_status(
    fraud_bundle, dense_bundle, cards, tmp_path
):
    X, _ = cards
    rows = records(X.head(3))
    with serve([fraud_bundle, dense_bundle], tmp_path) as client:
        assert client.post("/v1/models/fraud:predict", json={"instances": rows}).status_code == 200
        assert client.post("/v1/models/fraud:predict", json={"instances": rows}).status_code == 200
        dense = {
            "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [0.1] * 8}]
        }
        assert client.post("/v2/models/dense/infer", json=dense).status_code == 200
        bad = [{**rows[0], "amount": "lots"}]
        assert client.post("/v1/models/fraud:predict", json={"instances": bad}).status_code == 422
        assert client.post("/v1/models/nope:predict", json={"instances": rows}).status_code == 404
        found = eventually(
            lambda: (
                (s := samples(client))
                and value(s, "rtserve_predictions_total", model="dense", version="2") == 2
                and s
            )
        )
    fraud = {"model": "fraud", "version": "1", "protocol": "records", "endpoint": "predict",
             "variant": ""}  # fmt: skip
    assert value(found, "rtserve_requests_total", **fraud, status="200") == 2
    assert value(found, "rtserve_requests_total", **fraud, status="422") == 1
    unrouted = {"model": "", "version": "", "protocol": "records", "endpoint": "predict",
                "variant": ""}  # fmt: skip
    assert value(found, "rtserve_requests_total", **unrouted, status="404") == 1
    v2 = {"model": "dense", "version": "2", "protocol": "v2", "endpoint": "infer", "variant": ""}
    assert value(found, "rtserve_requests_total", **v2, status="200") == 1
    assert value(found, "rtserve_request_duration_seconds_count", **fraud) == 3
    assert value(found, "rtserve_predictions_total", model="fraud", version="1") == 6
    assert value(found, "rtserve_model_latency_seconds_count", model="fraud", version="1") == 2
    assert value(found, "rtserve_queue_wait_seconds_count", model="fraud", version="1") == 2
    assert value(found, "rtserve_batch_size_rows_count", model="fraud", version="1") == 2
    assert value(found, "rtserve_model_ready", model="fraud", version="1") == 1
    assert value(found, "rtserve_requests_in_flight") == 1  # the /metrics request itself
    assert value(found, "rtserve_process_resident_memory_bytes") > 10e6
    info = [k for k in found if k[0] == "rtserve_model_info" and ("model", "dense") in k[1]]
    assert len(info) == 1
    assert ("digest", "") not in info[0][1]


def test_validation_failures_are_counted_by_schema_field_and_rule_with_unknown_keys_bounded(
    fraud_bundle, cards, tmp_path
):
    X, _ = cards
    row = records(X.head(1))[0]
    with serve([fraud_bundle], tmp_path) as client:
        for i in range(3):
            bad = {**row, "amount": -5.0, f"made_up_{i}": 1}  # minimum + an unknown key each
            assert (
                client.post("/v1/models/fraud:predict", json={"instances": [bad]}).status_code
                == 422
            )
        found = samples(client)
    labels = {"model": "fraud", "version": "1"}
    assert (
        value(found, "rtserve_validation_failures_total", **labels, field="amount", rule="minimum")
        == 3
    )
    assert (
        value(
            found,
            "rtserve_validation_failures_total",
            **labels,
            field="_unknown",
            rule="unknown_field",
        )
        == 3
    )
    fields = {dict(k[1])["field"] for k in found if k[0] == "rtserve_validation_failures_total"}
    assert fields == {"amount", "_unknown"}


def test_one_access_record_per_request_carries_request_trace_model_and_batch(
    fraud_bundle, cards, tmp_path, log_lines
):
    X, _ = cards
    with serve([fraud_bundle], tmp_path) as client:
        response = client.post(
            "/v1/models/fraud:predict",
            json={"instances": records(X.head(4))},
            headers={"X-Request-ID": "abc-123", "traceparent": TRACEPARENT},
        )
        assert response.headers["x-request-id"] == "abc-123"
        client.get("/v1/models/unknown")
    access = [r for r in log_lines() if r["logger"] == "rtserve.access"]
    [predict] = [r for r in access if r.get("request_id") == "abc-123"]
    assert predict["traceparent"] == TRACEPARENT
    assert (predict["model"], predict["version"], predict["status"]) == ("fraud", "1", 200)
    assert predict["rows"] == 4
    assert predict["batch_size"] >= 4
    assert predict["fallback"] is False
    assert predict["latency_ms"] > 0
    assert predict["time"].endswith("Z")
    [missing] = [r for r in access if r.get("path") == "/v1/models/unknown"]
    assert missing["status"] == 404
    assert "model" not in missing


def test_drift_stays_under_threshold_for_training_traffic_and_flags_only_shifted_features(
    fraud_bundle, tmp_path
):
    drift = {"window_rows": 1000, "min_rows": 200, "refresh_s": 0.2}
    with serve([fraud_bundle], tmp_path, drift=drift) as client:
        assert client.get("/v1/models/fraud/drift").json()["status"] == "insufficient_data"

        def send(frame: pd.DataFrame) -> float:
            """Send ``frame`` in requests of 50 rows; the time the last one was sent."""
            last = 0.0
            for start in range(0, len(frame), 50):
                body = {"instances": records(frame.iloc[start : start + 50])}
                last = time.time()
                assert client.post("/v1/models/fraud:predict", json=body).status_code == 200
            return last

        def report_after(sent_at: float) -> dict[str, Any]:
            """The drift report once the window holds the request sent at ``sent_at``."""

            def check() -> dict[str, Any] | None:
                report: dict[str, Any] = client.get("/v1/models/fraud/drift").json()
                newest = report["window"]["newest"]
                caught_up = newest and datetime.fromisoformat(newest).timestamp() >= sent_at
                return report if caught_up else None

            report = eventually(check)
            assert report, "the drift window never took in the last request"
            return report

        live, _ = card_transactions(1000, seed=123)
        calm = report_after(send(live))
        assert calm["status"] == "ok", calm["drifted_features"]
        assert calm["window"]["rows"] == 1000
        assert all(f["psi"] < calm["thresholds"]["psi"] for f in calm["features"].values())

        shifted, _ = card_transactions(1000, seed=321)
        shifted["amount"] = shifted["amount"] * 6
        shifted["merchant_category"] = "gaming"
        report = report_after(send(shifted))
        assert report["drifted_features"] == ["amount", "merchant_category"]
        assert report["status"] == "drift"
        assert report["reference"]["rows"] == 3000
        assert report["thresholds"]["psi"] == 0.2
        gauges = eventually(
            lambda: (
                (s := samples(client))
                and value(s, "rtserve_drift_features_drifted", model="fraud", version="1") == 2
                and s
            )
        )
        assert (
            value(gauges, "rtserve_drift_psi", model="fraud", version="1", feature="amount") > 0.2
        )
        assert value(gauges, "rtserve_drift_psi", model="fraud", version="1", feature="hour") < 0.2
        assert client.get("/v1/models/fraud/versions/1/drift").json()["drifted_features"] == [
            "amount",
            "merchant_category",
        ]
        assert client.get("/v1/models/nope/drift").status_code == 404


def test_the_decision_log_answers_which_model_version_made_a_decision(
    fraud_bundle, cards, tmp_path
):
    X, _ = cards
    with serve([fraud_bundle], tmp_path) as client:
        reply = client.post(
            "/v1/models/fraud:predict",
            json={"instances": records(X.head(3))},
            headers={"X-Request-ID": "decide-1"},
        )
        assert reply.status_code == 200
        digest = client.get("/v1/models/fraud").json()["digest"]
    result = CliRunner().invoke(
        cli,
        ["decisions", "--request-id", "decide-1", "--dir", str(tmp_path / "decisions"), "--json"],
    )
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["row"] for d in found] == [0, 1, 2]
    assert {(d["model"], d["version"], d["digest"]) for d in found} == {("fraud", "1", digest)}
    predictions = reply.json()["predictions"]
    assert [d["output"]["label"] for d in found] == [p["label"] for p in predictions]
    assert found[0]["inputs"] is None  # only the input hash unless include_inputs is set


@pytest.mark.postgres
def test_the_decision_log_writes_to_postgresql(fraud_bundle, cards, tmp_path):
    import uuid

    from sqlalchemy import delete

    from rtserve.observability.decisions import DecisionQuery, SqlReader
    from rtserve.observability.decisions.sql import decisions_table, engine_for

    url = "postgresql://postgres@127.0.0.1:5432/test"
    request_id = f"pg-{uuid.uuid4().hex}"
    X, _ = cards
    log = {"sink": "sql", "database_url": url}
    with serve([fraud_bundle], tmp_path, decision_log=log) as client:
        body = {"instances": records(X.head(2))}
        assert (
            client.post(
                "/v1/models/fraud:predict", json=body, headers={"X-Request-ID": request_id}
            ).status_code
            == 200
        )
    try:
        found = SqlReader(url).query(DecisionQuery(request_id=request_id))
        assert [(d.model, d.version, d.row) for d in found] == [
            ("fraud", "1", 0),
            ("fraud", "1", 1),
        ]
    finally:
        engine = engine_for(url)
        with engine.begin() as connection:
            connection.execute(
                delete(decisions_table).where(decisions_table.c.request_id == request_id)
            )
        engine.dispose()


def test_each_observer_can_be_switched_off(fraud_bundle, cards, tmp_path):
    X, _ = cards
    off = {
        "metrics": {"enabled": False},
        "drift": {"enabled": False},
        "decision_log": {"enabled": False, "directory": str(tmp_path / "decisions")},
    }
    with serve([fraud_bundle], tmp_path, **off) as client:
        assert client.app.state.dataplane.observers == []
        assert (
            client.post(
                "/v1/models/fraud:predict", json={"instances": records(X.head(2))}
            ).status_code
            == 200
        )
        assert "switched off" in client.get("/metrics").text
        assert client.get("/v1/models/fraud/drift").json() == {
            "model": "fraud",
            "version": "1",
            "enabled": False,
        }
    assert not (tmp_path / "decisions").exists()


def test_spans_for_validate_queue_predict_encode_continue_the_callers_trace(
    fraud_bundle, cards, tmp_path
):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the process-wide provider the server uses
    X, _ = cards
    with serve([fraud_bundle], tmp_path, logging__tracing=True) as client:
        headers = {"traceparent": TRACEPARENT}
        assert (
            client.post(
                "/v1/models/fraud:predict", json={"instances": records(X.head(2))}, headers=headers
            ).status_code
            == 200
        )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["POST /v1/models/fraud:predict"]
    assert format(root.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    for name in ("validate", "queue", "predict", "encode"):
        assert spans[name].parent.span_id == root.context.span_id
