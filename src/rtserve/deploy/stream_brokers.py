"""FastStream glue for ``rtserve stream``: one ``BrokerLink`` per broker, chosen by URL scheme.

Each link consumes with manual acknowledgement (``AckPolicy.MANUAL``: the scorer acknowledges
after publishing), hands every message to the scorer as an ``Incoming`` with a stable request id,
and publishes with the broker's confirmation:

- ``nats://``: a JetStream stream per subject (an existing stream that holds the subject is used)
  and a durable pull consumer named ``--group``; ``ack_wait`` is ``--redeliver-after-s``. Results
  carry ``Nats-Msg-Id``, so JetStream itself drops a duplicate result within its window.
- ``redis://``: Redis Streams with the consumer group ``--group``; entries left pending by a dead
  consumer for ``--redeliver-after-s`` are claimed (XAUTOCLAIM). Outputs are entries with the
  fields ``data`` (the JSON message) and ``request_id``.
- ``amqp://``: durable RabbitMQ queues named by the subjects, persistent messages, publisher
  confirms; unacknowledged messages return to the queue when the consumer's channel closes.
- ``kafka://``: FastStream's Kafka broker (needs ``aiokafka``), the consumer group ``--group``.
  No Kafka broker was available to test it.

Imported only by ``rtserve.deploy.stream.run``: it imports FastStream at module level. It does
not use ``from __future__ import annotations``: FastStream reads handler annotations at runtime.
"""

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

from faststream import AckPolicy, Context
from faststream.message import StreamMessage

from rtserve.deploy.stream import KEY_HEADER, Incoming, StreamConfig, redact
from rtserve.errors import StreamError

Submit = Callable[[Incoming], Awaitable[None]]
Message = Annotated[StreamMessage[Any], Context("message")]

#: FastStream logs every message at this level; DEBUG keeps 10,000 lines/s out of the output.
_BROKER_LOG_LEVEL = logging.DEBUG
_broker_logger = logging.getLogger("rtserve.stream.broker")


class BrokerLink(Protocol):
    """What ``run`` needs of a broker: consume into the scorer, publish, stop, close."""

    async def start(self, submit: Submit) -> None:
        """Connect, declare what is missing, and start consuming into ``submit``."""

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """Publish and return once the broker has confirmed it."""

    async def stop_consuming(self) -> None:
        """Take no more messages (those handed over are still settled)."""

    async def close(self) -> None:
        """Disconnect."""


def connect(config: StreamConfig) -> BrokerLink:
    """The link for the broker the URL names."""
    scheme = config.scheme
    if scheme == "nats":
        return NatsLink(config)
    if scheme in ("redis", "rediss"):
        return RedisLink(config)
    if scheme in ("amqp", "amqps"):
        return RabbitLink(config)
    return KafkaLink(config)


def consumer_name() -> str:
    """This process's name within the group: host and pid, so replicas never share one."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _header(message: StreamMessage[Any], name: str) -> str | None:
    value = (message.headers or {}).get(name)
    return None if value in (None, "") else str(value)


def _unreachable(config: StreamConfig, exc: BaseException) -> StreamError:
    return StreamError(
        f"--broker {redact(config.broker_url)}: cannot connect or set up "
        f"{config.in_subject!r} ({type(exc).__name__}: {exc}); check that the broker runs and "
        "the URL, credentials and permissions are right",
        field="broker",
    )


class _Link:
    """What the FastStream links share: the broker object, its subscribers and start/stop."""

    broker: Any

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.subscribers: list[Any] = []

    def _incoming(self, message: StreamMessage[Any], request_id: str) -> Incoming:
        return Incoming(
            body=message.body,
            request_id=request_id,
            key=_header(message, KEY_HEADER),
            ack=message.ack,
            nack=message.nack,
        )

    async def _start_broker(self) -> None:
        try:
            await self.broker.start()
        except Exception as exc:
            raise _unreachable(self.config, exc) from exc

    async def stop_consuming(self) -> None:
        """Stop every subscriber; the connection stays open for the pending acks."""
        for subscriber in self.subscribers:
            await subscriber.stop()

    async def close(self) -> None:
        """Stop the broker (and its connection)."""
        await self.broker.stop()


class NatsLink(_Link):
    """NATS JetStream: durable pull consumer, streams found or created per subject."""

    def __init__(self, config: StreamConfig) -> None:
        from faststream.nats import NatsBroker

        super().__init__(config)
        self.broker = NatsBroker(
            config.broker_url, logger=_broker_logger, log_level=_BROKER_LOG_LEVEL
        )
        self.streams: dict[str, str] = {}

    async def start(self, submit: Submit) -> None:
        """Find or create the streams, then consume with a durable pull consumer."""
        from faststream.nats import JStream, PullSub
        from nats.js.api import ConsumerConfig

        config = self.config
        try:
            await self.broker.connect()
            for subject in {config.in_subject, config.out_subject, config.rejects_subject}:
                self.streams[subject] = await self._stream_for(subject)
        except Exception as exc:
            raise _unreachable(config, exc) from exc

        async def handle(message: Message) -> None:
            await submit(self._incoming(message, self._request_id(message)))

        subscriber = self.broker.subscriber(
            config.in_subject,
            stream=JStream(self.streams[config.in_subject], declare=False),
            durable=config.group,
            pull_sub=PullSub(
                batch_size=config.batch_size, timeout=max(config.max_wait_ms / 1000, 0.1)
            ),
            config=ConsumerConfig(
                ack_wait=config.redeliver_after_s, max_ack_pending=max(1000, 4 * config.batch_size)
            ),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
        )
        subscriber(handle)
        self.subscribers.append(subscriber)
        await self._start_broker()

    async def _stream_for(self, subject: str) -> str:
        """The JetStream stream that holds ``subject``; a file-backed one is made if none does."""
        from nats.js.errors import NotFoundError

        js = self.broker.config.connection_state.stream
        try:
            return str(await js.find_stream_name_by_subject(subject))
        except NotFoundError:
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in subject).upper()
            await js.add_stream(name=name, subjects=[subject])
            return name

    @staticmethod
    def _request_id(message: StreamMessage[Any]) -> str:
        """The producer's id (``Nats-Msg-Id``, FastStream's ``message_id``), else STREAM:SEQ."""
        given = _header(message, "Nats-Msg-Id") or _header(message, "message_id")
        if given is not None:
            return given
        meta = message.raw_message.metadata
        return f"{meta.stream}:{meta.sequence.stream}"

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """A JetStream publish (waits for the stream's ack), deduplicated by the request id."""
        await self.broker.publish(
            body,
            subject,
            stream=self.streams[subject],
            headers={
                "Nats-Msg-Id": f"rtserve:{subject}:{message_id}",
                "content-type": "application/json",
            },
        )


class RedisLink(_Link):
    """Redis Streams: a consumer group, plus a claimer of entries a dead consumer left pending."""

    def __init__(self, config: StreamConfig) -> None:
        from faststream.redis import RedisBroker

        super().__init__(config)
        self.broker = RedisBroker(
            config.broker_url, logger=_broker_logger, log_level=_BROKER_LOG_LEVEL
        )
        self.client: Any = None
        # A batch publishes concurrently; more XADDs at once than the pool holds would fail.
        self.publishing = asyncio.Semaphore(8)

    async def start(self, submit: Submit) -> None:
        """Read new entries of the group, and claim entries pending longer than the redelivery."""
        from faststream.redis import StreamSub

        config = self.config
        consumer = consumer_name()

        async def handle(message: Message) -> None:
            incoming = self._incoming(message, self._request_id(message))
            incoming.body = self._body(message)
            await submit(incoming)

        new = self.broker.subscriber(
            stream=StreamSub(
                config.in_subject,
                group=config.group,
                consumer=consumer,
                max_records=config.batch_size,
                polling_interval=max(int(config.max_wait_ms), 10),
            ),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
        )
        claimed = self.broker.subscriber(
            stream=StreamSub(
                config.in_subject,
                group=config.group,
                consumer=consumer,
                min_idle_time=int(config.redeliver_after_s * 1000),
                polling_interval=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
        )
        for subscriber in (new, claimed):
            subscriber(handle)
            self.subscribers.append(subscriber)
        try:
            self.client = await self.broker.connect()
            await self._create_group()
        except Exception as exc:
            raise _unreachable(config, exc) from exc
        await self._start_broker()

    async def _create_group(self) -> None:
        """Create the group at the stream's start, so entries added before the first consumer
        ran are scored too (FastStream would start a new group at the end: ``$``)."""
        from redis.exceptions import ResponseError

        try:
            await self.client.xgroup_create(
                self.config.in_subject, self.config.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: it keeps its position
                raise

    @staticmethod
    def _request_id(message: StreamMessage[Any]) -> str:
        """The producer's ``message_id`` header (FastStream sets one), else the entry id."""
        given = _header(message, "message_id")
        if given is not None:
            return given
        entry = message.raw_message["message_ids"][0]
        return f"{entry.decode() if isinstance(entry, bytes) else entry}"

    @staticmethod
    def _body(message: StreamMessage[Any]) -> bytes:
        """The record: FastStream's envelope body, or the ``data`` field of a plain entry (the
        shape rtserve writes, and what ``XADD STREAM * data '{...}'`` makes)."""
        fields = message.raw_message.get("data")
        if isinstance(fields, dict) and b"__data__" not in fields:
            plain = fields.get(b"data", fields.get("data"))
            if isinstance(plain, bytes):
                return plain
            if isinstance(plain, str):
                return plain.encode()
        return message.body

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """XADD of ``data`` (the JSON message) and ``request_id``; the reply is the confirmation."""
        async with self.publishing:
            await self.client.xadd(subject, {"data": body, "request_id": message_id})


class RabbitLink(_Link):
    """RabbitMQ: durable queues, persistent messages, publisher confirms, bounded prefetch."""

    def __init__(self, config: StreamConfig) -> None:
        from faststream.rabbit import Channel, RabbitBroker

        super().__init__(config)
        self.broker = RabbitBroker(
            config.broker_url,
            default_channel=Channel(prefetch_count=4 * config.batch_size),
            logger=_broker_logger,
            log_level=_BROKER_LOG_LEVEL,
        )

    async def start(self, submit: Submit) -> None:
        """Declare the three queues durable, then consume the input queue."""
        from faststream.rabbit import RabbitQueue

        config = self.config

        async def handle(message: Message) -> None:
            await submit(self._incoming(message, self._request_id(message)))

        subscriber = self.broker.subscriber(
            RabbitQueue(config.in_subject, durable=True),
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
        )
        subscriber(handle)
        self.subscribers.append(subscriber)
        try:
            await self.broker.connect()
            for name in {config.out_subject, config.rejects_subject}:
                await self.broker.declare_queue(RabbitQueue(name, durable=True))
        except Exception as exc:
            raise _unreachable(config, exc) from exc
        await self._start_broker()

    @staticmethod
    def _request_id(message: StreamMessage[Any]) -> str:
        """The AMQP ``message_id`` property; without one, FastStream makes one up per delivery
        (a redelivery then cannot be told from a new message: producers should set it)."""
        return str(message.raw_message.message_id or message.message_id)

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """A persistent message to the queue, confirmed by the broker."""
        await self.broker.publish(
            body,
            queue=subject,
            persist=True,
            message_id=f"rtserve:{message_id}",
            content_type="application/json",
        )


class KafkaLink(_Link):
    """Kafka through FastStream's Kafka broker; offsets are committed by the acknowledgement."""

    def __init__(self, config: StreamConfig) -> None:
        try:
            from faststream.kafka import KafkaBroker
        except ImportError as exc:
            raise StreamError(
                f"kafka:// needs the Kafka client ({exc}); install it with: pip install "
                "'faststream[kafka]'",
                field="broker",
            ) from exc
        super().__init__(config)
        servers = urlsplit(config.broker_url).netloc.split(",")
        self.broker = KafkaBroker(servers, logger=_broker_logger, log_level=_BROKER_LOG_LEVEL)

    async def start(self, submit: Submit) -> None:
        """Consume the topic as the group ``--group``; topics must exist (or be auto-created)."""
        config = self.config

        async def handle(message: Message) -> None:
            raw = message.raw_message
            incoming = self._incoming(message, f"{raw.topic}:{raw.partition}:{raw.offset}")
            if incoming.key is None and raw.key is not None:
                incoming.key = raw.key.decode("utf-8", errors="replace")
            await submit(incoming)

        subscriber = self.broker.subscriber(
            config.in_subject,
            group_id=config.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
        )
        subscriber(handle)
        self.subscribers.append(subscriber)
        await self._start_broker()

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """A produce that waits for the leader's acknowledgement."""
        await self.broker.publish(body, subject, headers={"message_id": message_id})
