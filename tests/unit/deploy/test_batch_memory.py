"""`rtserve batch` memory is bounded by the batch, not by the file: peak memory measured in a
fresh process stays flat when four times the batches or rows go through it.

Peak memory is the kernel's high-water mark of the child's own address space (``VmHWM`` in
``/proc/self/status``). ``getrusage``'s ``ru_maxrss`` would not do: a child started with vfork, as
``subprocess`` does, inherits the parent's (pytest's) high-water mark, which hides its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").is_file(), reason="reads the peak RSS from Linux's /proc"
)

_PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("VmHWM")
"""

# Writes the same real predictions ``batches`` times; the peak after a quarter of them (by then
# several output row groups were written) against the peak at the end, the file closed.
_WRITE_BATCHES = (
    _PEAK
    + """
import json, sys
from pathlib import Path
from rtserve.deploy.batch import table_writer
from rtserve.engine.loader import load

bundle, target, batches = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
predictor = load(bundle)
sample = predictor.bundle.read_validation()
predictions = predictor.predict(predictor.validator.columns(sample.inputs))
rows = len(predictions)
with table_writer(target, id_column="tx_id") as writer:
    for i in range(batches):
        if i == batches // 4:
            quarter = peak_mib()
        writer.write(predictions, list(range(i * rows, (i + 1) * rows)))
print(json.dumps({"rows": rows * batches, "quarter": quarter, "end": peak_mib()}))
"""
)

# Scores a file, then a file four times as long, in one process.
_SCORE_FILES = (
    _PEAK
    + """
import json, sys
from pathlib import Path
from rtserve.deploy.batch import run_batch

bundle, small, large, out = map(Path, sys.argv[1:5])
run_batch(bundle, str(small), out / "small", id_column="tx_id")
first = peak_mib()
summary = run_batch(bundle, str(large), out / "large", id_column="tx_id")
print(json.dumps({"rows": summary.rows, "first": first, "end": peak_mib()}))
"""
)


def run_child(script: str, *args: object) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_writing_four_times_the_parquet_batches_does_not_raise_peak_memory(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    # 6,000 batches: one row group per batch (the old writer) kept ~4 KiB of footer per batch in
    # memory until the file was closed, which raised the peak by about 39 MiB here.
    peak = run_child(_WRITE_BATCHES, fraud_bundle_dir, tmp_path / "out.parquet", 6_000)

    growth = peak["end"] - peak["quarter"]
    assert growth < 12, f"peak RSS grew {growth:.1f} MiB over {peak['rows']:,} rows"
    assert pd.read_parquet(tmp_path / "out.parquet").shape[0] == peak["rows"]


def test_scoring_a_file_four_times_as_long_does_not_raise_peak_memory(
    fraud_bundle_dir: Path, holdout_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    # Whatever a run kept per batch would show: keeping every input batch raised the peak by
    # about 85 MiB here, keeping every batch's predictions and ids by about 60 MiB.
    small, large = 250_000, 1_000_000
    repeats = -(-large // len(holdout_transactions))
    frame = pd.concat([holdout_transactions] * repeats, ignore_index=True).iloc[:large]
    frame.insert(0, "tx_id", range(large))
    frame.iloc[:small].to_parquet(tmp_path / "small.parquet", row_group_size=65_536)
    frame.to_parquet(tmp_path / "large.parquet", row_group_size=65_536)
    del frame

    peak = run_child(
        _SCORE_FILES,
        fraud_bundle_dir,
        tmp_path / "small.parquet",
        tmp_path / "large.parquet",
        tmp_path / "out",
    )

    assert peak["rows"] == large
    growth = peak["end"] - peak["first"]
    assert growth < 32, f"peak RSS grew {growth:.1f} MiB from {small:,} to {large:,} rows"
