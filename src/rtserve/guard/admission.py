"""Admission control: refuse at once (503 + Retry-After) the work a model cannot finish in time.

Each model has a bounded queue. A request is shed when the queue already holds ``max_queue``
requests, or when the wait it can expect (from the queue ahead of it and a moving average of batch
times) plus its own batch would not end before its deadline. Shedding early keeps the admitted
requests fast and costs the shed ones almost nothing. Every rejection is counted by reason.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from rtserve.errors import OverloadedError

#: Reasons a request is refused, as counted in ``AdmissionController.rejections``.
QUEUE_FULL = "queue_full"
EXPECTED_WAIT = "expected_wait"


@dataclass(slots=True)
class QueueState:
    """What the batcher holds for one model right now."""

    queued_requests: int
    queued_rows: int
    running_batches: int
    concurrency: int
    max_batch_size: int
    running_for: float = 0.0  # seconds the oldest running batch has been running


class AdmissionController:
    """Decides per request whether a model can take it; learns batch times as they complete."""

    def __init__(self, max_queue: int, smoothing: float = 0.2) -> None:
        self.max_queue = max_queue
        self.smoothing = smoothing
        #: Moving average of one batch's predict time, in seconds (None until the first batch).
        self.batch_seconds: float | None = None
        self.rejections: Counter[str] = Counter()
        self.admitted = 0

    def observe(self, batch_seconds: float) -> None:
        """Learn from one finished batch's predict time."""
        if self.batch_seconds is None:
            self.batch_seconds = batch_seconds
        else:
            self.batch_seconds += self.smoothing * (batch_seconds - self.batch_seconds)

    def expected_wait(self, state: QueueState, rows: int) -> float:
        """Seconds until a new request of ``rows`` rows would have its answer (queue + own batch)."""
        batch = self.batch_seconds or 0.0
        if state.running_batches < state.concurrency and state.queued_requests == 0:
            return batch
        waves = math.ceil((state.queued_rows + rows) / max(state.max_batch_size, 1))
        # The running batches are on average half done; the queued ones run `concurrency` at once.
        return batch * (0.5 + waves / max(state.concurrency, 1))

    def admit(self, state: QueueState, rows: int, remaining: float) -> None:
        """Let the request in, or raise ``OverloadedError`` (counted under its reason).

        ``remaining``: seconds left until the request's deadline.
        """
        busy = state.running_batches >= state.concurrency
        if busy and state.queued_requests >= self.max_queue:
            self._reject(
                QUEUE_FULL,
                f"the model's queue is full ({state.queued_requests} requests waiting, limit "
                f"{self.max_queue}); retry shortly or add capacity",
                self.expected_wait(state, rows),
            )
        expected = self.expected_wait(state, rows)
        if busy and expected > remaining:
            self._reject(
                EXPECTED_WAIT,
                f"the expected wait of {expected * 1000:.0f} ms exceeds the request's remaining "
                f"deadline of {max(remaining, 0) * 1000:.0f} ms; retry shortly or allow more time",
                expected,
            )
        self.admitted += 1

    def _reject(self, reason: str, message: str, wait: float) -> None:
        self.rejections[reason] += 1
        raise OverloadedError(message, reason=reason, retry_after=max(1.0, math.ceil(wait)))
