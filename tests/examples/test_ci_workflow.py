"""examples/ci/compare-models.yml stays in step with the CLI: every option its `rtserve compare`
step passes exists, its gates parse, the report is uploaded even when a gate breaks, and its
job-summary step reads a real summary.json."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from rtserve.cli.main import app
from rtserve.evaluation.gates import parse_gates
from tests.conftest import fraud_target

WORKFLOW = Path(__file__).parents[2] / "examples" / "ci" / "compare-models.yml"


def steps() -> list[dict[str, Any]]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return [step for job in document["jobs"].values() for step in job["steps"]]


def command_words(step: dict[str, Any], program: str) -> list[str]:
    """The words of the step's ``program`` command (line continuations joined, ${{ }} blanked)."""
    script = re.sub(r"\$\{\{[^}]*\}\}", "X", step["run"].replace("\\\n", " "))
    line = next(line for line in script.splitlines() if line.strip().startswith(program))
    return shlex.split(line)


def test_the_compare_step_uses_only_options_the_command_has() -> None:
    step = next(s for s in steps() if "rtserve compare" in s.get("run", ""))
    words = command_words(step, "rtserve compare")
    command = typer.main.get_command(app).commands["compare"]  # type: ignore[attr-defined]
    known = {name for param in command.params for name in param.opts}
    used = [w for w in words if w.startswith("-")]
    assert used
    assert set(used) <= known, set(used) - known
    gates = parse_gates(words[words.index("--fail-on") + 1])
    assert {g.name for g in gates} >= {"any_flag", "auc_drop"}
    assert "--labels" in used  # the label gates need labels


def test_the_report_is_uploaded_even_when_a_gate_fails_the_job() -> None:
    upload = next(
        s for s in steps() if str(s.get("uses", "")).startswith("actions/upload-artifact")
    )
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "compare-report"


@pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq (in GitHub's ubuntu runners)")
def test_the_job_summary_step_reads_a_real_summary(
    fraud_bundle_dir: Path, holdout_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    rows = tmp_path / "holdout.parquet"
    holdout_transactions.assign(is_fraud=fraud_target(holdout_transactions)).to_parquet(rows)
    result = CliRunner().invoke(
        app,
        ["compare", str(fraud_bundle_dir), str(fraud_bundle_dir), "--data", str(rows),
         "--labels", "is_fraud", "--fail-on", "auc_drop>0.01,any_flag", "--no-html",
         "--resamples", "100", "-o", str(tmp_path / "compare-report")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    step = next(s for s in steps() if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    summary = tmp_path / "step-summary.md"
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step["run"]],
        cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"},
        check=True, timeout=30,
    )  # fmt: skip
    assert summary.read_text(encoding="utf-8").splitlines() == [
        "### rtserve compare",
        "passed: true",
        "- gate `auc_drop>0.01`: passed (0)",
        "- gate `any_flag`: passed (0)",
    ]
