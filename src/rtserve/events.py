"""The prediction event the hot path emits after each answered request, and who listens to it.

The engine builds ``PredictionEvent``s; observability's observers (metrics, drift, decision log)
read the same dataclasses, which is why this module sits below both in the layer order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


@dataclass(slots=True)
class BatchInfo:
    """How a request travelled through the batcher."""

    queue_seconds: float  # from submit until its batch started
    predict_seconds: float  # the runtime's predict call for the whole batch
    batch_rows: int  # rows in the batch this request rode in
    batch_requests: int  # requests in that batch


@dataclass(slots=True)
class PredictionEvent:
    """One answered prediction request (all rows of it), for metrics, drift and decision logs."""

    request_id: str
    time: float  # wall-clock (epoch seconds) when the request was accepted
    model: str
    version: str
    digest: str
    protocol: str  # "v2" or "records"
    columns: Columns  # validated inputs; observers must not mutate them
    output: ModelOutput
    rows: int
    latency_seconds: float  # validation + queue + predict, as the data plane saw it
    batch: BatchInfo
    fallback: bool = False
    variant: str = ""
    traceparent: str | None = None


class Observer(Protocol):
    """Something that learns from predictions off the hot path (metrics, drift, decision log).

    ``observe`` is called on the event loop right after a request's outputs are known. It must
    return at once: hand the event to a bounded queue and drop (and count) when the queue is full.
    """

    def observe(self, event: PredictionEvent) -> None:
        """Record one event without blocking."""
