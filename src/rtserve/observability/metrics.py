"""Every Prometheus metric of rtserve, defined once, plus exposition in one or many processes.

Names follow Prometheus conventions: the ``rtserve_`` prefix, base units (seconds, bytes, rows),
``_total`` on counters, and labels whose values come from a bounded set (served model names and
versions, schema field names, route names, status codes), never from request ids or raw values.

With several worker processes (``rtserve serve --workers N``) the runner sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; each worker then writes its values to files
in that directory and a scrape of any worker reads all of them (prometheus-client's multiprocess
mode). Gauges declare how values of several processes combine (``livesum``, ``livemax`` ...).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: The environment variable prometheus-client reads (at import) to switch to multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

#: Label value for a model label when the request never reached a served model.
NO_MODEL = ""
#: Label value for a field name that is not in the schema (client-supplied keys stay out).
UNKNOWN_FIELD = "_unknown"


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for each of ``values`` (a labelled child), with one update per
    bucket touched and one of the sum instead of one of each per value.

    prometheus-client has no batch observation; this updates the child's own bucket and sum
    values (``_upper_bounds``, ``_buckets``, ``_sum``: the fields its ``observe`` updates, in one
    process or many), and a test holds it to the same exposition as ``observe``.
    """
    if len(values) == 1:
        histogram.observe(values[0])
        return
    bounds = histogram._upper_bounds  # ascending, the last +Inf: bisect_left is observe's bucket
    tally = Tally(map(bisect_left, repeat(bounds, len(values)), values))
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(sum(values))
    buckets = histogram._buckets
    for index, count in tally.items():
        buckets[index].inc(count)


@dataclass(frozen=True)
class ModelSnapshot:
    """What the readiness and info gauges show about one served model version."""

    name: str
    version: str
    digest: str
    runtime: str
    ready: bool
    cache_hits: int = 0  # the model's response cache, counted since it was loaded
    cache_misses: int = 0


def multiprocess_enabled() -> bool:
    """Whether this process writes metrics to ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(directory: str | Path) -> Path:
    """Create (or empty) the directory the workers share, before any worker starts.

    Values left by an earlier run would otherwise be added to this run's counters.
    """
    path = Path(directory)
    if path.exists():
        for stale in path.glob("*.db"):
            stale.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mark_worker_dead(pid: int, directory: str | Path | None = None) -> None:
    """Drop the live gauges of a worker that exited (its counters stay in the totals)."""
    folder = str(directory) if directory is not None else os.environ.get(MULTIPROC_ENV)
    if folder and Path(folder).is_dir():
        mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]  # untyped in prometheus-client


def remove_multiprocess_dir(directory: str | Path) -> None:
    """Delete a directory made by the runner for one run."""
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def multiprocess_metrics(directory: str | None = None) -> Iterator[Path]:
    """Set up multiprocess mode for the workers about to start (the runner's ``--workers N``).

    Uses ``directory`` (emptied first) or a fresh temporary one, exports it as
    ``PROMETHEUS_MULTIPROC_DIR`` for the workers, and watches for workers that die so their live
    gauges leave the totals. On exit the variable is restored and a temporary directory removed.
    """
    made = directory is None
    path = (
        Path(tempfile.mkdtemp(prefix="rtserve-metrics-"))
        if directory is None
        else prepare_multiprocess_dir(directory)
    )
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_workers, args=(path, stop), name="rtserve-metrics-watch", daemon=True
    )
    watcher.start()
    try:
        yield path
    finally:
        stop.set()
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        if made:
            remove_multiprocess_dir(path)


def _watch_workers(path: Path, stop: threading.Event, every: float = 1.0) -> None:
    """Mark workers dead whose pid (from the live-gauge file names) no longer runs."""
    while not stop.wait(every):
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in path.glob("gauge_live*_*.db")}
        for pid in pids:
            if not _running(pid):
                mark_worker_dead(pid, path)


def _running(pid: int) -> bool:
    """Whether a process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Metrics:
    """The metric families of one server process and their exposition.

    Args:
        registry: where the families are registered; a fresh one by default so that several apps
            in one process (tests, embedding) do not collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_enabled()
        r = self.registry
        model = ["model", "version"]
        route = ["model", "version", "protocol", "endpoint", "variant"]
        # --- HTTP layer (middleware): every request, including failed ones ---------------------
        self.requests = Counter(
            "rtserve_requests",
            "HTTP requests answered, by model, version, protocol, endpoint, rollout variant "
            "(production, canary, ab:VERSION, pinned; empty without a rollout) and status code.",
            [*route, "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "rtserve_request_duration_seconds",
            "Whole-request latency as the server saw it (read body .. last byte sent).",
            route,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "rtserve_requests_in_flight",
            "Requests being handled now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.validation_failures = Counter(
            "rtserve_validation_failures",
            "Schema violations in rejected requests, by field and rule (one per violation).",
            [*model, "field", "rule"],
            registry=r,
        )
        self.auth_failures = Counter(
            "rtserve_auth_failures",
            "Refused authentications (401, and 429 for an address past its failure limit), by "
            "reason: missing, scheme, invalid_key, invalid_token, expired, claims, blocked.",
            ["reason"],
            registry=r,
        )
        # --- model level (prediction events) ---------------------------------------------------
        self.model_seconds = Histogram(
            "rtserve_model_latency_seconds",
            "The runtime's predict call for the batch a request rode in.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "rtserve_queue_wait_seconds",
            "Time a validated request waited in the batcher before its batch started.",
            model,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "rtserve_batch_size_rows",
            "Rows in the batch each request was predicted in (one observation per request).",
            model,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "rtserve_predictions",
            "Rows predicted (a request of 10 rows counts 10).",
            model,
            registry=r,
        )
        self.fallbacks = Counter(
            "rtserve_fallbacks",
            "Requests answered by a fallback instead of the model.",
            model,
            registry=r,
        )
        self.cache_hits = Counter(
            "rtserve_cache_hits",
            "Predictions served from the prediction cache.",
            model,
            registry=r,
        )
        self.cache_misses = Counter(
            "rtserve_cache_misses",
            "Prediction cache look-ups that found nothing.",
            model,
            registry=r,
        )
        self.model_info = Gauge(
            "rtserve_model_info",
            "1 for every served model version; labels carry the bundle digest and runtime.",
            [*model, "digest", "runtime"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_ready = Gauge(
            "rtserve_model_ready",
            "1 when the model version is READY (warm-up matched), 0 otherwise.",
            model,
            multiprocess_mode="livemin",
            registry=r,
        )
        # --- off-the-hot-path machinery -------------------------------------------------------
        self.observer_dropped = Counter(
            "rtserve_observer_dropped",
            "Prediction events an observer dropped because its queue was full.",
            ["observer"],
            registry=r,
        )
        self.observer_errors = Counter(
            "rtserve_observer_errors",
            "Batches an observer failed to process (see the log).",
            ["observer"],
            registry=r,
        )
        self.decisions_written = Counter(
            "rtserve_decisions_written",
            "Decision-log records written to the sink.",
            ["sink"],
            registry=r,
        )
        self.model_swaps = Counter(
            "rtserve_model_swaps",
            "Version changes of a model followed from the registry, by outcome: swapped (the new "
            "version answers), refused (it failed to load) or warmup_failed (parity failed).",
            ["model", "outcome"],
            registry=r,
        )
        # --- rollouts (shadows and the promotion gate) ---------------------------------------
        self.shadow_predictions = Counter(
            "rtserve_shadow_predictions",
            "Requests copied to a shadow version, by outcome: compared (predicted and compared "
            "with the primary), error (the shadow failed) or dropped (its queue was full).",
            [*model, "outcome"],
            registry=r,
        )
        self.shadow_label_agreement = Gauge(
            "rtserve_shadow_label_agreement_ratio",
            "Share of rows on which a shadow's label equals the primary's, over the gate window.",
            model,
            multiprocess_mode="livemin",
            registry=r,
        )
        self.shadow_abs_delta_p99 = Gauge(
            "rtserve_shadow_abs_delta_p99",
            "p99 over rows of |shadow - primary| probability (or value), recent rows.",
            model,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.rollout_weight = Gauge(
            "rtserve_rollout_canary_weight_percent",
            "Percent of a model's unpinned requests the canary version gets now.",
            model,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.rollout_decisions = Counter(
            "rtserve_rollout_decisions",
            "Promotion-gate decisions taken by this server, by the status they led to: running "
            "(a step up), rolled_back, paused, awaiting_approval, promoted.",
            ["model", "status"],
            registry=r,
        )
        # --- drift (computed per process over its own window) ----------------------------------
        feature = [*model, "feature"]
        self.drift_psi = Gauge(
            "rtserve_drift_psi",
            "Population stability index of a feature's live window against the training profile.",
            feature,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_null_change = Gauge(
            "rtserve_drift_null_rate_change",
            "Absolute change of a feature's share of missing values against training.",
            feature,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_unseen = Gauge(
            "rtserve_drift_unseen_share",
            "Share of a categorical feature's live values never seen in training.",
            feature,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_out_of_range = Gauge(
            "rtserve_drift_out_of_range_share",
            "Share of a numeric feature's live values outside the training minimum..maximum.",
            feature,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drifted_features = Gauge(
            "rtserve_drift_features_drifted",
            "Features whose drift scores cross a configured threshold.",
            model,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.prediction_psi = Gauge(
            "rtserve_prediction_drift_psi",
            "PSI of the predicted class frequencies (or value bins) against training.",
            model,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.mean_confidence = Gauge(
            "rtserve_prediction_mean_confidence",
            "Mean top-class probability over the drift window (classifiers).",
            model,
            multiprocess_mode="livemin",
            registry=r,
        )
        self.drift_window_rows = Gauge(
            "rtserve_drift_window_rows",
            "Rows in the drift window now.",
            model,
            multiprocess_mode="livesum",
            registry=r,
        )
        # --- process --------------------------------------------------------------------------
        self.cpu_seconds = Counter(
            "rtserve_process_cpu_seconds",
            "CPU time (user + system) used by the server processes.",
            registry=r,
        )
        self.resident_bytes = Gauge(
            "rtserve_process_resident_memory_bytes",
            "Resident memory of the server processes (summed over live workers).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.workers = Gauge(
            "rtserve_worker_processes",
            "Live worker processes serving requests.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.workers.set(1)
        self._cpu_seen = time.process_time()
        self._process_lock = threading.Lock()
        self._shown_models: set[tuple[str, str, str, str]] = set()
        self._cache_seen: dict[tuple[str, str, str, str], tuple[int, int]] = {}

    # --- updates outside the request path ---------------------------------------------------

    def refresh_process(self) -> None:
        """Add this process's CPU time since the last call and set its resident memory."""
        with self._process_lock:
            now = time.process_time()
            self.cpu_seconds.inc(max(now - self._cpu_seen, 0.0))
            self._cpu_seen = now
        self.resident_bytes.set(_resident_bytes())

    def show_models(self, models: Iterable[ModelSnapshot]) -> None:
        """Set the info and readiness gauges (versions no longer served drop to 0) and add the
        cache hits and misses counted since the last call."""
        current: set[tuple[str, str, str, str]] = set()
        for m in models:
            key = (m.name, m.version, m.digest, m.runtime)
            current.add(key)
            self.model_info.labels(*key).set(1)
            self.model_ready.labels(m.name, m.version).set(1 if m.ready else 0)
            hits, misses = self._cache_seen.get(key, (0, 0))
            if m.cache_hits > hits:
                self.cache_hits.labels(m.name, m.version).inc(m.cache_hits - hits)
            if m.cache_misses > misses:
                self.cache_misses.labels(m.name, m.version).inc(m.cache_misses - misses)
            self._cache_seen[key] = (max(m.cache_hits, hits), max(m.cache_misses, misses))
        for gone in self._shown_models - current:
            self.model_info.labels(*gone).set(0)
            self.model_ready.labels(gone[0], gone[1]).set(0)
        self._shown_models = current

    # --- exposition -------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every family (all workers' values in multiprocess mode)."""
        self.refresh_process()
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This worker stops: remove its live gauges from the shared totals."""
        if self.multiprocess:
            mark_worker_dead(os.getpid())


def _resident_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best we have
        import resource

        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
