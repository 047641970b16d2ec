"""Rollouts applied to live traffic: the split in the request path, per-variant windows, shadows.

``Rollouts`` is what the data plane asks "which version answers this request" (``choose``) and
tells what happened (``record``, ``shadow``). It holds one ``LiveRollout`` per model name that
has a traffic policy; a name without one costs a dict lookup. The promotion gate that moves a
rollout's weight runs elsewhere (``rtserve.engine.rollout_control``) and swaps in a new
``LiveRollout`` state in one assignment.

Shadows never touch the primary's path: after the primary has answered, the validated columns
go into each shadow's bounded queue (full: the copy is dropped and counted), and the shadow's own
thread predicts them in batches and compares.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from rtserve.engine.manager import ModelManager, ServedModel
from rtserve.events import BatchInfo, Observer, PredictionEvent
from rtserve.observability.threads import name_os_thread
from rtserve.rollout.gate import Agreement, ArmFigures, GateResult
from rtserve.rollout.spec import RolloutSpec, RolloutState
from rtserve.rollout.split import PINNED, PRODUCTION, SHADOW, Route, TrafficSplit
from rtserve.rollout.statistics import FloatArray, quantiles
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns

logger = logging.getLogger("rtserve.rollout")

#: Requests (and row-score arrays) kept per variant window: bounds memory under any load.
WINDOW_CAP = 50_000
#: Segment values tracked per shadow; the rest count as "other".
MAX_SEGMENTS = 50
OTHER_SEGMENT = "other"
#: Shadow copies predicted together at most (taken from the queue in one go, one predict call).
SHADOW_BATCH = 64
#: The header that says which variant answered.
VARIANT_HEADER = "RTSERVE-Variant"


def scores_of(output: ModelOutput) -> FloatArray | None:
    """One number per row to compare distributions: the positive class's probability for a
    binary classifier, the top probability for a multi-class one, the value for a regressor."""
    if output.probabilities is not None:
        probabilities = np.asarray(output.probabilities, dtype=np.float64)
        if probabilities.ndim == 2 and probabilities.shape[1] == 2:
            return probabilities[:, 1]
        return probabilities.max(axis=1) if probabilities.ndim == 2 else probabilities
    if output.value is not None:
        return np.asarray(output.value, dtype=np.float64).reshape(len(output), -1)[:, 0]
    return None


class ArmWindow:
    """One variant's recent requests: time, latency, failed or not, and its rows' scores."""

    def __init__(self, cap: int = WINDOW_CAP) -> None:
        self._requests: deque[tuple[float, float, bool]] = deque(maxlen=cap)
        self._scores: deque[tuple[float, FloatArray]] = deque(maxlen=cap)
        self._lock = threading.Lock()
        self.total = 0
        self.total_errors = 0

    def record(self, latency: float, error: bool, scores: FloatArray | None) -> None:
        """One request answered (or failed) on this variant."""
        now = time.monotonic()
        with self._lock:
            self._requests.append((now, latency, error))
            if scores is not None and scores.size:
                self._scores.append((now, scores))
            self.total += 1
            self.total_errors += error

    def figures(self, window_s: float) -> ArmFigures:
        """The requests of the last ``window_s`` seconds."""
        since = time.monotonic() - window_s
        with self._lock:
            requests = [r for r in self._requests if r[0] >= since]
            scores = [s for t, s in self._scores if t >= since]
        ok = np.array([latency for _, latency, error in requests if not error], dtype=np.float64)
        return ArmFigures(
            requests=len(requests),
            errors=sum(1 for r in requests if r[2]),
            latencies=ok,
            scores=np.concatenate(scores) if scores else np.zeros(0),
        )

    def reset(self) -> None:
        """Forget the window (a new step is judged on its own traffic)."""
        with self._lock:
            self._requests.clear()
            self._scores.clear()


@dataclass
class ShadowStats:
    """How one shadow version compares with the primary on the same requests."""

    version: str
    compared: int = 0  # requests predicted by the shadow and compared
    errors: int = 0  # shadow predictions that raised
    dropped: int = 0  # copies dropped because the queue was full
    #: (time, rows, rows whose label differs, max |delta probability| or |delta value|, latency)
    window: deque[tuple[float, int, int, float, float]] = field(
        default_factory=lambda: deque(maxlen=WINDOW_CAP)
    )
    #: Per-row |delta| of the last rows (for p50/p99/max).
    deltas: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW_CAP))
    #: segment -> [rows, rows disagreeing, sum of |delta|]
    segments: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Copies waiting for this shadow (its own queue and thread: a slow shadow starves no other).
    queue: queue.Queue[ShadowCopy] = field(default_factory=queue.Queue)

    def agreement(self, window_s: float) -> Agreement:
        """Requests compared and requests with any disagreeing row, over the window."""
        since = time.monotonic() - window_s
        with self.lock:
            recent = [w for w in self.window if w[0] >= since]
        return Agreement(compared=len(recent), disagreed=sum(1 for w in recent if w[2] > 0))

    def summary(self, window_s: float) -> dict[str, Any]:
        """JSON-ready comparison figures (the rollout endpoint's ``shadows`` entries)."""
        since = time.monotonic() - window_s
        with self.lock:
            recent = [w for w in self.window if w[0] >= since]
            deltas = np.fromiter(self.deltas, dtype=np.float64)
            segments = {k: list(v) for k, v in self.segments.items()}
        rows = sum(w[1] for w in recent)
        disagreeing = sum(w[2] for w in recent)
        latencies = np.array([w[4] for w in recent], dtype=np.float64)
        p50, p99 = quantiles(deltas)
        l50, l99 = quantiles(latencies)
        return {
            "version": self.version,
            "compared": self.compared,
            "errors": self.errors,
            "dropped": self.dropped,
            "window": {
                "requests": len(recent),
                "rows": rows,
                "label_agreement": 1 - disagreeing / rows if rows else None,
                "abs_delta_p50": p50,
                "abs_delta_p99": p99,
                "abs_delta_max": float(deltas.max()) if deltas.size else 0.0,
                "latency_p50_ms": round(l50 * 1000, 3),
                "latency_p99_ms": round(l99 * 1000, 3),
            },
            "segments": {
                name: {
                    "rows": int(s[0]),
                    "label_agreement": 1 - s[1] / s[0] if s[0] else None,
                    "abs_delta_mean": s[2] / s[0] if s[0] else 0.0,
                }
                for name, s in sorted(segments.items(), key=lambda kv: -kv[1][0])
            },
        }


@dataclass(frozen=True)
class ShadowCopy:
    """What a shadow needs from one answered request."""

    request_id: str
    time: float
    protocol: str
    columns: Columns
    output: ModelOutput
    traceparent: str | None


class LiveRollout:
    """One name's spec and state as applied now, its per-variant windows and its shadows."""

    def __init__(self, spec: RolloutSpec, state: RolloutState) -> None:
        self.spec = spec
        self.state = state
        self.split = TrafficSplit(spec, state)
        self.arms: dict[str, ArmWindow] = {}
        self.shadows = {
            v: ShadowStats(v, queue=queue.Queue(maxsize=spec.shadow_queue)) for v in spec.shadows
        }
        self.last_gate: GateResult | None = None
        #: Decisions taken by this server (newest last), for the rollout endpoint.
        self.decisions: deque[dict[str, Any]] = deque(maxlen=50)

    def update(self, spec: RolloutSpec, state: RolloutState) -> None:
        """Apply a new state (and spec) in one step; windows restart when the weight moved."""
        moved = state.weight != self.state.weight or state.status != self.state.status
        self.spec, self.state = spec, state
        self.split = TrafficSplit(spec, state)
        if moved:
            for arm in self.arms.values():
                arm.reset()

    def arm(self, variant: str) -> ArmWindow:
        """The window of one variant (created on first use; variants are a bounded set)."""
        window = self.arms.get(variant)
        if window is None:
            window = self.arms[variant] = ArmWindow()
        return window

    def figures(self, variant: str) -> ArmFigures:
        """The variant's window under the gate's ``window_s``."""
        return self.arm(variant).figures(self.spec.gate.window_s)

    def status(self) -> dict[str, Any]:
        """JSON-ready view for ``GET /v1/models/{name}/rollout``."""
        window = self.spec.gate.window_s
        return {
            "model": self.spec.model,
            "spec": self.spec.model_dump(mode="json"),
            "state": self.state.model_dump(mode="json"),
            "variants": {
                variant: {
                    "total": arm.total,
                    "total_errors": arm.total_errors,
                    "window": arm.figures(window).summary(),
                }
                for variant, arm in sorted(self.arms.items())
            },
            "shadows": [s.summary(window) for s in self.shadows.values()],
            "gate": None if self.last_gate is None else self.last_gate.to_dict(),
            "decisions": list(self.decisions),
        }


class Rollouts:
    """The rollouts of every name this server serves, and their shadow threads.

    ``choose`` and ``record`` run on the event loop per request; ``apply`` is called by the
    controller when a spec or state changes; one thread per shadow version drains its queue.
    """

    def __init__(self, manager: ModelManager, observers: list[Observer] | None = None) -> None:
        self.manager = manager
        self.live: dict[str, LiveRollout] = {}
        #: Told of each shadow prediction (the decision log writes it beside the primary's).
        self.observers = observers if observers is not None else []
        self.on_shadow: list[Callable[[str, str, str], None]] = []  # (model, version, outcome)
        #: Per name: why its configured rollout is not applied (set by the controller).
        self.problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._started = False
        self._threads: list[threading.Thread] = []

    # --- control ---------------------------------------------------------------------------

    def apply(self, spec: RolloutSpec, state: RolloutState) -> LiveRollout:
        """Start applying a spec/state for its name, or update the one applied."""
        live = self.live.get(spec.model)
        if live is None or live.spec.shadows != spec.shadows:
            fresh = LiveRollout(spec, state)
            if live is not None:  # keep the windows and history across a spec change
                fresh.arms, fresh.decisions = live.arms, live.decisions
            self.live[spec.model] = fresh
            if self._started:
                self._start_shadows(fresh)
            return fresh
        live.update(spec, state)
        return live

    def remove(self, name: str) -> None:
        """Stop applying a rollout to ``name`` (its default version answers everything)."""
        self.live.pop(name, None)

    def start(self) -> None:
        """Run shadows from now on (those applied already, and every one applied later)."""
        self._started = True
        for live in list(self.live.values()):
            self._start_shadows(live)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the shadow threads (copies still queued are dropped)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start_shadows(self, live: LiveRollout) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        for version in live.shadows:
            thread = threading.Thread(target=self._shadow_loop, args=(live, version),
                                      name=f"rtserve-shadow-{version}", daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    # --- request path ----------------------------------------------------------------------

    def choose(
        self,
        name: str,
        request_id: str,
        headers: Mapping[str, str] | None,
        document: bytes,
    ) -> Route | None:
        """The version and variant for an unpinned request of ``name`` (None: no rollout);
        ``document`` is the request's JSON, read only for a split keyed by a field."""
        live = self.live.get(name)
        if live is None:
            return None
        split = live.split
        key: str | None = request_id
        header = split.header_key
        if header is not None:
            key = headers.get(header) if headers is not None else None
        elif split.field_key is not None:
            key = first_record_value(document, split.field_key)
        if key is None:  # no key: production, and the request is not counted in any arm
            return Route(live.spec.production, PRODUCTION)
        return split.choose(key)

    def record(
        self, name: str, variant: str, latency: float, error: bool, output: ModelOutput | None
    ) -> None:
        """A routed request ended: count it in its variant's window."""
        live = self.live.get(name)
        if live is None or variant == PINNED:
            return
        scores = scores_of(output) if output is not None else None
        live.arm(variant).record(latency, error, scores)

    def shadowed(self, name: str, version: str) -> bool:
        """Whether answers of ``name@version`` are copied to shadows: the production version's,
        under a rollout with shadows."""
        live = self.live.get(name)
        return live is not None and bool(live.shadows) and version == live.spec.production

    def shadow(self, name: str, copy: ShadowCopy) -> None:
        """Hand an answered request to each of the name's shadows; never blocks: a shadow
        whose queue is full drops the copy (counted)."""
        live = self.live.get(name)
        if live is None:
            return
        for stats in live.shadows.values():
            try:
                stats.queue.put_nowait(copy)
            except queue.Full:
                stats.dropped += 1
                self._count(name, stats.version, "dropped")

    # --- the shadow threads ----------------------------------------------------------------

    def _shadow_loop(self, live: LiveRollout, version: str) -> None:
        """One shadow's thread: until stopped, or its rollout is replaced."""
        name_os_thread()
        source = live.shadows[version].queue
        while not self._stop.is_set() and self.live.get(live.spec.model) is live:
            try:
                first = source.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run_shadow(live, version, [first, *_take(source, SHADOW_BATCH - 1)])

    def _run_shadow(self, live: LiveRollout, version: str, copies: list[ShadowCopy]) -> None:
        """Predict the copies with one shadow version in one call, then compare each."""
        stats = live.shadows[version]
        name = live.spec.model
        if self.live.get(name) is not live:  # replaced meanwhile: its copies are stale
            return
        started = time.perf_counter()
        try:
            served = self.manager.get(name, version)
            predictor, _ = served.require_ready()
            output = predictor.run(_concat([c.columns for c in copies]))
        except Exception as exc:  # noqa: BLE001 - a failing shadow never harms the primary
            with stats.lock:
                stats.errors += len(copies)
            self._count(name, version, "error", len(copies))
            logger.debug("shadow %s:%s failed: %s", name, version, exc)
            return
        seconds = time.perf_counter() - started
        offset = 0
        for copy in copies:
            rows = len(copy.output)
            mine = _rows(output, offset, offset + rows)
            offset += rows
            self._compare(live, stats, copy, mine, seconds)
            for observer in self.observers:
                observer.observe(_shadow_event(served, copy, mine, seconds))
        self._count(name, version, "compared", len(copies))

    def _compare(
        self,
        live: LiveRollout,
        stats: ShadowStats,
        copy: ShadowCopy,
        output: ModelOutput,
        seconds: float,
    ) -> None:
        primary, shadow = copy.output, output
        rows = len(shadow)
        if primary.label is not None and shadow.label is not None:
            differs = np.asarray(primary.label) != np.asarray(shadow.label)
        else:
            differs = np.zeros(rows, dtype=bool)
        if primary.probabilities is not None and shadow.probabilities is not None:
            delta = _row_delta(primary.probabilities, shadow.probabilities, rows)
        elif primary.value is not None and shadow.value is not None:
            delta = _row_delta(primary.value, shadow.value, rows)
        else:
            delta = np.zeros(rows)
        segments = _segment_names(copy.columns, live.spec.segments)
        with stats.lock:
            stats.compared += 1
            stats.window.append(
                (time.monotonic(), rows, int(differs.sum()), float(delta.max(initial=0.0)), seconds)
            )
            stats.deltas.extend(delta.tolist())
            if segments is not None:
                for segment, disagree, d in zip(segments, differs, delta, strict=True):
                    if segment not in stats.segments and len(stats.segments) >= MAX_SEGMENTS:
                        segment = OTHER_SEGMENT
                    entry = stats.segments.setdefault(segment, [0.0, 0.0, 0.0])
                    entry[0] += 1
                    entry[1] += bool(disagree)
                    entry[2] += float(d)

    def _count(self, name: str, version: str, outcome: str, n: int = 1) -> None:
        for hook in self.on_shadow:
            for _ in range(n):
                hook(name, version, outcome)


def _row_delta(primary: Any, shadow: Any, rows: int) -> FloatArray:
    """Per row, the largest |primary - shadow| over its outputs (classes or values)."""
    difference = np.asarray(primary, dtype=np.float64) - np.asarray(shadow, dtype=np.float64)
    largest: FloatArray = np.abs(difference).reshape(rows, -1).max(axis=1)
    return largest


def _concat(parts: list[Columns]) -> Columns:
    """Several requests' validated columns as one batch (same schema: same fields)."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _rows(output: ModelOutput, start: int, stop: int) -> ModelOutput:
    """Rows ``start:stop`` of a batch's outputs."""
    return ModelOutput(
        label=None if output.label is None else output.label[start:stop],
        probabilities=None if output.probabilities is None else output.probabilities[start:stop],
        value=None if output.value is None else output.value[start:stop],
    )


def _take(source: queue.Queue[ShadowCopy], most: int) -> list[ShadowCopy]:
    taken: list[ShadowCopy] = []
    while len(taken) < most:
        try:
            taken.append(source.get_nowait())
        except queue.Empty:
            break
    return taken


def _segment_names(columns: Columns, fields: tuple[str, ...]) -> list[str] | None:
    """Each row's segment label (``country=FR,channel=web``), or None without segment fields."""
    present = [f for f in fields if f in columns]
    if not present:
        return None
    parts = [[f"{f}={_text(v)}" for v in np.asarray(columns[f]).tolist()] for f in present]
    return [",".join(row) for row in zip(*parts, strict=True)]


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return str(value)[:64]


def _shadow_event(
    served: ServedModel, copy: ShadowCopy, output: ModelOutput, seconds: float
) -> PredictionEvent:
    rows = len(output)
    return PredictionEvent(
        request_id=copy.request_id,
        time=copy.time,
        model=served.name,
        version=served.version,
        digest=served.digest,
        protocol=copy.protocol,
        columns=copy.columns,
        output=output,
        rows=rows,
        latency_seconds=seconds,
        batch=BatchInfo(0.0, seconds, rows, 1),
        variant=SHADOW,
        traceparent=copy.traceparent,
    )


def first_record_value(body: bytes, name: str) -> str | None:
    """The value of field ``name`` in a request's first record (records API ``instances``, or
    the first element of the Open Inference Protocol input tensor of that name), as text; None
    when absent. Used only when a split is keyed by a field, so the extra parse costs nothing
    otherwise."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    if "instances" in document:
        instances = document.get("instances")
        if isinstance(instances, list) and instances and isinstance(instances[0], dict):
            value = instances[0].get(name)
            return None if value is None else str(value)
        return None
    for tensor in document.get("inputs") or ():
        if isinstance(tensor, dict) and tensor.get("name") == name:
            data = tensor.get("data")
            while isinstance(data, list) and data:
                data = data[0]
            return None if data is None or isinstance(data, list) else str(data)
    return None
