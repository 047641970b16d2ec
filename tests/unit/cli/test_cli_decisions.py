"""``rtserve decisions`` through the real command line app."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import typer
from typer.testing import CliRunner

from rtserve.cli.decisions import parse_moment
from rtserve.cli.main import app
from rtserve.observability.decisions import Decision, JsonlSink, SqlSink

NOW = datetime.now(UTC)


def decision(request_id: str, version: str, minutes_ago: float) -> Decision:
    return Decision(
        request_id=request_id,
        row=0,
        time=NOW - timedelta(minutes=minutes_ago),
        model="fraud",
        version=version,
        digest="sha256:" + "c" * 64,
        protocol="records",
        input_hash="sha256:" + "d" * 64,
        output={"label": 1},
        latency_seconds=0.002,
    )


@pytest.fixture
def log_dir(tmp_path):
    sink = JsonlSink(tmp_path / "decisions")
    sink.open()
    sink.write([decision("old", "1", 180), decision("new", "2", 5)])
    sink.close()
    return tmp_path / "decisions"


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_request_id_names_the_model_version_that_decided(log_dir):
    result = run("decisions", "--request-id", "new", "--dir", log_dir, "--json")
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (record["model"], record["version"]) == ("fraud", "2")
    assert record["digest"] == "sha256:" + "c" * 64


def test_a_time_range_and_version_filter_the_table(log_dir):
    result = run("decisions", "--model", "fraud", "--since", "1h", "--dir", log_dir)
    assert result.exit_code == 0, result.output
    assert "new" in result.stdout
    assert "old" not in result.stdout
    assert "1 decision(s)" in result.stderr


def test_an_unknown_request_id_fails_with_exit_code_1(log_dir):
    result = run("decisions", "--request-id", "nope", "--dir", log_dir)
    assert result.exit_code == 1
    assert "no decision with request id or server id 'nope'" in result.stderr


def test_the_sql_sink_is_read_with_a_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    sink = SqlSink(url)
    sink.open()
    sink.write([decision("sql-1", "7", 1)])
    sink.close()
    result = run("decisions", "--request-id", "sql-1", "--database-url", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "7"


def test_the_sink_comes_from_the_settings_when_not_given(log_dir, monkeypatch):
    monkeypatch.setenv("RTSERVE_DECISION_LOG__DIRECTORY", str(log_dir))
    result = run("decisions", "--request-id", "old", "--json")
    assert result.exit_code == 0, result.output


def test_a_malformed_time_is_a_usage_error(log_dir):
    result = run("decisions", "--since", "yesterday-ish", "--dir", log_dir)
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_moments_are_iso_times_or_spans_ago():
    now = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_moment("2h", now=now) == datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
    assert parse_moment("2024-01-01T00:00:00", now=now) == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_moment("2024-01-01T01:00:00+01:00") == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_moment("soon")


def test_the_server_id_finds_a_decision_and_shows_in_the_table(tmp_path):
    sink = JsonlSink(tmp_path)
    sink.open()
    server_id = "5" * 32
    sink.write([msgspec.structs.replace(decision("shared", "3", 1), server_id=server_id)])
    sink.close()
    result = run("decisions", "--request-id", server_id, "--dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["request_id"], record["server_id"]) == ("shared", server_id)
    table = run("decisions", "--request-id", "shared", "--dir", tmp_path)
    assert table.exit_code == 0, table.output
    assert "server" in table.stdout  # the column (narrow test terminals wrap its title)
