"""`rtserve predict`: offline predictions for a file of rows, streamed in batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from tests.unit.cli.conftest import Invoke, ModelFiles, records, write_jsonl


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_predict_writes_one_json_line_per_row_to_stdout(
    rtserve_cli: Invoke,
    fraud_bundle_dir: Path,
    fraud_pipeline: Any,
    model_files: ModelFiles,
    holdout_transactions: pd.DataFrame,
) -> None:
    result = rtserve_cli("predict", fraud_bundle_dir, "--input", model_files.rows_jsonl)

    assert result.exit_code == 0, result.output
    lines = _jsonl(result.stdout)
    assert len(lines) == len(holdout_transactions)
    expected = fraud_pipeline.predict_proba(holdout_transactions)
    got = np.array([[line["probabilities"]["0"], line["probabilities"]["1"]] for line in lines])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert [line["label"] for line in lines] == fraud_pipeline.predict(
        holdout_transactions
    ).tolist()
    assert result.stderr == ""


@pytest.mark.parametrize("source", ["rows_jsonl", "rows_csv", "rows_parquet"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_predict_reads_and_writes_every_table_format_alike(
    rtserve_cli: Invoke,
    fraud_bundle_dir: Path,
    fraud_predictor: rtserve.Predictor,
    model_files: ModelFiles,
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
    source: str,
    suffix: str,
) -> None:
    target = tmp_path / f"out{suffix}"

    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", getattr(model_files, source), "--output", target
    )

    assert result.exit_code == 0, result.output
    assert f"wrote {len(holdout_transactions)} predictions" in result.stderr
    expected = fraud_predictor.predict(holdout_transactions).to_frame()
    if suffix == ".jsonl":
        lines = _jsonl(target.read_text())
        frame = pd.DataFrame(
            {
                "label": [line["label"] for line in lines],
                "proba_0": [line["probabilities"]["0"] for line in lines],
                "proba_1": [line["probabilities"]["1"] for line in lines],
            }
        )
    else:
        frame = pd.read_csv(target) if suffix == ".csv" else pd.read_parquet(target)
    assert list(frame.columns) == list(expected.columns)
    np.testing.assert_array_equal(frame["label"].to_numpy(), expected["label"].to_numpy())
    np.testing.assert_allclose(frame[["proba_0", "proba_1"]], expected[["proba_0", "proba_1"]])


def test_predict_in_small_batches_gives_the_same_answers(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, model_files: ModelFiles, tmp_path: Path
) -> None:
    whole = rtserve_cli("predict", fraud_bundle_dir, "--input", model_files.rows_parquet)
    batched = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_parquet, "--batch-size", 7
    )
    csv_batched = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_csv, "--batch-size", 7
    )

    assert whole.exit_code == batched.exit_code == csv_batched.exit_code == 0
    expected = _jsonl(whole.stdout)
    for other in (_jsonl(batched.stdout), _jsonl(csv_batched.stdout)):
        # BLAS may round the last bit differently for another batch shape.
        assert [line["label"] for line in other] == [line["label"] for line in expected]
        np.testing.assert_allclose(
            [line["probabilities"]["1"] for line in other],
            [line["probabilities"]["1"] for line in expected],
            rtol=0,
            atol=1e-12,
        )


def test_predict_names_the_rows_and_fields_that_break_the_schema(
    rtserve_cli: Invoke,
    fraud_bundle_dir: Path,
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
) -> None:
    rows = records(holdout_transactions.head(12))
    rows[9]["country"] = "XX"
    rows[10]["hour"] = "noon"
    rows[10]["colour"] = "red"
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    target = tmp_path / "out.csv"

    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", source, "--output", target, "--batch-size", 4
    )

    assert result.exit_code == 1
    first, *details = result.stderr.splitlines()
    assert first.startswith("error: ")
    assert any(line.startswith("  row 10: colour") for line in details)
    assert any(line.startswith("  row 10: hour") for line in details)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [source]


def test_predict_reports_all_violations_across_the_first_failing_batch(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, holdout_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    rows = records(holdout_transactions.head(3))
    rows[0]["country"] = "XX"
    rows[2]["prior_transactions"] = "many"
    source = write_jsonl(tmp_path / "rows.jsonl", rows)

    result = rtserve_cli("predict", fraud_bundle_dir, "--input", source)

    assert result.exit_code == 1
    assert "prior_transactions: 'many' is not an int (row 2)" in result.stderr
    assert result.stdout == ""


def test_predict_a_regressor_writes_values(
    rtserve_cli: Invoke,
    loss_pipeline: Any,
    transactions: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
    model_files: ModelFiles,
    tmp_path: Path,
) -> None:
    rtserve.build(loss_pipeline, transactions, name="loss", version="1").save(tmp_path / "loss")

    result = rtserve_cli("predict", tmp_path / "loss", "--input", model_files.rows_jsonl)

    assert result.exit_code == 0, result.output
    values = [line["value"] for line in _jsonl(result.stdout)]
    np.testing.assert_allclose(values, loss_pipeline.predict(holdout_transactions), atol=1e-9)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"amount": 1}\n{"amount": \n', "line 2: not valid JSON"),
        ("[1, 2]\n", "line 1: expected one JSON object"),
        ("\n\n", "holds no rows"),
    ],
)
def test_predict_refuses_a_malformed_input_file(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(content)

    result = rtserve_cli("predict", fraud_bundle_dir, "--input", source)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_predict_usage_mistakes_exit_2(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, model_files: ModelFiles, tmp_path: Path
) -> None:
    odd_input = tmp_path / "rows.xml"
    odd_input.write_text("<rows/>")

    wrong_input = rtserve_cli("predict", fraud_bundle_dir, "--input", odd_input)
    wrong_output = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_jsonl, "-o", tmp_path / "o.xml"
    )
    no_input = rtserve_cli("predict", fraud_bundle_dir)
    zero_batch = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_jsonl, "--batch-size", 0
    )

    assert [r.exit_code for r in (wrong_input, wrong_output, no_input, zero_batch)] == [2] * 4
    assert ".jsonl" in wrong_input.stderr
    assert not (tmp_path / "o.xml").exists()


def _rows_with_ids_and_two_bad(holdout_transactions: pd.DataFrame) -> list[dict[str, Any]]:
    rows = records(holdout_transactions.head(10))
    for i, row in enumerate(rows):
        row["tx_id"] = f"tx-{i:03d}"
    rows[3]["amount"] = "lots"
    rows[7]["hour"] = "noon"
    return rows


def test_skip_leaves_invalid_rows_out_and_ids_join_the_rest_back(
    rtserve_cli: Invoke,
    fraud_bundle_dir: Path,
    fraud_predictor: rtserve.Predictor,
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", _rows_with_ids_and_two_bad(holdout_transactions))

    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", source, "--on-invalid", "skip",
        "--id-column", "tx_id", "--batch-size", 4,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = _jsonl(result.stdout)
    kept = [i for i in range(10) if i not in (3, 7)]
    assert [line["tx_id"] for line in lines] == [f"tx-{i:03d}" for i in kept]
    expected = fraud_predictor.predict(holdout_transactions.head(10).iloc[kept]).to_records()
    assert [line["label"] for line in lines] == [e["label"] for e in expected]
    assert "2 of 10 rows broke the schema" in result.stderr
    assert "row 3: amount" in result.stderr
    assert "row 7: hour" in result.stderr


def test_reject_file_writes_each_invalid_row_with_its_number_id_and_reasons(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, holdout_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", _rows_with_ids_and_two_bad(holdout_transactions))
    target = tmp_path / "scores.csv"

    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", source, "--output", target,
        "--on-invalid", "reject-file", "--id-column", "tx_id", "--batch-size", 3,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    scores = pd.read_csv(target)
    assert scores.columns[0] == "tx_id"
    assert len(scores) == 8
    rejects = _jsonl((tmp_path / "scores.csv.rejects.jsonl").read_text())
    assert [(r["row"], r["tx_id"]) for r in rejects] == [(3, "tx-003"), (7, "tx-007")]
    assert [v["field"] for v in rejects[0]["violations"]] == ["amount"]
    assert rejects[1]["violations"][0]["rule"] == "type"


def test_fail_is_the_default_and_writes_nothing(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, holdout_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", _rows_with_ids_and_two_bad(holdout_transactions))

    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", source, "--id-column", "tx_id",
        "--output", tmp_path / "out.jsonl",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "row 3" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_an_id_column_missing_from_the_input_is_named(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, model_files: ModelFiles
) -> None:
    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_parquet, "--id-column", "nope"
    )

    assert result.exit_code == 1
    assert result.stderr.startswith("error: row 0 has no 'nope' column")
    assert "Traceback" not in result.output


def test_reject_file_to_stdout_needs_a_rejects_path(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, model_files: ModelFiles
) -> None:
    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_jsonl, "--on-invalid",
        "reject-file",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "--rejects" in result.stderr


def test_progress_shows_rows_per_second_and_the_total_of_a_parquet_file(
    rtserve_cli: Invoke,
    fraud_bundle_dir: Path,
    model_files: ModelFiles,
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
) -> None:
    result = rtserve_cli(
        "predict", fraud_bundle_dir, "--input", model_files.rows_parquet,
        "--output", tmp_path / "out.parquet", "--progress", "--batch-size", 50,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert f"{len(holdout_transactions):,} rows" in result.stderr
    assert "rows/s" in result.stderr
    assert "100%" in result.stderr
