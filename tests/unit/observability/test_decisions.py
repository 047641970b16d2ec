"""Decision log: one record per row, PII redacted, written to JSON lines or SQL and read back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete

from rtserve.engine.events import BatchInfo, PredictionEvent
from rtserve.observability.decisions import (
    Decision,
    DecisionLogObserver,
    DecisionQuery,
    JsonlReader,
    JsonlSink,
    SqlReader,
    SqlSink,
)
from rtserve.observability.decisions.record import decisions_of
from rtserve.observability.decisions.sql import DecisionStoreError, decisions_table, engine_for
from rtserve.observability.metrics import Metrics
from rtserve.observability.redaction import Redactor

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def decision(request_id: str, *, model="fraud", version="1", minutes=0, row=0) -> Decision:
    return Decision(
        request_id=request_id,
        row=row,
        time=T0 + timedelta(minutes=minutes),
        model=model,
        version=version,
        digest="sha256:" + "a" * 64,
        protocol="records",
        input_hash="sha256:" + "b" * 64,
        output={"label": 1, "probabilities": {"0": 0.2, "1": 0.8}},
        latency_seconds=0.0123,
    )


def event_for(predictor, frame, request_id="req-1"):
    columns = predictor.validate(frame)
    return PredictionEvent(
        request_id, T0.timestamp(), "fraud", "1", predictor.digest, "records", columns,
        predictor.run(columns), len(frame), 0.004, BatchInfo(0.001, 0.002, len(frame), 1),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip


def test_each_row_becomes_one_decision_with_redacted_inputs_and_named_classes(predictor, training):
    event = event_for(predictor, training.iloc[:3])
    records = decisions_of(event, predictor.schema, Redactor(b"k"), include_inputs=True)
    assert [d.row for d in records] == [0, 1, 2]
    first = records[0]
    assert (first.request_id, first.model, first.version) == ("req-1", "fraud", "1")
    assert first.digest == predictor.digest
    assert set(first.output["probabilities"]) == {"0", "1"}
    assert first.inputs is not None
    assert first.inputs["home_country"].startswith("hmac:")  # flagged pii
    assert first.inputs["country"] == training.iloc[0]["country"]
    assert first.input_hash.startswith("sha256:")
    assert len({d.input_hash for d in records}) == 3


def test_inputs_are_left_out_unless_configured_and_drop_mode_removes_pii(predictor, training):
    event = event_for(predictor, training.iloc[:1])
    [plain] = decisions_of(event, predictor.schema, Redactor(b"k"), include_inputs=False)
    assert plain.inputs is None
    [dropped] = decisions_of(event, predictor.schema, Redactor(b"k", "drop"), include_inputs=True)
    assert dropped.inputs is not None
    assert "home_country" not in dropped.inputs


def test_jsonl_segments_rotate_by_size_and_only_the_newest_are_kept(tmp_path):
    sink = JsonlSink(tmp_path, max_bytes=2000, max_files=3)
    sink.open()
    for i in range(40):
        sink.write([decision(f"r{i}", minutes=i)])
    sink.close()
    segments = sorted(tmp_path.glob("decisions-*.jsonl"))
    assert len(segments) == 3
    found = JsonlReader(tmp_path).query(DecisionQuery(limit=1000))
    assert found[-1].request_id == "r39"
    assert len(found) < 40  # the oldest segments were deleted
    assert JsonlReader(tmp_path).query(DecisionQuery(request_id="r0")) == []


def test_the_jsonl_reader_filters_and_skips_a_partly_written_line(tmp_path):
    sink = JsonlSink(tmp_path)
    sink.open()
    sink.write(
        [
            decision("a", minutes=0),
            decision("b", version="2", minutes=10),
            decision("c", minutes=20),
        ]
    )
    sink.close()
    with next(tmp_path.glob("*.jsonl")).open("ab") as handle:
        handle.write(b'{"request_id": "half')
    reader = JsonlReader(tmp_path)
    assert [d.request_id for d in reader.query(DecisionQuery(request_id="b"))] == ["b"]
    assert [d.request_id for d in reader.query(DecisionQuery(model="fraud", version="1"))] == [
        "a",
        "c",
    ]
    window = DecisionQuery(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=15))
    assert [d.request_id for d in reader.query(window)] == ["b"]
    assert reader.query(DecisionQuery(request_id="a"))[0] == decision("a")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'decisions.db'}"
        return
    yield POSTGRES


@pytest.fixture
def model_name(database_url):
    """A model name no other test run uses, cleaned out of the shared database afterwards."""
    name = f"m-{uuid.uuid4().hex[:12]}"
    yield name
    engine = engine_for(database_url)
    with engine.begin() as connection:
        connection.execute(delete(decisions_table).where(decisions_table.c.model == name))
    engine.dispose()


def test_the_sql_sink_creates_its_table_and_answers_queries(database_url, model_name):
    sink = SqlSink(database_url)
    sink.open()
    sink.open()  # the table already exists: nothing happens
    sink.write(
        [
            decision("q1", model=model_name, minutes=0, row=0),
            decision("q1", model=model_name, minutes=0, row=1),
            decision("q2", model=model_name, version="2", minutes=30),
        ]
    )
    sink.close()
    reader = SqlReader(database_url)
    rows = reader.query(DecisionQuery(request_id="q1", model=model_name))
    assert [(d.request_id, d.row) for d in rows] == [("q1", 0), ("q1", 1)]
    assert rows[0] == decision("q1", model=model_name)
    assert rows[0].time.tzinfo is not None
    later = reader.query(DecisionQuery(model=model_name, since=T0 + timedelta(minutes=10)))
    assert [d.version for d in later] == ["2"]
    assert reader.query(DecisionQuery(model=model_name, version="3")) == []


def test_a_plain_postgresql_url_uses_psycopg_3():
    engine = engine_for(POSTGRES)
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_an_unusable_database_url_is_a_typed_error():
    with pytest.raises(DecisionStoreError, match="not usable"):
        engine_for("nosuchdb://x")


def test_the_observer_writes_every_row_and_counts_them(predictor, training, tmp_path):
    metrics = Metrics()
    observer = DecisionLogObserver(
        JsonlSink(tmp_path),
        lambda name, version: predictor.schema,
        Redactor(b"k"),
        include_inputs=True,
        metrics=metrics,
    )
    observer.start()
    observer.observe(event_for(predictor, training.iloc[:5], request_id="obs-1"))
    observer.close()
    lines = [
        json.loads(line) for f in tmp_path.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    assert [line["row"] for line in lines] == [0, 1, 2, 3, 4]
    assert lines[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert (
        metrics.registry.get_sample_value("rtserve_decisions_written_total", {"sink": "jsonl"}) == 5
    )
    assert np.isclose(lines[0]["latency_seconds"], 0.004)


def test_an_unreachable_database_is_a_typed_error_at_start():
    sink = SqlSink("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DecisionStoreError, match="cannot be used"):
        sink.open()
