"""Stream scoring throughput per broker: messages/s through `rtserve stream`'s scorer.

For each of NATS JetStream, Redis Streams and RabbitMQ on 127.0.0.1, publishes N records of the
demo fraud model, then runs the stream scorer in-process (the same code as `rtserve stream`,
batch 100, wait 20 ms) and times from start until every result is published and acknowledged.

    uv run python bench/stream_throughput.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import rtserve
from rtserve.demo import card_transactions, fraud_pipeline
from rtserve.deploy.stream import StreamConfig, StreamStats
from rtserve.deploy.stream_run import run

BROKERS = {
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}


async def publish(kind: str, url: str, subject: str, bodies: list[bytes]) -> None:
    if kind == "nats":
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name=subject.upper(), subjects=[subject])
        for start in range(0, len(bodies), 500):
            await asyncio.gather(*(js.publish(subject, b) for b in bodies[start : start + 500]))
        await nc.close()
    elif kind == "redis":
        import redis.asyncio as redis

        client = redis.from_url(url)
        pipe = client.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(subject, {"data": body})
        await pipe.execute()
        await client.aclose()
    else:
        import aio_pika

        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.declare_queue(subject, durable=True)
        for start in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(b, message_id=uuid.uuid4().hex), routing_key=subject
                    )
                    for b in bodies[start : start + 500]
                )
            )
        await connection.close()


async def cleanup(kind: str, url: str, subjects: list[str]) -> None:
    if kind == "nats":
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        for subject in subjects:
            await js.delete_stream(subject.upper())
        await nc.close()
    elif kind == "redis":
        import redis.asyncio as redis

        client = redis.from_url(url)
        await client.delete(*subjects)
        await client.aclose()
    else:
        import aio_pika

        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        for subject in subjects:
            await channel.queue_delete(subject)
        await connection.close()


async def measure(kind: str, url: str, predictor: rtserve.Predictor, bodies: list[bytes]) -> float:
    suffix = uuid.uuid4().hex[:8]
    inp, out = f"bench-in-{suffix}", f"bench-out-{suffix}"
    await publish(kind, url, inp, bodies)
    stop = asyncio.Event()
    config = StreamConfig(broker_url=url, in_subject=inp, out_subject=out)
    started = time.perf_counter()
    stats = StreamStats()
    task = asyncio.create_task(run(predictor, config, stop=stop, stats=stats))
    while True:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
        if stats.consumed >= len(bodies):  # published and acknowledged
            break
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await cleanup(kind, url, [inp, out])
    return len(bodies) / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    frame, labels = card_transactions(2_000)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "fraud-1"
        rtserve.build(fraud_pipeline().fit(frame, labels), frame, name="fraud", version="1").save(
            bundle
        )
        predictor = rtserve.load(bundle)
        rows = json.loads(frame.to_json(orient="records"))
        bodies = [json.dumps(rows[i % len(rows)]).encode() for i in range(n)]
        print(f"{n} messages, batch 100, max wait 20 ms, demo fraud model (one process)")
        for kind, url in BROKERS.items():
            rate = asyncio.run(measure(kind, url, predictor, bodies))
            print(f"{kind:9s} {rate:10,.0f} messages/s")


if __name__ == "__main__":
    main()
