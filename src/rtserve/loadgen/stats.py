"""What a load test measured: an HDR histogram of latencies, counts, and errors by kind.

Latencies are recorded in microseconds in an HDR histogram (1 µs to 10 min, 3 significant
digits), so percentiles are exact to 0.1 % at any load and histograms from several client
processes add up losslessly. Only successful (2xx) answers are in the histogram; every other
outcome is counted under its HTTP status (``"503"``) or transport failure (``"timeout"``,
``"connect"``, ``"closed"``, ``"protocol"``, ``"not_sent"``) and reported beside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

#: Histogram range and precision.
LOWEST_US = 1
HIGHEST_US = 600_000_000
SIGNIFICANT_DIGITS = 3
#: Percentiles every report gives.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """An empty latency histogram with the standard range."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class Recorder:
    """Accumulates one client process's outcomes while a phase runs."""

    def __init__(self) -> None:
        self.histogram = new_histogram()
        self.errors: Counter[str] = Counter()
        self.ok = 0
        self.sent = 0
        #: Requests that left later than scheduled by more than ``LATE_S`` (open loop only).
        self.late = 0

    def success(self, seconds: float) -> None:
        """A 2xx answer after ``seconds`` (from the scheduled send time in an open loop)."""
        self.ok += 1
        self.histogram.record_value(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))

    def failure(self, kind: str) -> None:
        """An answer with a non-2xx status (``kind`` is the status) or a transport failure."""
        self.errors[kind] += 1

    @property
    def completed(self) -> int:
        """Outcomes recorded so far (successes and failures)."""
        return self.ok + sum(self.errors.values())

    def snapshot(self) -> dict[str, Any]:
        """Picklable state, to send from a client process to the parent."""
        return {
            "histogram": self.histogram.encode(),
            "errors": dict(self.errors),
            "ok": self.ok,
            "sent": self.sent,
            "late": self.late,
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> Recorder:
        """The recorder a ``snapshot`` was taken of."""
        recorder = cls()
        recorder.histogram = HdrHistogram.decode(state["histogram"])
        recorder.errors.update(state["errors"])
        recorder.ok, recorder.sent, recorder.late = state["ok"], state["sent"], state["late"]
        return recorder


@dataclass(frozen=True)
class Latency:
    """Latency summary in milliseconds."""

    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float
    min: float
    stdev: float

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Latency:
        """Summarise a histogram (all zeros when it is empty)."""
        if histogram.get_total_count() == 0:
            return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        values = histogram.get_percentile_to_value_dict(list(PERCENTILES))
        ms = 1e-3
        return cls(
            p50=values[50.0] * ms,
            p90=values[90.0] * ms,
            p99=values[99.0] * ms,
            p999=values[99.9] * ms,
            max=histogram.get_max_value() * ms,
            mean=histogram.get_mean_value() * ms,
            min=histogram.get_min_value() * ms,
            stdev=histogram.get_stddev() * ms,
        )


@dataclass(frozen=True)
class LoadResult:
    """One measured phase: what was sent, what came back, how fast, and what failed."""

    mode: str  # "closed" (fixed concurrency) or "open" (fixed rate)
    concurrency: int  # workers (closed) or the connection cap (open)
    rate: float | None  # requests/s scheduled (open loop)
    processes: int
    elapsed_s: float
    sent: int  # requests handed to a connection (open loop: every scheduled one)
    ok: int
    errors: dict[str, int]
    late: int  # open loop: requests that left > 1 ms after their scheduled time
    latency_ms: Latency
    histogram: str = field(repr=False)  # the HDR histogram, compressed and base64 (hdrh)

    @property
    def throughput(self) -> float:
        """Successful answers per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        """Every outcome that was not a 2xx answer."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document (what ``rtserve bench --json`` prints per phase)."""
        data = asdict(self)
        data["throughput"] = round(self.throughput, 2)
        data["error_count"] = self.error_count
        data["latency_ms"] = {k: round(v, 4) for k, v in data["latency_ms"].items()}
        data["latency_ms"]["p99.9"] = data["latency_ms"].pop("p999")
        return data


def merge(
    parts: list[tuple[Recorder, float]], *, mode: str, concurrency: int, rate: float | None
) -> LoadResult:
    """One result from the recorders of every client process and their elapsed times."""
    histogram = new_histogram()
    errors: Counter[str] = Counter()
    ok = sent = late = 0
    for recorder, _ in parts:
        histogram.add(recorder.histogram)
        errors.update(recorder.errors)
        ok += recorder.ok
        sent += recorder.sent
        late += recorder.late
    elapsed = max((seconds for _, seconds in parts), default=0.0)
    return LoadResult(
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        processes=len(parts),
        elapsed_s=elapsed,
        sent=sent,
        ok=ok,
        errors=dict(sorted(errors.items())),
        late=late,
        latency_ms=Latency.of(histogram),
        histogram=histogram.encode().decode("ascii"),
    )
