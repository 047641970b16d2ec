"""The shape of a prediction event as observers read it (``rtserve.engine.events``).

Observability sits below the engine in the layer order, so it cannot import the engine's
``PredictionEvent``; these read-only protocols name the attributes observers use, and the engine's
frozen dataclasses satisfy them structurally.
"""

from __future__ import annotations

from typing import Protocol

from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns


class BatchFacts(Protocol):
    """How a request travelled through the batcher."""

    @property
    def queue_seconds(self) -> float:
        """From submit until its batch started."""

    @property
    def predict_seconds(self) -> float:
        """The runtime's predict call for the whole batch."""

    @property
    def batch_rows(self) -> int:
        """Rows in the batch this request rode in."""


class ObservedPrediction(Protocol):
    """One answered prediction request (all of its rows)."""

    @property
    def request_id(self) -> str:
        """The request id (``X-Request-ID`` or generated)."""

    @property
    def time(self) -> float:
        """Wall-clock epoch seconds when the request was accepted."""

    @property
    def model(self) -> str:
        """Served model name."""

    @property
    def version(self) -> str:
        """Served model version."""

    @property
    def digest(self) -> str:
        """Bundle digest."""

    @property
    def protocol(self) -> str:
        """``v2`` or ``records``."""

    @property
    def columns(self) -> Columns:
        """Validated inputs (read-only)."""

    @property
    def output(self) -> ModelOutput:
        """The model's outputs for these rows."""

    @property
    def rows(self) -> int:
        """Rows in the request."""

    @property
    def latency_seconds(self) -> float:
        """Validation + queue + predict."""

    @property
    def batch(self) -> BatchFacts:
        """Batcher timings."""

    @property
    def fallback(self) -> bool:
        """Whether a fallback answered instead of the model."""

    @property
    def variant(self) -> str:
        """Deployment variant that answered (empty without a router)."""

    @property
    def traceparent(self) -> str | None:
        """The incoming W3C ``traceparent``, if any."""
