"""`rtserve stream` against the real brokers on this machine, with a consumer killed halfway.

For each broker: 10,000 messages go in (some invalid), a real `rtserve stream` process scores
them and is killed with SIGKILL after the first results appear, a second process takes over, and
every input message must come out (as a result or a rejection) under its request id: nothing is
lost, duplicates are allowed (at least once) and recognised by that id.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rtserve
from tests.conftest import make_transactions

N_MESSAGES = 10_000
#: Every 40th message is invalid, in one of three ways (250 rejects).
INVALID_EVERY = 40


@dataclass
class Inputs:
    """The messages sent: body per message, which ones are invalid and why."""

    bodies: list[bytes]
    invalid: dict[int, str] = field(default_factory=dict)  # index -> expected error code


def make_inputs() -> Inputs:
    rows = make_transactions(200, seed=5).to_dict("records")
    bodies: list[bytes] = []
    inputs = Inputs(bodies)
    for i in range(N_MESSAGES):
        record = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in rows[i % len(rows)].items()
        }
        record["card_present"] = bool(record["card_present"])
        record["tx_id"] = f"tx-{i}"
        if i % INVALID_EVERY == 0:
            kind = (i // INVALID_EVERY) % 3
            if kind == 0:
                record["amount"] = "a lot"
                inputs.invalid[i] = "validation_failed"
            elif kind == 1:
                bodies.append(b'{"amount": 3,')
                inputs.invalid[i] = "malformed_request"
                continue
            else:
                bodies.append(b"[1, 2, 3]")
                inputs.invalid[i] = "malformed_request"
                continue
        bodies.append(json.dumps(record).encode())
    return inputs


class Broker:
    """One broker under test: send the inputs, read every output so far, clean up."""

    url: str

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.inp, self.out, self.dead = f"rt-in-{suffix}", f"rt-out-{suffix}", f"rt-dl-{suffix}"

    async def send(self, bodies: list[bytes]) -> list[str]:
        """Publish every body; the request id each will come back with."""
        raise NotImplementedError

    async def read(self, subject: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def cleanup(self) -> None:
        raise NotImplementedError


class Nats(Broker):
    url = "nats://127.0.0.1:4222"

    async def send(self, bodies: list[bytes]) -> list[str]:
        import nats

        nc = await nats.connect(self.url)
        js = nc.jetstream()
        for name in (self.inp, self.out, self.dead):
            await js.add_stream(name=name.upper().replace("-", "_"), subjects=[name])
        ids = [f"m-{i}" for i in range(len(bodies))]
        for start in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    js.publish(self.inp, bodies[i], headers={"Nats-Msg-Id": ids[i]})
                    for i in range(start, min(start + 500, len(bodies)))
                )
            )
        await nc.close()
        return ids

    async def read(self, subject: str) -> list[dict[str, Any]]:
        import nats

        nc = await nats.connect(self.url)
        js = nc.jetstream()
        stream = subject.upper().replace("-", "_")
        info = await js.stream_info(stream)
        out: list[dict[str, Any]] = []
        if info.state.messages:
            sub = await js.pull_subscribe(subject, stream=stream)
            while len(out) < info.state.messages:
                for msg in await sub.fetch(1000, timeout=5):
                    out.append(json.loads(msg.data))
                    await msg.ack()
            await sub.unsubscribe()
        await nc.close()
        return out

    async def cleanup(self) -> None:
        import nats

        nc = await nats.connect(self.url)
        js = nc.jetstream()
        for name in (self.inp, self.out, self.dead):
            await js.delete_stream(name.upper().replace("-", "_"))
        await nc.close()


class Redis(Broker):
    url = "redis://127.0.0.1:6379"

    async def send(self, bodies: list[bytes]) -> list[str]:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        ids: list[str] = []
        for start in range(0, len(bodies), 1000):
            pipe = client.pipeline(transaction=False)
            for body in bodies[start : start + 1000]:
                pipe.xadd(self.inp, {"data": body})  # a plain entry: the request id is its id
            ids.extend(entry.decode() for entry in await pipe.execute())
        await client.aclose()
        return ids

    async def read(self, subject: str) -> list[dict[str, Any]]:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        entries = await client.xrange(subject)
        await client.aclose()
        return [json.loads(fields[b"data"]) for _, fields in entries]

    async def cleanup(self) -> None:
        import redis.asyncio as redis

        client = redis.from_url(self.url)
        await client.delete(self.inp, self.out, self.dead)
        await client.aclose()


class Rabbit(Broker):
    url = "amqp://guest:guest@127.0.0.1:5672/"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[dict[str, Any]]] = {self.out: [], self.dead: []}

    async def send(self, bodies: list[bytes]) -> list[str]:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        channel = await connection.channel()
        await channel.declare_queue(self.inp, durable=True)
        ids = [f"m-{i}" for i in range(len(bodies))]
        for start in range(0, len(bodies), 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            bodies[i],
                            message_id=ids[i],
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=self.inp,
                    )
                    for i in range(start, min(start + 500, len(bodies)))
                )
            )
        await connection.close()
        return ids

    async def read(self, subject: str) -> list[dict[str, Any]]:
        """Queues are drained as read: what was read before is kept here."""
        import aio_pika

        connection = await aio_pika.connect(self.url)
        channel = await connection.channel()
        queue = await channel.declare_queue(subject, durable=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            self.seen[subject].append(json.loads(message.body))
        await connection.close()
        return list(self.seen[subject])

    async def cleanup(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        channel = await connection.channel()
        for name in (self.inp, self.out, self.dead):
            await channel.queue_delete(name)
        await connection.close()


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    return make_inputs()


def _start(broker: Broker, bundle: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [
        "stream",
        str(bundle),
        "--broker",
        broker.url,
        "--in",
        broker.inp,
        "--out",
        broker.out,
        "--dead-letter",
        broker.dead,
        "--key-field",
        "tx_id",
        "--redeliver-after-s",
        "2",
    ]
    with log.open("ab") as handle:
        return subprocess.Popen(
            _command(args),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "rtserve", *args]


def _ids(outputs: list[dict[str, Any]]) -> set[str]:
    return {o["request_id"] for o in outputs}


def _wait_for(
    check: Callable[[], Awaitable[bool]],
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(check()):
            return
        if process.poll() is not None:
            raise AssertionError(
                f"rtserve stream exited with {process.returncode}:\n{log.read_text()}"
            )
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(
    "make_broker",
    [
        pytest.param(Nats, marks=pytest.mark.nats, id="nats-jetstream"),
        pytest.param(Redis, marks=pytest.mark.redis, id="redis-streams"),
        pytest.param(Rabbit, marks=pytest.mark.rabbitmq, id="rabbitmq"),
    ],
)
def test_every_message_comes_out_once_or_more_when_a_consumer_is_killed_halfway(
    make_broker: Callable[[], Broker],
    inputs: Inputs,
    fraud_bundle_dir: Path,
    fraud_predictor: rtserve.Predictor,
    tmp_path: Path,
) -> None:
    broker = make_broker()
    log = tmp_path / "stream.log"
    ids = asyncio.run(broker.send(inputs.bodies))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = _start(broker, fraud_bundle_dir, log)
        processes.append(first)

        async def some_results() -> bool:
            return len(await broker.read(broker.out)) >= 1000

        _wait_for(some_results, first, log, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        done_before_kill = len(_ids(asyncio.run(broker.read(broker.out))))
        assert done_before_kill < N_MESSAGES - len(inputs.invalid), "killed too late to test"

        second = _start(broker, fraud_bundle_dir, log)
        processes.append(second)

        async def all_out() -> bool:
            seen = _ids(await broker.read(broker.out)) | _ids(await broker.read(broker.dead))
            return len(seen) >= N_MESSAGES

        _wait_for(all_out, second, log, timeout=90)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, log.read_text()

        results = asyncio.run(broker.read(broker.out))
        rejects = asyncio.run(broker.read(broker.dead))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        asyncio.run(broker.cleanup())

    invalid_ids = {ids[i] for i in inputs.invalid}
    assert _ids(results) | _ids(rejects) == set(ids), "a message was lost"
    assert _ids(rejects) == invalid_ids
    assert _ids(results) == set(ids) - invalid_ids
    codes = {r["request_id"]: r["error"]["code"] for r in rejects}
    assert codes == {ids[i]: code for i, code in inputs.invalid.items()}
    # Results carry the model, the input's key and the same prediction as in-process.
    by_id = {r["request_id"]: r for r in results}
    position = {request_id: i for i, request_id in enumerate(ids)}
    for request_id in sorted(by_id)[:200]:
        result, i = by_id[request_id], position[request_id]
        assert result["model"] == {"name": "fraud", "version": "1"}
        assert result["key"] == f"tx-{i}"
        record = json.loads(inputs.bodies[i])
        record.pop("tx_id")
        expected = fraud_predictor.predict([record]).to_records()[0]
        assert result["prediction"]["label"] == expected["label"]
        assert result["prediction"]["probabilities"] == pytest.approx(expected["probabilities"])
    bad_value = next(r for r in rejects if r["error"]["code"] == "validation_failed")
    assert bad_value["error"]["field"] == "amount"
    assert "a lot" in bad_value["error"]["message"]
    assert bad_value["key"] is not None
