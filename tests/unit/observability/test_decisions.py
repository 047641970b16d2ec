"""Decision log: one record per row, PII redacted, written to JSON lines or SQL and read back."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest
from sqlalchemy import delete

from rtserve.events import BatchInfo, PredictionEvent
from rtserve.observability.decisions import (
    Decision,
    DecisionLogObserver,
    DecisionQuery,
    JsonlReader,
    JsonlSink,
    SqlReader,
    SqlSink,
)
from rtserve.observability.decisions.record import decisions_for
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
    records = decisions_for([event], predictor.schema, Redactor(b"k"), include_inputs=True)
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
    [plain] = decisions_for([event], predictor.schema, Redactor(b"k"), include_inputs=False)
    assert plain.inputs is None
    [dropped] = decisions_for(
        [event], predictor.schema, Redactor(b"k", "drop"), include_inputs=True
    )
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
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


# --- the key: the server's own id, never the client's ------------------------------------------


def test_every_prediction_gets_its_own_server_id_even_under_one_request_id(predictor, training):
    first = decisions_for([event_for(predictor, training.iloc[:2], "dup")], None, Redactor(b"k"),
                          include_inputs=False)  # fmt: skip
    second = decisions_for([event_for(predictor, training.iloc[:2], "dup")], None, Redactor(b"k"),
                           include_inputs=False)  # fmt: skip
    assert {d.request_id for d in first + second} == {"dup"}
    assert len({d.server_id for d in first}) == 1  # one prediction's rows share it
    assert first[0].server_id != second[0].server_id
    assert len({(d.server_id, d.row) for d in first + second}) == 4
    assert re.fullmatch(r"[0-9a-f]{32}", first[0].server_id)


def test_a_query_by_request_id_matches_the_client_id_or_the_server_id(tmp_path):
    sink = JsonlSink(tmp_path)
    sink.open()
    a = msgspec.structs.replace(decision("dup"), server_id="s" * 32)
    b = msgspec.structs.replace(decision("dup", minutes=1), server_id="t" * 32)
    sink.write([a, b])
    sink.close()
    reader = JsonlReader(tmp_path)
    assert reader.query(DecisionQuery(request_id="dup")) == [a, b]
    assert reader.query(DecisionQuery(request_id="t" * 32)) == [b]


def test_a_line_written_before_server_ids_existed_still_reads(tmp_path):
    old = decision("old").to_json()
    del old["server_id"]
    (tmp_path / "decisions-20240101T000000000000-1-1.jsonl").write_text(json.dumps(old) + "\n")
    [read] = JsonlReader(tmp_path).query(DecisionQuery(request_id="old"))
    assert read.server_id == ""


# --- segment size ------------------------------------------------------------------------------


def test_jsonl_segments_never_exceed_max_bytes(tmp_path):
    sink = JsonlSink(tmp_path, max_bytes=1500, max_files=1000)
    sink.open()
    written = 0
    for batch in range(60):
        size = batch % 7 + 1  # batches of 1..7 records, crossing segment edges everywhere
        sink.write([decision(f"r{batch}-{i}", row=i) for i in range(size)])
        written += size
    sink.close()
    segments = list(tmp_path.glob("decisions-*.jsonl"))
    assert len(segments) > 10
    assert max(s.stat().st_size for s in segments) <= 1500
    assert len(JsonlReader(tmp_path).query(DecisionQuery(limit=10_000))) == written


def test_a_record_longer_than_max_bytes_loses_its_inputs_then_stands_alone(tmp_path, caplog):
    sink = JsonlSink(tmp_path, max_bytes=1024, max_files=100)
    sink.open()
    small = decision("small")
    wide_inputs = msgspec.structs.replace(
        decision("wide-inputs"), inputs={"text": "x" * 2000}, server_id="a" * 32
    )
    wide_output = msgspec.structs.replace(
        decision("wide-output"), output={"probabilities": {str(i): 0.001 for i in range(200)}}
    )
    sink.write([small, wide_inputs, small, wide_output, small])
    sink.close()
    sizes = sorted(s.stat().st_size for s in tmp_path.glob("decisions-*.jsonl"))
    assert sizes[:-1] == [s for s in sizes[:-1] if s <= 1024]
    assert sizes[-1] > 1024  # the one record that cannot fit, alone in its segment
    alone = max(tmp_path.glob("decisions-*.jsonl"), key=lambda s: s.stat().st_size)
    assert [d.request_id for d in JsonlReader(alone.parent).query(DecisionQuery())].count(
        "wide-output"
    ) == 1
    assert len(alone.read_bytes().splitlines()) == 1
    [kept] = JsonlReader(tmp_path).query(DecisionQuery(request_id="wide-inputs"))
    assert kept.inputs is None  # written, without its inputs
    assert "written without its inputs" in caplog.text
    assert "written alone in a segment of its own" in caplog.text


# --- SQL: the key constraint and tables made by an older rtserve ---------------------------------


def test_the_sql_key_is_the_server_id_with_the_row(database_url, model_name):
    from sqlalchemy.exc import IntegrityError

    sink = SqlSink(database_url)
    sink.open()
    server_id = uuid.uuid4().hex
    first = msgspec.structs.replace(decision("dup", model=model_name), server_id=server_id)
    other = msgspec.structs.replace(first, server_id=uuid.uuid4().hex)
    sink.write([first, other])  # one X-Request-ID, two server ids: both kept
    with pytest.raises(IntegrityError):
        sink.write([msgspec.structs.replace(first, request_id="another")])
    sink.close()
    reader = SqlReader(database_url)
    assert len(reader.query(DecisionQuery(request_id="dup", model=model_name))) == 2
    assert reader.query(DecisionQuery(request_id=server_id, model=model_name)) == [first]


OLD_TABLE = """CREATE TABLE rtserve_decisions (
    id {id} PRIMARY KEY, request_id VARCHAR(128) NOT NULL, row_index INTEGER NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL, model VARCHAR(256) NOT NULL,
    version VARCHAR(128) NOT NULL, digest VARCHAR(80) NOT NULL, protocol VARCHAR(16) NOT NULL,
    input_hash VARCHAR(80) NOT NULL, inputs {json}, output {json} NOT NULL,
    latency_seconds FLOAT NOT NULL, fallback BOOLEAN NOT NULL, variant VARCHAR(128) NOT NULL,
    trace_id VARCHAR(32))"""
OLD_ROW = """INSERT INTO rtserve_decisions (request_id, row_index, time, model, version, digest,
    protocol, input_hash, output, latency_seconds, fallback, variant)
    VALUES ('before', 0, '2024-05-01 12:00:00+00', 'fraud', '1', 'sha256:x', 'records',
    'sha256:y', '{"label": 1}', 0.01, false, '')"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request, tmp_path):
    """A database whose decision table an rtserve without server ids made (PostgreSQL: in a
    schema of its own, dropped afterwards)."""
    from sqlalchemy import text

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        ddl = OLD_TABLE.format(id="INTEGER", json="JSON")
    else:
        schema = f"old_{uuid.uuid4().hex[:12]}"
        admin = engine_for(POSTGRES)
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        ddl = OLD_TABLE.format(id="BIGSERIAL", json="JSONB")
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(text(ddl))
        connection.execute(text(OLD_ROW))
    engine.dispose()
    yield url
    if request.param == "postgresql":
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_a_table_made_before_server_ids_is_read_as_it_is_and_upgraded_on_start(old_database):
    from sqlalchemy import inspect

    [before] = SqlReader(old_database).query(DecisionQuery(request_id="before"))
    assert before.server_id == ""  # the reader does not need the new column
    sink = SqlSink(old_database)
    sink.open()
    sink.close()
    again = SqlSink(old_database)
    again.open()  # a second worker starting: nothing left to do
    again.close()
    engine = engine_for(old_database)
    indexes = {i["name"]: i for i in inspect(engine).get_indexes("rtserve_decisions")}
    engine.dispose()
    key = indexes["ux_rtserve_decisions_server_row"]
    assert key["unique"]
    assert key["column_names"] == ["server_id", "row_index"]
    sink = SqlSink(old_database)
    new = msgspec.structs.replace(decision("after"), server_id=uuid.uuid4().hex)
    sink.write([new, msgspec.structs.replace(new, row=1)])
    sink.close()
    reader = SqlReader(old_database)
    assert reader.query(DecisionQuery(request_id="before")) == [before]
    assert [d.row for d in reader.query(DecisionQuery(request_id=new.server_id))] == [0, 1]
