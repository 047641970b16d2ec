"""A circuit breaker per model: stop calling a failing runtime, answer the fallback, probe later.

Used from the event loop only (no locks). A call is ``allow()``-ed, then reported with
``record_success()`` or ``record_failure()``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from rtserve.settings import BreakerSettings


class BreakerState(StrEnum):
    """Where the breaker is in its cycle."""

    CLOSED = "closed"  # calls go to the runtime; failures are counted
    OPEN = "open"  # calls are refused (the fallback answers) until ``open_s`` has passed
    HALF_OPEN = "half_open"  # a limited number of probe calls test whether the runtime recovered


#: Probe calls let through while half-open; the first success closes the breaker again.
HALF_OPEN_PROBES = 1


class CircuitBreaker:
    """Opens after ``consecutive_failures`` failures in a row, or when the share of failures among
    the last ``window`` calls (once there are ``min_calls``) reaches ``error_rate``."""

    def __init__(
        self, config: BreakerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=config.window)  # True = failure
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0
        #: How many times the breaker opened (a counter for metrics).
        self.opened = 0

    def allow(self) -> bool:
        """Whether this call may go to the runtime now (False: answer the fallback)."""
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.config.open_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probes = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes >= HALF_OPEN_PROBES:
                return False
            self._probes += 1
        return True

    def release_probe(self) -> None:
        """Give back a half-open probe slot that ``allow()`` granted but no call used."""
        if self.state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def retry_after(self) -> float:
        """Seconds until the next probe may run (0 unless open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.config.open_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        """A call to the runtime succeeded; a successful probe closes the breaker."""
        if self.state is BreakerState.HALF_OPEN:
            self._close()
            return
        self._consecutive = 0
        self._outcomes.append(False)

    def record_failure(self) -> None:
        """A call failed (error or timeout); may open the breaker."""
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self.state is BreakerState.OPEN:
            return
        self._consecutive += 1
        self._outcomes.append(True)
        failures = sum(self._outcomes)
        rate_tripped = (
            len(self._outcomes) >= self.config.min_calls
            and failures / len(self._outcomes) >= self.config.error_rate
        )
        if self._consecutive >= self.config.consecutive_failures or rate_tripped:
            self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._clock()
        self.opened += 1

    def _close(self) -> None:
        self.state = BreakerState.CLOSED
        self._outcomes.clear()
        self._consecutive = 0
