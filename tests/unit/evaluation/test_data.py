"""``--data``: a table file, or ``decisions:PATH?query`` for the decision log; what cannot be read
or compared is refused naming the value and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rtserve.errors import ComparisonError
from rtserve.evaluation.data import DEFAULT_DECISION_LIMIT, parse_source
from rtserve.observability.decisions import Decision, JsonlSink

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _decision(i: int, *, model: str = "fraud", version: str = "1", inputs: Any = True) -> Decision:
    return Decision(
        request_id=f"req-{i}",
        row=0,
        time=START + timedelta(seconds=i),
        model=model,
        version=version,
        digest=f"sha256:{version * 8}",
        protocol="records",
        input_hash="sha256:x",
        output={"label": 1},
        latency_seconds=0.001,
        inputs={"amount": float(i), "country": "FR"} if inputs is True else inputs,
        server_id=f"srv-{i}",
    )


def _log(directory: Path, decisions: list[Decision]) -> Path:
    sink = JsonlSink(directory)
    sink.open()
    sink.write(decisions)
    sink.close()
    return directory


def test_a_table_file_is_read_by_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("amount,country\n1.5,FR\n2.5,DE\n", encoding="utf-8")
    source = parse_source(str(path))
    (chunk,) = list(source.chunks(10, ["country"]))
    assert chunk.rows["country"].tolist() == ["FR", "DE"]
    assert source.describe() == f"table {path}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rows.xlsx", "expected a table file ending in .jsonl"),
        ("missing.parquet", "missing.parquet: no such file"),
        ("decisions:", "name the decision log after 'decisions:'"),
        ("decisions:nowhere", "no decision log at nowhere"),
        ("decisions:{log}?modle=fraud", "unknown key 'modle'; a decision-log query accepts model"),
        ("decisions:{log}?limit=0", "limit must be a whole number of records, at least 1"),
        ("decisions:{log}?model=a&model=b", "model is given twice"),
        ("decisions:{log}?since=yesterday", "since must be an ISO 8601 time"),
        ("decisions:{log}?model", "model needs a value"),
    ],
)
def test_an_unusable_data_source_is_refused_naming_it(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log").mkdir()
    with pytest.raises(ComparisonError, match=message):
        parse_source(text.format(log=tmp_path / "log"))


def test_a_decision_query_filters_by_model_version_and_time(tmp_path: Path) -> None:
    log = _log(
        tmp_path / "log",
        [_decision(i, version="1" if i < 6 else "2") for i in range(10)]
        + [_decision(20, model="churn")],
    )
    until = (START + timedelta(seconds=7)).isoformat()
    source = parse_source(f"decisions:{log}?model=fraud&until={until}&limit=5")
    assert source.decisions is not None
    assert source.decisions.limit == 5
    rows = [r for chunk in source.chunks(2, []) for r in chunk.rows]
    assert [r["amount"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert source.served == {"fraud:1 sha256:11111111": 5}
    assert parse_source(f"decisions:{log}").decisions.limit == DEFAULT_DECISION_LIMIT  # type: ignore[union-attr]


def test_a_decision_log_of_several_models_needs_a_model(tmp_path: Path) -> None:
    log = _log(tmp_path / "log", [_decision(1), _decision(2, model="churn")])
    with pytest.raises(
        ComparisonError, match=r"2 models \(churn, fraud\); choose one with .*\?model=NAME"
    ):
        list(parse_source(f"decisions:{log}").chunks(10, []))


def test_a_decision_log_without_inputs_names_the_setting_that_records_them(
    tmp_path: Path,
) -> None:
    log = _log(tmp_path / "log", [_decision(i, inputs=None) for i in range(3)])
    with pytest.raises(ComparisonError) as caught:
        list(parse_source(f"decisions:{log}").chunks(10, []))
    assert "none of the 3 decision records carries its inputs" in caught.value.message
    assert "decision_log.include_inputs: true" in caught.value.message
    assert "RTSERVE_DECISION_LOG__INCLUDE_INPUTS=true" in caught.value.message


def test_a_record_without_inputs_is_set_aside_with_its_reason(tmp_path: Path) -> None:
    log = _log(tmp_path / "log", [_decision(0), _decision(1, inputs=None), _decision(2)])
    segment = next(log.glob("decisions-*.jsonl"))
    (chunk,) = list(parse_source(f"decisions:{segment}").chunks(10, []))  # one segment file
    assert chunk.keys == ["srv-0/0", "srv-1/0", "srv-2/0"]
    assert list(chunk.unreadable) == [1]
    assert "include_inputs" in chunk.unreadable[1]
