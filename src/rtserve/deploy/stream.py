"""Stream scoring (``rtserve stream``): records from a broker subject scored in micro-batches.

A record is one JSON object per message, validated exactly as the HTTP records API validates an
instance (the bundle's ``Validator`` through its ``Predictor``). Messages are collected up to
``batch_size`` or ``max_wait_s`` and scored together; each gets one outgoing message: a result on
the output subject, or, when it is invalid (not JSON, not an object, breaks the schema, too large)
or the model fails on it alone, a rejection with the error on the dead-letter subject (the output
subject when none is given).

Delivery is at least once: a message is acknowledged only after its outgoing message was
published and confirmed by the broker, so a consumer killed at any point loses nothing, and a
message may be scored twice. Every outgoing message carries ``request_id``, the input message's
stable id (the producer's message id, else the broker's position of the message: JetStream
``STREAM:SEQUENCE``, the Redis stream entry id), which is how duplicates are recognised.

This module is broker-neutral and imports no broker client; ``stream_brokers`` connects it to
FastStream (an optional extra: ``pip install 'rtserve[stream]'``) and ``stream_run.run`` joins
the two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from rtserve.engine.predictor import Predictor
from rtserve.errors import (
    FieldViolation,
    MalformedRequestError,
    PayloadTooLargeError,
    PredictionError,
    RtserveError,
    StreamError,
    ValidationError,
)

logger = logging.getLogger("rtserve.stream")

#: Messages scored together, at most (``--batch-size``).
DEFAULT_BATCH_SIZE = 100
#: How long the first message of a batch waits for more, in milliseconds (``--max-wait-ms``).
DEFAULT_MAX_WAIT_MS = 20.0
#: A message larger than this is rejected unread (``--max-message-bytes``), as HTTP bodies are.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
#: A message delivered but not acknowledged for this long goes to another consumer (or this one
#: after a restart): JetStream ``ack_wait``, the Redis claim idle time (``--redeliver-after-s``).
DEFAULT_REDELIVER_AFTER_S = 30.0
#: The consumer group / durable consumer / queue consumers share (``--group``).
DEFAULT_GROUP = "rtserve"
#: URL schemes ``rtserve stream`` connects to, and the broker each names.
SCHEMES = {
    "nats": "NATS JetStream",
    "redis": "Redis Streams",
    "rediss": "Redis Streams (TLS)",
    "amqp": "RabbitMQ",
    "amqps": "RabbitMQ (TLS)",
    "kafka": "Kafka",
}
#: A header a producer may set to give the record's key (Kafka's message key is used too).
KEY_HEADER = "key"

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class StreamConfig:
    """Where records come from and go to, and how they are batched and redelivered."""

    broker_url: str
    in_subject: str
    out_subject: str
    dead_letter_subject: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    redeliver_after_s: float = DEFAULT_REDELIVER_AFTER_S
    group: str = DEFAULT_GROUP
    key_field: str | None = None

    def __post_init__(self) -> None:
        scheme = urlsplit(self.broker_url).scheme.lower()
        if scheme not in SCHEMES:
            raise StreamError(
                f"--broker {redact(self.broker_url)!r}: the scheme {scheme or '(none)'!r} is not "
                f"one rtserve streams from; use one of {', '.join(s + '://' for s in SCHEMES)}",
                field="broker",
            )
        for name, value in (
            ("--in", self.in_subject),
            ("--out", self.out_subject),
            ("--dead-letter", self.dead_letter_subject),
        ):
            if value is not None and (not value.strip() or any(c in value for c in " \t*>")):
                raise StreamError(
                    f"{name} {value!r}: a subject is one non-empty name without spaces or "
                    "wildcards (* >); name one concrete subject, stream or queue",
                    field=name.lstrip("-"),
                )
        if self.in_subject in (self.out_subject, self.dead_letter_subject):
            raise StreamError(
                f"--in {self.in_subject!r} is also an output subject: results would be consumed "
                "again as records; give --out and --dead-letter other names",
                field="in",
            )
        for name, number in (
            ("--batch-size", self.batch_size),
            ("--max-wait-ms", self.max_wait_ms),
            ("--max-message-bytes", self.max_message_bytes),
            ("--redeliver-after-s", self.redeliver_after_s),
        ):
            if not number > 0:
                raise StreamError(f"{name} {number}: must be greater than 0", field=name[2:])

    @property
    def scheme(self) -> str:
        """The broker's URL scheme, lower case (``nats``, ``redis``, ``amqp``, ``kafka``...)."""
        return urlsplit(self.broker_url).scheme.lower()

    @property
    def rejects_subject(self) -> str:
        """Where rejections go: the dead-letter subject, else the output subject."""
        return self.dead_letter_subject or self.out_subject


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Incoming:
    """One consumed message, as the broker glue hands it over: bytes, ids and how to settle it."""

    body: bytes
    request_id: str
    ack: Callable[[], Awaitable[None]]
    nack: Callable[[], Awaitable[None]]
    key: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """What one incoming message produced: a result or a rejection, and where it goes."""

    incoming: Incoming
    subject: str
    body: bytes
    rejected: bool


#: Publishes ``body`` to ``subject``; ``message_id`` lets brokers that can drop duplicates do so.
Publish = Callable[[str, bytes, str], Awaitable[None]]


@dataclass
class StreamStats:
    """Counters for the closing summary and the progress log."""

    consumed: int = 0
    scored: int = 0
    rejected: int = 0
    publish_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        """One line: counts and the rate since start."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.consumed} messages consumed, {self.scored} scored, {self.rejected} rejected, "
            f"{self.publish_failures} publish failures (redelivered), "
            f"{self.consumed / elapsed:,.0f} messages/s"
        )


class StreamScorer:
    """Micro-batches incoming messages, scores them, publishes the outcomes, then acknowledges.

    ``submit`` blocks while ``2 x batch_size`` messages wait, so a slow model slows consumption
    instead of filling memory; what waits is unacknowledged and is redelivered if the process
    dies.
    """

    def __init__(
        self,
        predictor: Predictor,
        config: StreamConfig,
        publish: Publish,
        stats: StreamStats | None = None,
    ) -> None:
        self._predictor = predictor
        self._config = config
        self._publish = publish
        self._queue: asyncio.Queue[Incoming | None] = asyncio.Queue(maxsize=2 * config.batch_size)
        self._model = {"name": predictor.name, "version": predictor.version}
        self._key_is_input = config.key_field in predictor.schema.field_names
        # Rejections echo the input so it can be replayed, unless a field holds personal data.
        self._echo_input = not any(spec.pii for spec in predictor.schema.inputs)
        self.stats = stats or StreamStats()

    async def submit(self, message: Incoming) -> None:
        """Queue one message for the next batch (waits while the queue is full)."""
        await self._queue.put(message)

    async def run(self) -> None:
        """Score batches until ``close``; the messages queued before it are all settled."""
        wait = self._config.max_wait_ms / 1000
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + wait
            closing = False
            while len(batch) < self._config.batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            await self.process(batch)
            if closing:
                return

    async def close(self) -> None:
        """Let ``run`` finish the queued messages and return."""
        await self._queue.put(None)

    async def process(self, batch: Sequence[Incoming]) -> None:
        """Score, publish every outcome, then acknowledge those published (nack the others)."""
        outgoing = await asyncio.to_thread(self.score, batch)
        published = await asyncio.gather(
            *(self._publish(o.subject, o.body, o.incoming.request_id) for o in outgoing),
            return_exceptions=True,
        )
        settle: list[Awaitable[None]] = []
        for out, outcome in zip(outgoing, published, strict=True):
            self.stats.consumed += 1
            if isinstance(outcome, BaseException):
                self.stats.publish_failures += 1
                logger.warning(
                    "publishing the outcome of message %s to %r failed (%s: %s); it is not "
                    "acknowledged and will be delivered again",
                    out.incoming.request_id,
                    out.subject,
                    type(outcome).__name__,
                    outcome,
                )
                settle.append(out.incoming.nack())
                continue
            if out.rejected:
                self.stats.rejected += 1
            else:
                self.stats.scored += 1
            settle.append(out.incoming.ack())
        for settling in settle:  # one at a time: a connection pool is not flooded
            try:
                await settling
            except Exception as failure:  # noqa: BLE001 - the broker redelivers it: a duplicate
                logger.warning("settling a message failed: %s: %s", type(failure).__name__, failure)

    # --- scoring (synchronous, in a worker thread) -------------------------------------------

    def score(self, batch: Sequence[Incoming]) -> list[Outgoing]:
        """One outgoing message per incoming message, in order."""
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        keys: list[str | None] = [m.key for m in batch]
        outcomes: list[Outgoing | None] = [None] * len(batch)
        for i, message in enumerate(batch):
            try:
                record = self._decode(message.body)
            except RtserveError as exc:
                outcomes[i] = self._reject(message, keys[i], exc)
                continue
            keys[i] = self._key(record, keys[i])
            records.append(record)
            positions.append(i)
        for position, result in zip(positions, self._predict(records), strict=True):
            message = batch[position]
            if isinstance(result, RtserveError):
                outcomes[position] = self._reject(message, keys[position], result)
            else:
                outcomes[position] = self._result(message, keys[position], result)
        return [o for o in outcomes if o is not None]

    def _decode(self, body: bytes) -> dict[str, Any]:
        limit = self._config.max_message_bytes
        if len(body) > limit:
            raise PayloadTooLargeError(
                f"body: the message is {len(body)} bytes, more than the {limit} allowed; send "
                "one record per message, or raise --max-message-bytes"
            )
        try:
            record = _DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedRequestError(
                f"body: the message is not valid JSON: {exc}; a record is one JSON object "
                '{"field": value, ...}'
            ) from exc
        if not isinstance(record, dict):
            raise MalformedRequestError(
                f"body: expected a JSON object of field values, got {type(record).__name__}; a "
                'record is one JSON object {"field": value, ...}'
            )
        return record

    def _key(self, record: dict[str, Any], key: str | None) -> str | None:
        """The record's key: the message's own key, else the ``--key-field`` value.

        A key field that is not a model input is taken out, so a schema that rejects extra
        fields still accepts the record.
        """
        name = self._config.key_field
        if name is None or name not in record:
            return key
        value = record[name] if self._key_is_input else record.pop(name)
        return key if key is not None else (None if value is None else str(value))

    def _predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any] | RtserveError]:
        """Per record: its prediction, or the error that keeps it from one."""
        if not records:
            return []
        out: list[dict[str, Any] | RtserveError] = list(records)
        valid = list(range(len(records)))
        try:
            columns = self._predictor.validate(records)
        except ValidationError as exc:
            by_row = _violations_by_row(exc.violations, len(records))
            for row, violations in by_row.items():
                out[row] = ValidationError(violations)
            valid = [i for i in valid if i not in by_row]
            if not valid:
                return out
            columns = self._predictor.validate([records[i] for i in valid])
        try:
            predicted = self._predictor.predict_columns(columns).to_records()
        except PredictionError:
            # One poisonous record must not fail its batch-mates: retry each on its own.
            predicted_or_failed = [self._predict_one(records[i]) for i in valid]
            for i, result in zip(valid, predicted_or_failed, strict=True):
                out[i] = result
            return out
        for i, prediction in zip(valid, predicted, strict=True):
            out[i] = prediction
        return out

    def _predict_one(self, record: dict[str, Any]) -> dict[str, Any] | RtserveError:
        try:
            return self._predictor.predict([record]).to_records()[0]
        except RtserveError as exc:
            return exc

    def _result(self, message: Incoming, key: str | None, prediction: Any) -> Outgoing:
        body = {
            "request_id": message.request_id,
            "key": key,
            "model": self._model,
            "prediction": prediction,
        }
        return Outgoing(message, self._config.out_subject, _ENCODER.encode(body), rejected=False)

    def _reject(self, message: Incoming, key: str | None, error: RtserveError) -> Outgoing:
        described: dict[str, Any] = {
            "code": error.code,
            "field": error.field,
            "message": error.message,
        }
        if isinstance(error, ValidationError):
            described["violations"] = [v.to_dict() for v in error.violations[:100]]
        body: dict[str, Any] = {
            "request_id": message.request_id,
            "key": key,
            "model": self._model,
            "error": described,
        }
        if self._echo_input and not isinstance(error, PayloadTooLargeError):
            body["input"] = message.body.decode("utf-8", errors="replace")
        return Outgoing(message, self._config.rejects_subject, _ENCODER.encode(body), rejected=True)


def _violations_by_row(
    violations: Sequence[FieldViolation], n_rows: int
) -> dict[int, list[FieldViolation]]:
    """Each record's own violations (a violation without a row concerns every record)."""
    by_row: dict[int, list[FieldViolation]] = {}
    for violation in violations:
        rows = range(n_rows) if violation.row is None else [violation.row]
        for row in rows:
            # One message is one record: its violations name no row.
            by_row.setdefault(row, []).append(dataclasses.replace(violation, row=None))
    return by_row
