"""BentoML serving the benchmark's models, in its default or its documented tuned configuration.

Default: ``@bentoml.service`` with one worker and plain ``@bentoml.api`` methods. Tuned
(BENCH_VARIANT=tuned): adaptive batching (``@bentoml.api(batchable=True, max_batch_size=...,
max_latency_ms=...)``) and one worker per server CPU (``@bentoml.service(workers=N)``).
The request body is ``{"rows": [row, ...]}`` in both.
Run: BENCH_MODELS_DIR=... bentoml serve bentoml_service:Bench --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

from typing import Any

import bentoml
from common import NAMES, VARIANT, WORKERS, answers, frame, load

TUNED = VARIANT == "tuned"
BATCHING: dict[str, Any] = (
    {"batchable": True, "max_batch_size": 32, "max_latency_ms": 1000} if TUNED else {}
)


@bentoml.service(workers=WORKERS if TUNED else 1)
class Bench:
    """One API per model under /predict/NAME."""

    def __init__(self) -> None:
        self.models = {name: load(name) for name in NAMES}

    def _predict(self, name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return answers(self.models[name], frame(name, rows))

    @bentoml.api(route="/predict/card", **BATCHING)
    def card(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._predict("card", rows)

    @bentoml.api(route="/predict/dense_lr", **BATCHING)
    def dense_lr(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._predict("dense_lr", rows)

    @bentoml.api(route="/predict/dense_gb", **BATCHING)
    def dense_gb(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._predict("dense_gb", rows)


assert sorted(NAMES) == ["card", "dense_gb", "dense_lr"]  # one api method per model above
