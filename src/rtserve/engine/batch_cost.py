"""The batcher's cost model: what a prediction costs, and so which batches may run on the event loop.

A batch expected to cost less than ``inline_below`` seconds runs right on the event loop: for a
fast model the hop to a worker thread and back costs more than the batch. The model learns from
every prediction the batcher runs (``learn``) and answers two questions: may a lone small request
run inline (``lone_inline``), may a batch of so many rows (``batch_inline``).
"""

from __future__ import annotations

import sys
from collections import deque

#: Only requests (and the batches whose typical cost is learned) this small may run inline.
INLINE_MAX_ROWS = 8
#: How many recent predictions the estimates remember.
RECENT = 16


def prediction_cost(wall: float, cpu: float) -> float:
    """What one prediction cost, for the inline decision: its CPU time, unless it took longer
    than a GIL switch interval, then its wall time.

    In a worker thread the wall time of a fast prediction includes waits for the GIL and the
    CPU; learning from it kept a 0.1 ms model's estimate above the inline threshold, and every
    request then paid for the thread hop (twice the p50 at c=1). Those waits last about a
    switch interval at most, so a longer wall time is the runtime's own: a model that blocks
    or hangs is never taken for a fast one.
    """
    return wall if wall > sys.getswitchinterval() else cpu


class CostModel:
    """The typical cost of a small batch and of a row, each the least of the recent ones.

    The least, not an average: one slow call (the first after loading, a moment of CPU
    contention) must not send a fast model to the thread pool for good. Unknown (infinite)
    until the first prediction, so a new model's first request always runs in the pool.
    """

    def __init__(self, inline_below: float, concurrency: int = 1) -> None:
        self.inline_below = inline_below
        self.concurrency = concurrency
        self.typical_seconds = float("inf")  # least of the recent small batches' costs
        self.per_row = float("inf")  # least of the recent batches' cost per row
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._recent_per_row: deque[float] = deque(maxlen=RECENT)

    def learn(self, seconds: float, rows: int) -> None:
        """A batch of ``rows`` rows cost ``seconds`` (``prediction_cost``)."""
        if rows <= INLINE_MAX_ROWS:
            self._recent.append(seconds)
            self.typical_seconds = min(self._recent)
        if rows > 0:
            self._recent_per_row.append(seconds / rows)
            self.per_row = min(self._recent_per_row)

    def lone_inline(self, rows: int) -> bool:
        """Whether a lone request of ``rows`` rows on an idle runtime may run on the event loop."""
        return rows <= INLINE_MAX_ROWS and self.typical_seconds < self.inline_below

    def batch_inline(self, rows: int) -> bool:
        """Whether a batch of ``rows`` is expected to cost less than ``inline_below``, so that it
        runs on the event loop rather than in the runtime's thread.

        On a busy core the hop to the thread and back costs more than a fast model's batch: the
        thread must wait for the event loop to hand over the GIL (up to a switch interval, 5 ms,
        at both ends), and every request of the batch waits with it. With several runtime threads
        batches always go to the pool, so that they can run at once.
        """
        if self.concurrency > 1:
            return False
        return self.typical_seconds + self.per_row * rows < self.inline_below
