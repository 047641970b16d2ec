"""Everything a server process observes, built from the settings: one object to start and stop.

The server's composition root creates one ``Observability`` per app, hands ``observers`` to the
data plane and ``access`` to the middleware, starts it in the lifespan and closes it on shutdown.
It learns about served models through a small ``Catalog`` the server provides.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from rtserve.bundle.schema import Schema
from rtserve.events import PredictionEvent
from rtserve.observability.access import AccessRecorder
from rtserve.observability.decisions import DecisionLogObserver, DecisionSink, JsonlSink, SqlSink
from rtserve.observability.drift import DriftObserver, Reference
from rtserve.observability.metrics import Metrics, ModelSnapshot
from rtserve.observability.model_metrics import MetricsObserver
from rtserve.observability.redaction import default_redactor
from rtserve.observability.threads import name_os_thread
from rtserve.observability.tracing import Tracer, configure_default_provider
from rtserve.settings import Settings

logger = logging.getLogger("rtserve.observability")
#: Seconds between refreshes of process and model-state gauges.
REFRESH_SECONDS = 1.0


class Catalog(Protocol):
    """What observability needs to know about the served models (the server implements it)."""

    def models(self) -> list[ModelSnapshot]:
        """Every served model version and whether it is ready."""

    def schema(self, name: str, version: str) -> Schema | None:
        """The schema of a served version (None when unknown or not loaded)."""

    def reference(self, name: str, version: str) -> Reference | None:
        """Schema + training profile of a served version (None without a profile)."""


class PredictionObserver(Protocol):
    """An observer with a lifecycle (the engine's ``Observer`` plus start/close)."""

    def observe(self, event: PredictionEvent) -> None:
        """Record one event without blocking."""

    def start(self) -> None:
        """Start the background thread."""

    def close(self) -> None:
        """Finish queued work and stop."""


class Observability:
    """Metrics, drift, decision log, access log and tracing of one server process.

    Args:
        settings: which parts are on, windows, sinks and thresholds.
        catalog: the served models.
        tracer_provider: an OpenTelemetry provider for tracing (default: the global one,
            configured for OTLP when the process has none).
    """

    def __init__(
        self, settings: Settings, catalog: Catalog, *, tracer_provider: Any = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.redactor = default_redactor().with_mode(settings.logging.pii_redaction)
        self.metrics = Metrics() if settings.metrics.enabled else None
        self.metrics_observer: MetricsObserver | None = None
        self.drift: DriftObserver | None = None
        self.decisions: DecisionLogObserver | None = None
        if self.metrics is not None:
            self.metrics_observer = MetricsObserver(
                self.metrics, maxsize=settings.metrics.queue_size
            )
        d = settings.drift
        if d.enabled:
            self.drift = DriftObserver(catalog.reference, d, self.metrics, maxsize=d.queue_size)
        log = settings.decision_log
        if log.enabled:
            sink: DecisionSink = (
                SqlSink(log.database_url)
                if log.sink == "sql" and log.database_url
                else JsonlSink(log.directory, max_bytes=log.max_bytes, max_files=log.max_files)
            )
            self.decisions = DecisionLogObserver(
                sink,
                catalog.schema,
                self.redactor,
                include_inputs=log.include_inputs,
                metrics=self.metrics,
                maxsize=log.queue_size,
                process=log.writer == "process",
            )
        self.tracer: Tracer | None = None
        if settings.logging.tracing:
            if tracer_provider is None:
                configure_default_provider()
            self.tracer = Tracer(tracer_provider, metrics=self.metrics)
        self.access = AccessRecorder(
            self.metrics, access_log=settings.logging.access_log, tracer=self.tracer
        )
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    @property
    def observers(self) -> list[PredictionObserver]:
        """The prediction observers to hand to the data plane."""
        found: list[PredictionObserver | None] = [self.metrics_observer, self.drift, self.decisions]
        return [o for o in found if o is not None]

    def start(self) -> None:
        """Start every background thread (the app's lifespan calls this)."""
        for observer in self.observers:
            observer.start()
        if self.tracer is not None:
            self.tracer.start()
        self._stop.clear()
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="rtserve-refresh", daemon=True
        )
        self._refresher.start()

    def close(self) -> None:
        """Drain the queues, close sinks, and remove this worker's live gauges."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(5)
            self._refresher = None
        for observer in self.observers:
            observer.close()
        if self.tracer is not None:
            self.tracer.close()
        if self.metrics is not None:
            self.metrics.close()

    def refresh(self) -> None:
        """Update process and model-state gauges and the PII names the log chain redacts."""
        models = self.catalog.models()
        for state in models:
            schema = self.catalog.schema(state.name, state.version)
            if schema is not None:
                self.redactor.register(schema.pii_fields)
        if self.metrics is not None:
            self.metrics.show_models(models)
            self.metrics.refresh_process()

    def exposition(self) -> tuple[bytes, str]:
        """``GET /metrics``: the text format and its content type."""
        if self.metrics is None:
            return b"# metrics are switched off (RTSERVE_METRICS__ENABLED=false)\n", "text/plain"
        self.refresh()
        return self.metrics.exposition()

    def drift_report(self, name: str, version: str) -> dict[str, Any]:
        """``GET /v1/models/{name}/drift``: scores of one served version's window."""
        if self.drift is None:
            return {"model": name, "version": version, "enabled": False}
        report = self.drift.report(name, version)
        if report is None:
            return {"model": name, "version": version, "enabled": True, "status": "no_profile"}
        return {"enabled": True, **report}

    def _refresh_loop(self) -> None:
        name_os_thread()
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                self.refresh()
            except Exception:
                logger.exception("refreshing gauges failed")
