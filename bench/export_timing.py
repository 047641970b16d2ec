"""Predict time of the card-fraud demo pipeline: native scikit-learn vs its ONNX export.

Not a test: `uv run python bench/export_timing.py [--rows 20000] [--repeat 2000]`. Both runtimes
are loaded from the same bundle (the export passed its parity gate) and timed on validated
columns, i.e. the runtime's own cost without HTTP or validation, for 1 row and for 256 rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import rtserve
from rtserve.bundle.sample import take
from rtserve.demo import build_demo_bundle, card_transactions
from rtserve.runtimes.base import Runtime
from rtserve.types import Columns

BATCHES = (1, 256)


def _time(runtime: Runtime, columns: Columns, repeat: int) -> tuple[float, float]:
    """(median, p99) seconds of ``runtime.predict(columns)`` after a warm-up."""
    for _ in range(min(50, repeat)):
        runtime.predict(columns)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        runtime.predict(columns)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows")
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls per case")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = build_demo_bundle(Path(tmp) / "card-fraud", rows=args.rows)
        onnx = rtserve.load(path)
        native = rtserve.load(path, force_native=True)
        parity = onnx.bundle.manifest.optimized.parity  # type: ignore[union-attr]
        print(f"export parity: {parity}")
        frame, _ = card_transactions(2000, seed=123)
        columns = onnx.validate(frame)
        print(f"{'rows':>5} {'native p50':>11} {'onnx p50':>9} {'speed-up':>8}"
              f" {'native p99':>11} {'onnx p99':>9}")  # fmt: skip
        for rows in BATCHES:
            batch = take(columns, list(range(rows)))  # type: ignore[arg-type]
            repeat = args.repeat if rows == 1 else max(200, args.repeat // 10)
            native_p50, native_p99 = _time(native.runtime, batch, repeat)
            onnx_p50, onnx_p99 = _time(onnx.runtime, batch, repeat)
            print(
                f"{rows:>5} {native_p50 * 1e6:>9.0f}us {onnx_p50 * 1e6:>7.0f}us "
                f"{native_p50 / onnx_p50:>7.1f}x {native_p99 * 1e6:>9.0f}us {onnx_p99 * 1e6:>7.0f}us"
            )


if __name__ == "__main__":
    main()
