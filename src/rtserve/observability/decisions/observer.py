"""The decision-log observer: prediction events -> one record per row -> a sink, off the hot path."""

from __future__ import annotations

from collections.abc import Callable

from rtserve.bundle.schema import Schema
from rtserve.events import PredictionEvent
from rtserve.observability.decisions.record import Decision, DecisionSink, decisions_for
from rtserve.observability.decisions.writer import WriterProcess
from rtserve.observability.metrics import Metrics
from rtserve.observability.queueing import BackgroundQueue
from rtserve.observability.redaction import Redactor


class DecisionLogObserver:
    """Writes a decision per predicted row to ``sink``, off the request path.

    A background thread takes the events; with ``process`` (the server's default) it hands each
    batch to a child process that builds and writes the records (``writer.WriterProcess``: their
    per-row work no longer holds the event loop's GIL), otherwise it does that itself.

    Args:
        sink: JSON lines or SQL.
        schema_of: the schema of a served model version (for PII fields and class names).
        redactor: hashes or drops PII values in the recorded inputs and the input hash.
        include_inputs: record the (redacted) inputs, not only their hash.
        metrics: counts written records, drops and failures.
        process: build and write records in a child process rather than in the thread.
    """

    name = "decisions"

    def __init__(
        self,
        sink: DecisionSink,
        schema_of: Callable[[str, str], Schema | None],
        redactor: Redactor,
        *,
        include_inputs: bool = False,
        metrics: Metrics | None = None,
        maxsize: int = 2048,
        process: bool = False,
    ) -> None:
        self.sink = sink
        self.redactor = redactor
        self.include_inputs = include_inputs
        self._schema_of = schema_of
        self._schemas: dict[tuple[str, str], Schema | None] = {}
        self.writer = (
            WriterProcess(sink, redactor, include_inputs=include_inputs) if process else None
        )
        self._written = metrics.decisions_written.labels(sink.name) if metrics else None
        self.queue: BackgroundQueue[PredictionEvent] = BackgroundQueue(
            self.name, self._write, metrics=metrics, maxsize=maxsize, batch=64, weigh=_rows
        )

    def observe(self, event: PredictionEvent) -> None:
        """Queue the event (drops and counts when the queue is full)."""
        self.queue.put(event)

    def start(self) -> None:
        """Open the sink (here, so that a sink that cannot open fails the start) and start the
        thread, and the writer process when there is one (which opens the sink for itself)."""
        self.sink.open()
        if self.writer is not None:
            self.sink.close()
            self.writer.start()
        self.queue.start()

    def close(self) -> None:
        """Write what is queued, then close the sink (and stop the writer process)."""
        self.queue.close()
        if self.writer is not None:
            self.writer.close()
        self.sink.close()

    def flush(self) -> None:
        """Wait until every queued event is written (tests, the CLI)."""
        self.queue.flush()

    def _schema(self, model: str, version: str) -> Schema | None:
        key = (model, version)
        if key not in self._schemas:
            self._schemas[key] = self._schema_of(model, version)
        return self._schemas[key]

    def _write(self, events: list[PredictionEvent]) -> None:
        groups: dict[tuple[str, str], list[PredictionEvent]] = {}
        for event in events:
            groups.setdefault((event.model, event.version), []).append(event)
        if self.writer is not None:
            schemas = {key: self._schema(*key) for key in groups}
            written = self.writer.write(list(groups.items()), schemas)
            if self._written is not None:
                self._written.inc(written)
            return
        records: list[Decision] = []
        for (model, version), group in groups.items():
            records += decisions_for(
                group,
                self._schema(model, version),
                self.redactor,
                include_inputs=self.include_inputs,
            )
        self.sink.write(records)
        if self._written is not None:
            self._written.inc(len(records))


def _rows(event: PredictionEvent) -> int:
    return event.rows
