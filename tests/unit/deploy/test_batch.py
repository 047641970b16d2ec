"""`rtserve batch`: many files scored into a directory laid out like the inputs, streamed in
batches, invalid rows set aside with their reasons, ids passed through, outputs complete or absent."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import rtserve
from rtserve.cli import batch as cli_batch
from rtserve.cli.main import app
from rtserve.deploy import batch
from rtserve.deploy.batch import BatchError, plan_pieces, resolve_inputs, run_batch
from tests.unit.cli.conftest import records, write_jsonl


def rtserve_batch(*args: object) -> Any:
    return CliRunner().invoke(
        app, ["batch", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )


@pytest.fixture
def rows(holdout_transactions: pd.DataFrame) -> pd.DataFrame:
    frame = holdout_transactions.copy()
    frame.insert(0, "tx_id", [f"tx-{i:04d}" for i in range(len(frame))])
    return frame


def expected_frame(predictor: rtserve.Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = predictor.predict(frame.drop(columns=["tx_id"])).to_frame()
    out.insert(0, "tx_id", frame["tx_id"].tolist())
    return out


def assert_scores(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got["tx_id"].tolist() == want["tx_id"].tolist()
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
    np.testing.assert_allclose(got[["proba_0", "proba_1"]], want[["proba_0", "proba_1"]])


def test_each_input_file_gets_one_output_at_the_same_relative_path_in_the_same_format(
    fraud_bundle_dir: Path, fraud_predictor: rtserve.Predictor, rows: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    (source / "day=1").mkdir(parents=True)
    (source / "day=2").mkdir()
    parts = {
        "day=1/part-0.parquet": rows.iloc[:50],
        "day=2/part-0.csv": rows.iloc[50:90],
        "late.jsonl": rows.iloc[90:],
    }
    parts["day=1/part-0.parquet"].to_parquet(source / "day=1/part-0.parquet", row_group_size=16)
    parts["day=2/part-0.csv"].to_csv(source / "day=2/part-0.csv", index=False)
    write_jsonl(source / "late.jsonl", records(parts["late.jsonl"]))
    (source / "_SUCCESS").write_text("")
    (source / ".hidden.csv").write_text("not,rows\n")

    result = rtserve_batch(
        fraud_bundle_dir, "-i", source, "-o", tmp_path / "out", "--id-column", "tx_id",
        "--batch-size", 7, "--rows-per-task", 20,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["_rejects.jsonl", *sorted(parts)]
    assert (out / "_rejects.jsonl").read_text() == ""
    assert_scores(
        pd.read_parquet(out / "day=1/part-0.parquet"),
        expected_frame(fraud_predictor, parts["day=1/part-0.parquet"]),
    )
    assert_scores(
        pd.read_csv(out / "day=2/part-0.csv", dtype={"tx_id": str}),
        expected_frame(fraud_predictor, parts["day=2/part-0.csv"]),
    )
    late = [json.loads(line) for line in (out / "late.jsonl").read_text().splitlines()]
    assert [line["tx_id"] for line in late] == parts["late.jsonl"]["tx_id"].tolist()
    assert set(late[0]) == {"tx_id", "label", "probabilities"}
    assert f"wrote {len(rows)} predictions in 3 file(s)" in result.stderr


def test_a_glob_keeps_paths_relative_to_its_fixed_leading_directories(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    for day in ("2024-01-01", "2024-01-02"):
        (tmp_path / "lake" / f"day={day}").mkdir(parents=True)
        rows.to_parquet(tmp_path / "lake" / f"day={day}" / "part-0.parquet")
    (tmp_path / "lake" / "day=2024-01-01" / "notes.parquet.txt").write_text("ignored")

    summary = run_batch(
        fraud_bundle_dir,
        str(tmp_path / "lake" / "day=*" / "*.parquet"),
        tmp_path / "out",
        id_column="tx_id",
    )

    assert [p.relative_to(tmp_path / "out").as_posix() for p in summary.outputs] == [
        "day=2024-01-01/part-0.parquet",
        "day=2024-01-02/part-0.parquet",
    ]
    assert summary.rows == summary.predicted == 2 * len(rows)


def test_invalid_rows_go_to_the_rejects_file_with_file_row_id_and_reasons(
    fraud_bundle_dir: Path, fraud_predictor: rtserve.Predictor, rows: pd.DataFrame, tmp_path: Path
) -> None:
    bad = records(rows)
    bad[3]["prior_transactions"] = "many"
    bad[41]["hour"] = "noon"
    write_jsonl(tmp_path / "rows.jsonl", bad)
    rejects = tmp_path / "reasons" / "rejects.jsonl"

    result = rtserve_batch(
        fraud_bundle_dir, "-i", tmp_path / "rows.jsonl", "-o", tmp_path / "out",
        "--id-column", "tx_id", "--rejects", rejects, "--batch-size", 16,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["file"], r["tx_id"], r["row"]) for r in lines] == [
        ("rows.jsonl", "tx-0003", 3),
        ("rows.jsonl", "tx-0041", 41),
    ]
    assert lines[0]["violations"][0]["field"] == "prior_transactions"
    assert "'many' is not an int" in lines[0]["violations"][0]["error"]
    assert lines[1]["violations"][0]["field"] == "hour"
    kept = rows.drop(index=[3, 41])
    got = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    want = expected_frame(fraud_predictor, kept)
    assert [line["tx_id"] for line in got] == want["tx_id"].tolist()
    np.testing.assert_allclose([line["probabilities"]["1"] for line in got], want["proba_1"])
    assert f"2 of {len(rows)} rows broke the schema" in result.stderr
    assert "rows.jsonl row 41: hour" in result.stderr


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_whose_rows_are_all_rejected_still_gets_a_valid_empty_table(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    bad = rows.head(5).assign(prior_transactions="many")
    source = tmp_path / f"bad{suffix}"
    bad.to_parquet(source) if suffix == ".parquet" else bad.to_csv(source, index=False)

    summary = run_batch(fraud_bundle_dir, str(source), tmp_path / "out", id_column="tx_id")

    assert (summary.rows, summary.predicted, summary.rejected) == (5, 0, 5)
    target = tmp_path / "out" / source.name
    empty = pd.read_parquet(target) if suffix == ".parquet" else pd.read_csv(target)
    assert list(empty.columns) == ["tx_id", "label", "proba_0", "proba_1"]
    assert len(empty) == 0


def test_predict_with_every_row_rejected_writes_a_readable_empty_parquet(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    bad = rows.drop(columns=["tx_id"]).head(3).assign(prior_transactions="many")
    bad.to_parquet(tmp_path / "bad.parquet")

    result = CliRunner().invoke(
        app,
        ["predict", str(fraud_bundle_dir), "--input", str(tmp_path / "bad.parquet"),
         "--output", str(tmp_path / "out.parquet"), "--on-invalid", "skip"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(tmp_path / "out.parquet").columns) == [
        "label",
        "proba_0",
        "proba_1",
    ]


def test_parquet_is_cut_into_pieces_of_whole_row_groups_that_keep_row_positions(
    rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet", row_group_size=16)  # 120 rows: 7 groups of 16, 8
    inputs = resolve_inputs(str(tmp_path / "rows.parquet"), tmp_path / "out")

    pieces = plan_pieces(inputs, rows_per_task=40)

    assert [(p.start, p.row_groups) for p in pieces] == [
        (0, (0, 1, 2)),
        (48, (3, 4, 5)),
        (96, (6, 7)),
    ]
    read = [
        b
        for p in pieces
        for b in batch.read_batches(p.path, 10, [], row_groups=p.row_groups, start=p.start)
    ]
    assert max(b.size for b in read) <= 10
    assert [b.start for b in read][:6] == [0, 10, 20, 30, 40, 48]
    assert pd.concat([b.rows for b in read])["tx_id"].tolist() == rows["tx_id"].tolist()  # type: ignore[misc]


def test_parquet_outputs_gather_batches_into_full_row_groups_whatever_the_batch_size(
    fraud_bundle_dir: Path,
    fraud_predictor: rtserve.Predictor,
    rows: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One row group per batch would grow the writer's in-memory footer with the file size.
    monkeypatch.setattr(batch, "OUTPUT_ROW_GROUP_ROWS", 50)
    rows.to_parquet(tmp_path / "rows.parquet", row_group_size=16)
    for size in (7, 13):
        run_batch(
            fraud_bundle_dir,
            str(tmp_path / "rows.parquet"),
            tmp_path / f"out-{size}",
            id_column="tx_id",
            batch_size=size,
            rows_per_task=40,
        )

    written = pq.ParquetFile(tmp_path / "out-7" / "rows.parquet").metadata
    assert [written.row_group(i).num_rows for i in range(written.num_row_groups)] == [50, 50, 20]
    assert (tmp_path / "out-7" / "rows.parquet").read_bytes() == (
        tmp_path / "out-13" / "rows.parquet"
    ).read_bytes()
    assert_scores(
        pd.read_parquet(tmp_path / "out-7" / "rows.parquet"), expected_frame(fraud_predictor, rows)
    )


def test_the_progress_line_shows_rows_per_second_and_the_eta_from_parquet_metadata(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")

    result = rtserve_batch(
        fraud_bundle_dir, "-i", tmp_path / "rows.parquet", "-o", tmp_path / "out",
        "--id-column", "tx_id", "--progress",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "120 rows" in result.stderr
    assert "rows/s" in result.stderr
    assert "100%" in result.stderr


def test_an_output_that_would_overwrite_an_input_is_refused(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")

    result = rtserve_batch(fraud_bundle_dir, "-i", tmp_path / "rows.parquet", "-o", tmp_path)

    assert result.exit_code == 1
    assert "over an input file" in result.stderr
    assert pd.read_parquet(tmp_path / "rows.parquet").equals(rows)


def test_outputs_of_an_earlier_run_are_kept_unless_overwrite_is_given(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")
    args = (
        fraud_bundle_dir,
        "-i",
        tmp_path / "rows.parquet",
        "-o",
        tmp_path / "out",
        "--id-column",
        "tx_id",
    )
    assert rtserve_batch(*args).exit_code == 0

    again = rtserve_batch(*args)
    forced = rtserve_batch(*args, "--overwrite")

    assert again.exit_code == 1
    assert "--overwrite" in again.stderr
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.parquet", "no such file or directory"),
        ("empty-dir", "names no table file"),
        ("*.parquet", "names no table file"),
        ("notes.txt", "not a table file"),
    ],
)
def test_inputs_that_name_no_table_file_are_refused_with_the_value(
    fraud_bundle_dir: Path, tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "notes.txt").write_text("hello")

    with pytest.raises(BatchError, match=message) as caught:
        run_batch(fraud_bundle_dir, str(tmp_path / source), tmp_path / "out")

    assert caught.value.code == "batch"
    assert caught.value.field == "input"


def test_a_failed_run_leaves_no_partial_output_file(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    rows.to_parquet(tmp_path / "in" / "a.parquet")
    rows.drop(columns=["tx_id"]).to_parquet(tmp_path / "in" / "b.parquet")

    result = rtserve_batch(
        fraud_bundle_dir, "-i", tmp_path / "in", "-o", tmp_path / "out", "--id-column", "tx_id"
    )

    assert result.exit_code == 1
    assert "no 'tx_id' column" in result.stderr
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["_rejects.jsonl", "a.parquet"]  # a.parquet is complete; b never appeared
    assert len(pd.read_parquet(tmp_path / "out" / "a.parquet")) == len(rows)


def test_the_dask_engine_needs_a_scheduler_address(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")

    result = rtserve_batch(
        fraud_bundle_dir, "-i", tmp_path / "rows.parquet", "-o", tmp_path / "out",
        "--engine", "dask",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "--engine dask needs --scheduler" in result.stderr


def test_without_dask_installed_the_dask_engine_says_how_to_install_it(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails

    with pytest.raises(BatchError, match=r'pip install "rtserve\[dask\]"'):
        run_batch(
            fraud_bundle_dir,
            str(tmp_path / "rows.parquet"),
            tmp_path / "out",
            engine="dask",
            scheduler="tcp://127.0.0.1:1",
        )
    assert not (tmp_path / "out" / "rows.parquet").exists()


def test_the_command_line_defaults_equal_the_library_defaults() -> None:
    assert cli_batch.DEFAULT_BATCH_SIZE == batch.DEFAULT_BATCH_SIZE
    assert cli_batch.DEFAULT_ROWS_PER_TASK == batch.DEFAULT_ROWS_PER_TASK


def test_the_rejects_file_is_hidden_from_parquet_readers_of_the_output_directory(
    fraud_bundle_dir: Path, rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows.to_parquet(tmp_path / "rows.parquet")
    run_batch(fraud_bundle_dir, str(tmp_path / "rows.parquet"), tmp_path / "out", id_column="tx_id")

    assert pq.read_table(tmp_path / "out").num_rows == len(rows)
