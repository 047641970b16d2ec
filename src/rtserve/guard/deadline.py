"""Request deadlines: when a request stops being worth answering, and the header that sets it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rtserve.errors import DeadlineExceededError, MalformedRequestError
from rtserve.settings import Settings

#: A client states its time budget in milliseconds, counted from when the server reads the request.
TIMEOUT_HEADER = "x-request-timeout-ms"
Clock = Callable[[], float]


@dataclass(slots=True)
class Deadline:
    """A point on the monotonic clock after which the request's answer is worthless."""

    expires_at: float
    budget: float  # the seconds the request was given, for messages
    clock: Clock = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(clock() + seconds, seconds, clock)

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.expires_at - self.clock()

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.remaining() <= 0

    def check(self, stage: str) -> None:
        """Raise ``DeadlineExceededError`` if the deadline has passed before ``stage``."""
        if self.expired:
            raise DeadlineExceededError(
                f"the request's deadline of {self.budget * 1000:.0f} ms passed before {stage}; "
                f"the model did not run for it (send a larger {TIMEOUT_HEADER} or retry)",
                field=TIMEOUT_HEADER,
            )


@dataclass(frozen=True)
class DeadlinePolicy:
    """The default budget, and the most a client may ask for."""

    default_ms: float = 30_000.0
    max_ms: float = 300_000.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadlinePolicy:
        """The policy ``settings.shedding`` configures."""
        shedding = settings.shedding
        return cls(shedding.default_timeout_s * 1000.0, shedding.max_timeout_s * 1000.0)

    def default(self, clock: Clock = time.monotonic) -> Deadline:
        """The deadline of a request that states none."""
        return Deadline.after(self.default_ms / 1000.0, clock)

    def from_header(self, raw: str | None, clock: Clock = time.monotonic) -> Deadline:
        """The deadline a request gets: its header's budget (capped), else the default.

        Raises:
            MalformedRequestError: the header is not a positive number of milliseconds.
        """
        if raw is None:
            return Deadline.after(self.default_ms / 1000.0, clock)
        try:
            budget_ms = float(raw)
        except ValueError:
            budget_ms = math.nan
        if not math.isfinite(budget_ms) or budget_ms <= 0:
            raise MalformedRequestError(
                f"{TIMEOUT_HEADER}: {raw!r} is not a positive number of milliseconds; send e.g. "
                f"'{TIMEOUT_HEADER}: 250'",
                field=TIMEOUT_HEADER,
            )
        return Deadline.after(min(budget_ms, self.max_ms) / 1000.0, clock)
