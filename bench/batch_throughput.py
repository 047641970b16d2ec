"""Batch scoring throughput: `rtserve batch` in one process vs on Dask (2 workers) vs plain
`predict_proba` on a pandas frame, on the demo fraud pipeline; and the one-process run's peak RSS.

    uv run python bench/batch_throughput.py --rows 1000000

Everything runs on this machine on 127.0.0.1 (a LocalCluster of 2 worker processes, 1 thread
each). The input is one parquet file of ``--rows`` rows in row groups of 65,536 rows, with an id
column. `predict_proba` is timed on the frame already in memory (no reading, no validation, no
writing): the ceiling for the model itself.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from distributed import LocalCluster

    from rtserve.demo import build_demo_bundle, card_transactions, fraud_pipeline
    from rtserve.deploy.batch import run_batch

    with tempfile.TemporaryDirectory(prefix="rtserve-batch-bench-") as tmp:
        root = Path(tmp)
        bundle = build_demo_bundle(root / "bundle")
        frame, _ = card_transactions(args.rows, seed=11)
        frame.insert(0, "tx_id", range(len(frame)))
        source = root / "in" / "rows.parquet"
        source.parent.mkdir()
        frame.to_parquet(source, row_group_size=65_536)
        print(f"{args.rows:,} rows, {source.stat().st_size / 2**20:.0f} MiB parquet")

        # 1. rtserve batch, one process (a child, so that its peak RSS is its own)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rtserve", "batch", str(bundle), "-i", str(source),
             "-o", str(root / "local"), "--id-column", "tx_id", "--no-progress"],
            check=True,
        )  # fmt: skip
        local_s = time.perf_counter() - started
        rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        # 2. rtserve batch on Dask
        with LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            host="127.0.0.1",
            processes=True,
            dashboard_address=None,
        ) as cluster:
            started = time.perf_counter()
            run_batch(
                bundle,
                str(source),
                root / "dask",
                id_column="tx_id",
                engine="dask",
                scheduler=cluster.scheduler_address,
            )
            dask_s = time.perf_counter() - started

        # 3. the model alone: the demo pipeline, trained as the bundle's was, on the frame in memory
        X_train, y_train = card_transactions(20_000)
        model = fraud_pipeline().fit(X_train, y_train)
        X = frame.drop(columns=["tx_id"])
        started = time.perf_counter()
        model.predict_proba(X)
        plain_s = time.perf_counter() - started

        same = (root / "local" / "rows.parquet").read_bytes() == (
            root / "dask" / "rows.parquet"
        ).read_bytes()
        print(f"rtserve batch, one process : {args.rows / local_s:>10,.0f} rows/s  "
              f"({local_s:.1f} s, peak RSS {rss_mib:,.0f} MiB)")  # fmt: skip
        print(f"rtserve batch, Dask x{args.workers}     : {args.rows / dask_s:>10,.0f} rows/s  "
              f"({dask_s:.1f} s; outputs identical: {same})")  # fmt: skip
        print(
            f"plain predict_proba       : {args.rows / plain_s:>10,.0f} rows/s  ({plain_s:.1f} s)"
        )
        print(pd.read_parquet(root / "local" / "rows.parquet").head(3).to_string())


if __name__ == "__main__":
    main()
