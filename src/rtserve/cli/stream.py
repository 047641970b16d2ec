"""``rtserve stream``: score records from a broker subject and publish the results.

The bundle loader, the runtimes and FastStream are imported when the command runs, so that
``rtserve --help`` stays fast and a core install without the ``stream`` extra still works.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.options import PinDigest, TrustPickle
from rtserve.cli.output import print_note


def stream(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory or .tar.gz.", show_default=False)
    ],
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            help="nats://HOST:4222 (JetStream), redis://HOST:6379 (Streams), "
            "amqp://USER:PASS@HOST:5672/ (RabbitMQ) or kafka://HOST:9092.",
            envvar="RTSERVE_STREAM_BROKER",
            show_default=False,
        ),
    ],
    in_subject: Annotated[
        str,
        typer.Option(
            "--in", help="Subject, stream or queue to read records from.", show_default=False
        ),
    ],
    out_subject: Annotated[
        str, typer.Option("--out", help="Where results go.", show_default=False)
    ],
    dead_letter: Annotated[
        str | None,
        typer.Option(
            "--dead-letter",
            help="Where invalid messages go, with their error [default: --out].",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Messages scored together, at most.")
    ] = 100,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms", min=0.001, help="How long a batch waits to fill, in milliseconds."
        ),
    ] = 20.0,
    group: Annotated[
        str,
        typer.Option(
            "--group",
            help="Consumer group (Redis, Kafka) or durable consumer (JetStream) that replicas "
            "share.",
        ),
    ] = "rtserve",
    key_field: Annotated[
        str | None,
        typer.Option(
            "--key-field",
            help="A record field copied to each result as its key (taken out of the record "
            "unless the schema has that field); the message's `key` header wins.",
            show_default=False,
        ),
    ] = None,
    redeliver_after_s: Annotated[
        float,
        typer.Option(
            "--redeliver-after-s",
            min=0.001,
            help="A message not acknowledged this long is delivered again (JetStream "
            "ack_wait, Redis claim idle time).",
        ),
    ] = 30.0,
    max_message_bytes: Annotated[
        int, typer.Option("--max-message-bytes", min=1, help="Larger messages are rejected.")
    ] = 1024 * 1024,
    trust_pickle: TrustPickle = False,
    pin_digest: PinDigest = None,
) -> None:
    """Score a stream of JSON records from NATS JetStream, Redis Streams, RabbitMQ or Kafka.

    Each message is one record (a JSON object), validated as the HTTP API validates an
    instance. Results {"request_id", "key", "model", "prediction"} go to --out; invalid messages
    {"request_id", "key", "model", "error": {"code", "field", "message"}, "input"} go to
    --dead-letter. A message is acknowledged only after its outcome is published (at least
    once): a redelivered message comes out again with the same request_id. SIGTERM drains and
    exits 0.

    Example:

        rtserve stream bundles/fraud-1 --broker nats://127.0.0.1:4222 --in tx --out tx.scores --dead-letter tx.rejects
    """
    from rtserve.deploy.stream import StreamConfig, redact
    from rtserve.deploy.stream_run import run
    from rtserve.engine.loader import load

    config = StreamConfig(
        broker_url=broker,
        in_subject=in_subject,
        out_subject=out_subject,
        dead_letter_subject=dead_letter,
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        max_message_bytes=max_message_bytes,
        redeliver_after_s=redeliver_after_s,
        group=group,
        key_field=key_field,
    )
    predictor = load(bundle, trust_pickle=trust_pickle, pinned_digest=pin_digest)

    def ready() -> None:
        print_note(
            f"scoring {in_subject!r} from {redact(broker)} with {predictor.name}:"
            f"{predictor.version} -> {out_subject!r}"
            + (f", rejects -> {dead_letter!r}" if dead_letter else "")
        )

    stats = asyncio.run(run(predictor, config, on_ready=ready))
    print_note(f"stopped: {stats.describe()}")


def register(app: typer.Typer) -> None:
    """Add ``stream`` to the root command."""
    app.command("stream")(stream)
