"""The metrics observer: model-level metrics (model latency, queue wait, batch size) from events."""

from __future__ import annotations

from prometheus_client import Histogram

from rtserve.events import PredictionEvent
from rtserve.observability.metrics import Metrics, observe_many
from rtserve.observability.queueing import SUMMARY_INTERVAL_S, BackgroundQueue

#: model, version, rows, requests, queue seconds, predict seconds, batch rows, fallback
_Sample = tuple[str, str, int, int, float, float, int, bool]


class MetricsObserver:
    """Records each prediction event's timings off the hot path (an ``Observer``)."""

    name = "metrics"

    def __init__(self, metrics: Metrics, *, maxsize: int = 10_000) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, str], tuple[Histogram, Histogram, Histogram]] = {}
        self.queue: BackgroundQueue[_Sample] = BackgroundQueue(
            self.name, self._record, metrics=metrics, maxsize=maxsize, interval=SUMMARY_INTERVAL_S
        )

    def observe(self, event: PredictionEvent) -> None:
        """Queue the event's numbers (drops and counts when the queue is full)."""
        b = event.batch
        self.queue.put(
            (
                event.model,
                event.version,
                event.rows,
                len(event.parts) or 1,  # the requests answered together share these figures
                b.queue_seconds,
                b.predict_seconds,
                b.batch_rows,
                event.fallback,
            )
        )

    def start(self) -> None:
        """Start the background thread."""
        self.queue.start()

    def close(self) -> None:
        """Record what is queued and stop."""
        self.queue.close()

    def _record(self, samples: list[_Sample]) -> None:
        m = self.metrics
        rows: dict[tuple[str, str], int] = {}
        fallbacks: dict[tuple[str, str], int] = {}
        #: per model version: predict seconds, queue seconds and batch rows, once per request
        observed: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {}
        for model, version, n_rows, requests, queue_s, predict_s, batch_rows, fallback in samples:
            key = (model, version)
            values = observed.get(key)
            if values is None:
                values = observed[key] = ([], [], [])
            values[0].extend([predict_s] * requests)  # as for lone requests: one per request
            values[1].extend([queue_s] * requests)
            values[2].extend([batch_rows] * requests)
            rows[key] = rows.get(key, 0) + n_rows
            if fallback:
                fallbacks[key] = fallbacks.get(key, 0) + requests
        for key, values in observed.items():
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    m.model_seconds.labels(*key),
                    m.queue_seconds.labels(*key),
                    m.batch_rows.labels(*key),
                )
            for child, numbers in zip(children, values, strict=True):
                observe_many(child, numbers)
        for key, count in rows.items():
            m.predictions.labels(*key).inc(count)
        for key, count in fallbacks.items():
            m.fallbacks.labels(*key).inc(count)
