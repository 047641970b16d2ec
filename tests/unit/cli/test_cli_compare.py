"""``rtserve compare`` on the command line: its help costs no heavy import, and options that do
not parse are usage errors naming the option (the comparison itself: tests/integration/compare)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_imports_neither_matplotlib_nor_scikit_learns_metrics(argv: list[str]) -> None:
    heavy = ["matplotlib", "sklearn", "sklearn.metrics", "numpy", "pandas"]
    code = (
        f"import sys\nfrom rtserve.cli.main import main\nsys.argv = ['rtserve', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', ' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "compare" in result.stdout
    assert result.stdout.splitlines()[-1].split() == ["LOADED"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tolerance", "auc_drop"], "expected NAME=NUMBER"),
        (["--tolerance", "auc_drop=-1"], "a tolerance is a finite number, at least 0"),
        (["--tolerance", "speed=0.1"], "NAME one of disagreement"),
        (["--segment-by", "country,,channel"], "empty field name"),
        (["--fail-on", "any_flag,"], "has an empty gate"),
        (["--resamples", "10"], "greater than or equal to 50"),
    ],
)
def test_options_that_do_not_parse_are_usage_errors(
    options: list[str], message: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["compare", "old", "new", "--data", str(tmp_path / "rows.csv"), *options],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_bundle_or_data_file_is_a_failure_naming_it(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("amount\n1\n", encoding="utf-8")
    missing = CliRunner().invoke(
        app, ["compare", str(fraud_bundle_dir), str(tmp_path / "nope"), "--data", str(rows)]
    )
    assert missing.exit_code == 1
    assert f"NEW {tmp_path / 'nope'}: no such bundle" in missing.stderr
    no_data = CliRunner().invoke(
        app, ["compare", str(fraud_bundle_dir), str(fraud_bundle_dir), "--data", "rows.xlsx"]
    )
    assert no_data.exit_code == 1
    assert "expected a table file ending in .jsonl" in no_data.stderr


def test_a_gate_the_models_cannot_answer_is_a_usage_error(
    loss_pipeline: object, transactions: object, tmp_path: Path
) -> None:
    import pandas as pd

    import rtserve
    from tests.conftest import loss_target

    assert isinstance(transactions, pd.DataFrame)
    bundle = tmp_path / "loss-1"
    rtserve.build(loss_pipeline, transactions, name="loss", version="1", optimize="off").save(
        bundle
    )
    rows = tmp_path / "rows.parquet"
    transactions.assign(loss=loss_target(transactions)).to_parquet(rows)
    result = CliRunner().invoke(
        app,
        ["compare", str(bundle), str(bundle), "--data", str(rows), "--labels", "loss",
         "--fail-on", "auc_drop>0.01", "--no-html", "-o", str(tmp_path / "out")],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "gate auc_drop>0.01: auc_drop is computed for classification only" in result.output
