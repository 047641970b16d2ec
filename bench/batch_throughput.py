"""Batch scoring throughput and peak memory: `rtserve batch` in one process vs on Dask (2 workers)
vs plain `predict_proba` on a pandas frame, on the demo fraud pipeline.

    uv run python bench/batch_throughput.py --rows 1000000
    uv run python bench/batch_throughput.py --rows 10000000 --no-plain

Everything runs on this machine on 127.0.0.1 (a LocalCluster of 2 worker processes, 1 thread
each). The input is one parquet file of ``--rows`` rows in row groups of 65,536 rows, with an id
column, generated in chunks so that this process never holds it whole. `predict_proba` is timed on
the frame already in memory (no reading, no validation, no writing): the ceiling for the model
itself; ``--no-plain`` skips it (it needs the whole frame in memory).

Peak RSS is each process's own high-water mark (``VmHWM`` in ``/proc/self/status``, read as it
exits; Linux only). ``getrusage(RUSAGE_CHILDREN)`` would not do: a child started with vfork, as
``subprocess`` does, inherits this process's high-water mark (here, the frame), which hides its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

#: Rows generated at a time (a multiple of the row group size, so that groups stay whole).
CHUNK_ROWS = 65_536 * 8
#: Runs the rtserve command line in this interpreter and writes its peak RSS (MiB) to the file
#: named by RTSERVE_BENCH_PEAK as it exits.
PEAK_WRAPPER = """
import atexit, os, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            with open(os.environ["RTSERVE_BENCH_PEAK"], "w") as out:
                out.write(str(int(line.split()[1]) / 1024))
atexit.register(_peak)
sys.argv = ["rtserve", *sys.argv[1:]]
runpy.run_module("rtserve", run_name="__main__")
"""


def peak_mib() -> float:
    """This process's peak RSS in MiB (run on each Dask worker)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise LookupError("no VmHWM in /proc/self/status")


def write_input(target: Path, rows: int) -> None:
    """``rows`` demo transactions with a ``tx_id`` column, in row groups of 65,536 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rtserve.demo import card_transactions

    writer: Any = None
    done = 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        frame, _ = card_transactions(n, seed=11 + done)
        frame.insert(0, "tx_id", range(done, done + n))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema)
        writer.write_table(table, row_group_size=65_536)
        done += n
    writer.close()


def rtserve_batch(*args: str) -> tuple[float, float]:
    """Run `rtserve batch ARGS` in a child process: its wall seconds and peak RSS (MiB)."""
    with tempfile.NamedTemporaryFile(prefix="rtserve-peak-") as peak:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, "batch", *args, "--no-progress"],
            check=True,
            env={**os.environ, "RTSERVE_BENCH_PEAK": peak.name},
        )
        seconds = time.perf_counter() - started
        return seconds, float(Path(peak.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-plain",
        action="store_true",
        help="skip plain predict_proba (it holds the whole frame in memory)",
    )
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from rtserve.demo import build_demo_bundle, card_transactions, fraud_pipeline

    with tempfile.TemporaryDirectory(prefix="rtserve-batch-bench-") as tmp:
        root = Path(tmp)
        bundle = build_demo_bundle(root / "bundle")
        source = root / "in" / "rows.parquet"
        source.parent.mkdir()
        write_input(source, args.rows)
        print(f"{args.rows:,} rows, {source.stat().st_size / 2**20:.0f} MiB parquet")
        common = [str(bundle), "-i", str(source), "--id-column", "tx_id"]

        # 1. rtserve batch, one process
        local_s, local_mib = rtserve_batch(*common, "-o", str(root / "local"))

        # 2. rtserve batch on Dask: the client in a child process, the workers' peaks asked after
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                host="127.0.0.1",
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            dask_s, client_mib = rtserve_batch(
                *common,
                "-o",
                str(root / "dask"),
                "--engine",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
            )
            worker_mib: dict[str, float] = client.run(peak_mib)

        same = (root / "local" / "rows.parquet").read_bytes() == (
            root / "dask" / "rows.parquet"
        ).read_bytes()
        print(f"rtserve batch, one process : {args.rows / local_s:>10,.0f} rows/s  "
              f"({local_s:.1f} s, peak RSS {local_mib:,.0f} MiB)")  # fmt: skip
        workers = ", ".join(f"{m:,.0f}" for m in sorted(worker_mib.values()))
        print(f"rtserve batch, Dask x{args.workers}     : {args.rows / dask_s:>10,.0f} rows/s  "
              f"({dask_s:.1f} s; peak RSS client {client_mib:,.0f} MiB, workers {workers} MiB; "
              f"outputs identical: {same})")  # fmt: skip

        # 3. the model alone: the demo pipeline, trained as the bundle's was, on the frame in memory
        if not args.no_plain:
            X_train, y_train = card_transactions(20_000)
            model = fraud_pipeline().fit(X_train, y_train)
            X = pd.read_parquet(source).drop(columns=["tx_id"])
            started = time.perf_counter()
            model.predict_proba(X)
            plain_s = time.perf_counter() - started
            print(f"plain predict_proba       : {args.rows / plain_s:>10,.0f} rows/s  "
                  f"({plain_s:.1f} s)")  # fmt: skip
        print(pd.read_parquet(root / "local" / "rows.parquet").head(3).to_string())


if __name__ == "__main__":
    main()
