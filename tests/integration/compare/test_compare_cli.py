"""``rtserve compare`` through the CLI: two real models that differ in one segment only are told
apart there and nowhere else; gates make it a CI step; live traffic from the decision log and
registry versions are compared the same way."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rtserve.cli.main import app
from tests.compare_support import CHANGED_COUNTRY, LABEL, SegmentPair

pytestmark = pytest.mark.integration


def rtserve_compare(*args: object) -> Result:
    return CliRunner().invoke(
        app, ["compare", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "160"}
    )


def summary_of(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "summary.json").read_text(encoding="utf-8"))


def flagged_segments(summary: dict[str, Any], field: str) -> set[str]:
    return {f["value"] for f in summary["flags"] if f["field"] == field}


def test_compare_flags_exactly_the_segment_where_the_models_differ(
    segment_pair: SegmentPair, holdout_parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    gated = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", holdout_parquet, "--labels", LABEL,
        "--segment-by", "country", "--fail-on", "any_flag", "-o", out,
    )  # fmt: skip

    assert gated.exit_code == 1, gated.output
    summary = summary_of(out)
    assert flagged_segments(summary, "country") == {CHANGED_COUNTRY}
    fr = next(s for s in summary["segments"] if s["value"] == CHANGED_COUNTRY)
    auc = next(c for c in fr["checks"] if c["delta"] == "auc_drop")
    assert auc["flagged"]
    assert auc["ci"][0] > 0  # NEW's AUC in FR is worse, beyond chance
    assert fr["agreement"] < 0.1  # NEW inverts the decisions there
    others = [s for s in summary["segments"] if s["value"] != CHANGED_COUNTRY]
    assert len(others) == 4
    assert all(s["agreement"] > 0.98 for s in others)
    assert summary["gates"] == [
        {"gate": "any_flag", "value": len(summary["flags"]), "broken": True, "note": ""}
    ]
    assert summary["passed"] is False
    assert summary["data"]["rows_compared"] == 3000
    assert (out / "report.html").stat().st_size > 10_000
    assert "country=FR" in gated.stdout
    assert "error: 1 of 1 gate(s) broken: any_flag" in gated.stderr

    ungated = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", holdout_parquet, "--labels", LABEL,
        "--segment-by", "country", "--no-html", "-o", tmp_path / "ungated",
    )  # fmt: skip
    assert ungated.exit_code == 0, ungated.output
    assert flagged_segments(summary_of(tmp_path / "ungated"), "country") == {CHANGED_COUNTRY}
    assert not (tmp_path / "ungated" / "report.html").exists()


def test_metric_gates_pass_or_break_on_their_thresholds(
    segment_pair: SegmentPair, holdout_parquet: Path, tmp_path: Path
) -> None:
    result = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", holdout_parquet, "--labels", LABEL,
        "--fail-on", "agreement<0.5,auc_drop>0.5,auc_drop>0.05", "--no-html", "--resamples",
        100, "-o", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    gates = {g["gate"]: g["broken"] for g in summary_of(tmp_path)["gates"]}
    assert gates == {"agreement<0.5": False, "auc_drop>0.5": False, "auc_drop>0.05": True}
    assert "auc_drop>0.05 (value 0.1" in result.stderr


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ("auc_dorp>0.01", "gate 'auc_dorp>0.01': unknown name 'auc_dorp'"),
        ("agreement=0.98", "gate 'agreement=0.98' does not parse"),
    ],
)
def test_a_bad_gate_is_a_usage_error_naming_it_and_the_accepted_forms(
    segment_pair: SegmentPair, holdout_parquet: Path, gate: str, message: str
) -> None:
    result = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", holdout_parquet, "--fail-on", gate
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "any_flag" in result.output


def test_a_gate_on_label_metrics_needs_labels(
    segment_pair: SegmentPair, holdout_parquet: Path
) -> None:
    result = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", holdout_parquet, "--fail-on", "auc_drop>0.01"
    )
    assert result.exit_code == 2
    assert "--labels" in result.output


def test_the_html_report_without_matplotlib_names_the_extra_to_install(
    segment_pair: SegmentPair, holdout_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    result = rtserve_compare(segment_pair.old, segment_pair.new, "--data", holdout_parquet)
    assert result.exit_code == 1
    assert "pip install 'rtserve[report]'" in result.stderr
    assert "--no-html" in result.stderr


def test_live_traffic_from_the_decision_log_is_compared_on_its_recorded_inputs(
    segment_pair: SegmentPair, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from rtserve.server.app import create_app
    from rtserve.settings import Settings
    from tests.integration.conftest import wait_ready

    log = tmp_path / "decisions"
    rows = segment_pair.holdout.drop(columns=[LABEL]).head(400)
    instances = json.loads(rows.to_json(orient="records"))
    settings = Settings.load(
        bundles=[str(segment_pair.old)],
        decision_log={"directory": str(log), "include_inputs": True},
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        for start in range(0, len(instances), 100):
            reply = client.post(
                "/v1/models/fraud:predict", json={"instances": instances[start : start + 100]}
            )
            assert reply.status_code == 200, reply.text

    out = tmp_path / "report"
    result = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", f"decisions:{log}?model=fraud&version=1",
        "--segment-by", "country", "--no-html", "-o", out,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    summary = summary_of(out)
    assert summary["data"]["rows_read"] == 400
    assert summary["data"]["rows_compared"] == 400
    assert summary["data"]["served"] == {f"fraud:1 {summary['old']['digest']}": 400}
    # no labels in live traffic: the models are compared by their agreement alone
    assert [c["delta"] for c in summary["overall"]["checks"]] == ["disagreement"]
    assert flagged_segments(summary, "country") == {CHANGED_COUNTRY}


def test_registry_versions_are_compared_by_name_and_ref(
    segment_pair: SegmentPair, holdout_parquet: Path, tmp_path: Path
) -> None:
    from tests.registry_support import open_registry, push

    registry = open_registry(tmp_path / "registry")
    push(registry, segment_pair.old)
    push(registry, segment_pair.new)
    registry.close()
    result = rtserve_compare(
        "fraud@1", "fraud@2", "--registry", tmp_path / "registry", "--data", holdout_parquet,
        "--no-html", "--resamples", 100, "-o", tmp_path / "report", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = summary_of(tmp_path / "report")
    assert json.loads(result.stdout) == summary  # --json: the summary on stdout, notes on stderr
    assert (summary["old"]["version"], summary["new"]["version"]) == ("1", "2")
    assert summary["old"]["source"] == "fraud@1"
    missing = rtserve_compare("fraud@1", "fraud@2", "--data", holdout_parquet)
    assert missing.exit_code == 1
    assert "add --registry DIR" in missing.stderr


def test_rows_set_aside_are_counted_listed_and_warned_about(
    segment_pair: SegmentPair, tmp_path: Path
) -> None:
    rows = segment_pair.holdout.head(300).astype({"hour": "object", LABEL: "object"})
    rows.loc[[4, 9], "hour"] = None  # both models require an hour
    rows.loc[17, LABEL] = None  # no label
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    result = rtserve_compare(
        segment_pair.old, segment_pair.new, "--data", path, "--labels", LABEL, "--no-html",
        "--resamples", 100, "-o", tmp_path / "report",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = summary_of(tmp_path / "report")["data"]
    assert (data["rows_read"], data["rows_compared"], data["rows_invalid"]) == (300, 297, 3)
    assert [r["row"] for r in data["invalid_rows"]] == [4, 9, 17]
    assert data["invalid_reasons"] == [
        {"by": "old", "field": "hour", "rule": "required", "rows": 2},
        {"by": "new", "field": "hour", "rule": "required", "rows": 2},
        {"by": "data", "field": LABEL, "rule": "label_missing", "rows": 1},
    ]
    assert "warning: 3 of 300 rows were set aside for both models" in result.stderr
