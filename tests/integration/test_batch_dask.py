"""`rtserve batch --engine dask`: pieces scored on a real Dask cluster (two worker processes on
127.0.0.1) give byte-identical outputs and rejects to the one-machine run, and each worker loads
the bundle once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app
from rtserve.deploy.batch import loaded_bundles, run_batch
from tests.unit.cli.conftest import records, write_jsonl

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        processes=True,
        dashboard_address=None,
    ) as local:
        yield local


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, holdout_transactions: pd.DataFrame) -> Path:
    """Partitioned inputs of every format, with many row groups and a few invalid rows."""
    root = tmp_path_factory.mktemp("lake")
    frame = pd.concat([holdout_transactions] * 5, ignore_index=True)  # 600 rows
    frame.insert(0, "tx_id", [f"tx-{i:05d}" for i in range(len(frame))])
    for day in range(3):
        (root / f"day={day}").mkdir()
        part = frame.iloc[day * 150 : (day + 1) * 150]
        part.to_parquet(root / f"day={day}" / "part-0.parquet", row_group_size=20)
    frame.iloc[450:520].to_csv(root / "day=0" / "extra.csv", index=False)
    rows = records(frame.iloc[520:])
    rows[4]["prior_transactions"] = "many"
    rows[60]["hour"] = "noon"
    write_jsonl(root / "late.jsonl", rows)
    return root


def test_dask_workers_write_byte_identical_outputs_to_the_one_machine_run(
    cluster: Any, fraud_bundle_dir: Path, inputs: Path, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"id_column": "tx_id", "batch_size": 16, "rows_per_task": 40}

    local = run_batch(fraud_bundle_dir, str(inputs), tmp_path / "local", **options)
    on_dask = run_batch(
        fraud_bundle_dir,
        str(inputs),
        tmp_path / "dask",
        engine="dask",
        scheduler=cluster.scheduler_address,
        **options,
    )

    names = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.*"))
    assert [n.as_posix() for n in names] == [
        "_rejects.jsonl",
        "day=0/extra.csv",
        "day=0/part-0.parquet",
        "day=1/part-0.parquet",
        "day=2/part-0.parquet",
        "late.jsonl",
    ]
    for name in names:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert (on_dask.rows, on_dask.predicted, on_dask.rejected) == (600, 598, 2)
    assert (local.rows, local.predicted, local.rejected) == (600, 598, 2)
    rejects = (tmp_path / "dask" / "_rejects.jsonl").read_text().splitlines()
    assert [(r["file"], r["row"]) for r in map(json.loads, rejects)] == [
        ("late.jsonl", 4),
        ("late.jsonl", 60),
    ]
    with distributed.Client(cluster) as client:
        assert sorted(client.run(loaded_bundles).values()) == [1, 1]  # each worker loaded once


def test_the_dask_engine_runs_from_the_command_line(
    cluster: Any, fraud_bundle_dir: Path, inputs: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["batch", str(fraud_bundle_dir), "-i", str(inputs / "day=*" / "*.parquet"),
         "-o", str(tmp_path / "out"), "--id-column", "tx_id",
         "--engine", "dask", "--scheduler", cluster.scheduler_address],
        env={"NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "wrote 450 predictions in 3 file(s)" in result.stderr
    assert pd.read_parquet(tmp_path / "out" / "day=1" / "part-0.parquet")["tx_id"].iloc[0] == (
        "tx-00150"
    )


def test_an_unreachable_scheduler_is_an_error_naming_the_address(
    fraud_bundle_dir: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtserve.deploy import batch
    from rtserve.errors import BatchError

    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT_S", 1.0)

    with pytest.raises(BatchError, match=r"tcp://127\.0\.0\.1:9: cannot reach a Dask scheduler"):
        run_batch(
            fraud_bundle_dir,
            str(inputs / "late.jsonl"),
            tmp_path / "out",
            id_column="tx_id",
            engine="dask",
            scheduler="tcp://127.0.0.1:9",
        )
    assert not (tmp_path / "out" / "late.jsonl").exists()
