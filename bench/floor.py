"""The in-process floor of one model, measured in a fresh process pinned to the server CPUs.

A fresh process, pinned before numpy or scikit-learn start their thread pools, sizes those pools
for the CPUs it may use, exactly as the servers do; measuring in the runner process (whose pools
were sized for the whole machine before it pinned itself) would time thread contention instead.
Prints one JSON object: the fitted pipeline's own ``predict_proba`` on a one-row DataFrame, and
for reference rtserve's in-process ``Predictor.predict`` on one record.
Usage: python bench/floor.py CPUS WORK_DIR MODEL [SECONDS]
"""

from __future__ import annotations

import os
import sys

os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})

import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models as bench_models  # noqa: E402

import rtserve  # noqa: E402


def _time(call: Callable[[Any], object], items: list[Any], seconds: float) -> dict[str, float]:
    times: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or len(times) < 50:
        item = items[i % len(items)]
        t = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - t)
        i += 1
    ms = np.asarray(times[len(times) // 10 :]) * 1e3  # the first tenth is warm-up
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "runs": len(ms),
    }


def main() -> None:
    work, name = Path(sys.argv[2]), sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    model = bench_models.prepare(work, (name,))[name]
    frames = [model.frame([row]) for row in model.rows]
    out = _time(model.model.predict_proba, frames, seconds)
    predictor = rtserve.load(model.bundle_path)
    out["rtserve_predict"] = _time(lambda row: predictor.predict([row]), model.rows, seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
