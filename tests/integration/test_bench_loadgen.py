"""The load generator against a real scripted HTTP server on loopback.

The server runs its own event loop in a thread and answers each request as a test scripts it
(delay, status, closing the connection, stalling), and counts what it received, so the load
generator's counting, percentiles, error accounting and open-loop schedule can be checked
against what really happened on the wire.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from rtserve.errors import LoadTestError
from rtserve.loadgen import Endpoint, LoadSpec, Workload, encode_request, run_load
from rtserve.loadgen.launch import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Answer:
    """How the server answers one request."""

    status: int = 200
    delay: float = 0.0
    close: bool = False
    silent: bool = False  # never answer (the client must time out)


@dataclass
class ScriptedServer:
    """A loopback HTTP/1.1 server whose answers follow ``script(n, seconds_since_start)``."""

    script: Callable[[int, float], Answer] = lambda n, t: Answer()
    received: int = 0
    connections: int = 0
    started: float = field(default_factory=time.perf_counter)
    port: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                at = lower.find(b"content-length:")
                if at >= 0:
                    length = int(lower[at + 15 : lower.find(b"\r\n", at)])
                    await reader.readexactly(length)
                n = self.received
                self.received += 1
                answer = self.script(n, time.perf_counter() - self.started)
                if answer.silent:
                    await asyncio.sleep(3600)
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                body = b'{"ok":true}'
                extra = b"connection: close\r\n" if answer.close else b""
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s"
                    % (answer.status, len(body), extra, body)
                )
                await writer.drain()
                if answer.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workload(self) -> Workload:
        endpoint = Endpoint.from_url(self.url())
        return Workload(endpoint, (encode_request(endpoint, "/predict", b'{"instances":[{}]}'),))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        srv = await asyncio.start_server(scripted._handle, "127.0.0.1", 0)
        scripted.port = srv.sockets[0].getsockname()[1]
        stop.append(asyncio.Event())
        ready.set()
        await stop[0].wait()
        srv.close()
        for task in asyncio.all_tasks():  # handlers still sleeping on a silent answer
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield scripted
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)
    loop.close()


def test_a_closed_loop_sends_exactly_the_requested_count(server):
    result = run_load(
        server.workload(), LoadSpec(concurrency=8, duration_s=None, requests=500, warmup_s=0)
    )
    assert server.received == 500
    assert (result.sent, result.ok, result.errors) == (500, 500, {})
    assert server.connections == 8  # one keep-alive connection per worker


def test_warm_up_answers_are_sent_but_not_counted(server):
    result = run_load(
        server.workload(), LoadSpec(concurrency=2, duration_s=None, requests=100, warmup_s=0.3)
    )
    assert result.ok == 100
    assert server.received > 100


def test_percentiles_reflect_the_servers_delays(server):
    # One request in 20 takes 60 ms, the others 2 ms: p50 and p90 are fast, p99 is slow.
    server.script = lambda n, t: Answer(delay=0.06 if n % 20 == 19 else 0.002)
    result = run_load(
        server.workload(), LoadSpec(concurrency=1, duration_s=None, requests=200, warmup_s=0)
    )
    latency = result.latency_ms
    assert 2.0 <= latency.p50 < 20.0
    assert latency.p90 < 30.0
    assert 60.0 <= latency.p99 < 120.0
    assert 60.0 <= latency.max < 120.0


def test_errors_are_counted_by_status_and_kept_out_of_the_throughput(server):
    server.script = lambda n, t: Answer(status=503 if n % 4 == 0 else 404 if n % 7 == 0 else 200)
    result = run_load(
        server.workload(), LoadSpec(concurrency=1, duration_s=None, requests=280, warmup_s=0)
    )
    expected_503 = sum(1 for n in range(280) if n % 4 == 0)
    expected_404 = sum(1 for n in range(280) if n % 4 != 0 and n % 7 == 0)
    assert result.errors == {"404": expected_404, "503": expected_503}
    assert result.ok == 280 - expected_503 - expected_404
    assert result.throughput == pytest.approx(result.ok / result.elapsed_s)


def test_a_server_that_closes_each_connection_is_reconnected_to(server):
    server.script = lambda n, t: Answer(close=True)
    result = run_load(
        server.workload(), LoadSpec(concurrency=2, duration_s=None, requests=50, warmup_s=0)
    )
    assert (result.ok, result.errors) == (50, {})
    assert server.connections >= 49


def test_requests_that_get_no_answer_time_out_and_the_run_goes_on(server):
    server.script = lambda n, t: Answer(silent=n in (3, 4))
    result = run_load(
        server.workload(),
        LoadSpec(concurrency=2, duration_s=None, requests=20, warmup_s=0, timeout_s=0.3),
    )
    assert result.errors == {"timeout": 2}
    assert result.ok == 18


def test_an_open_loop_keeps_its_schedule_while_the_server_stalls(server):
    # 200 requests/s for 1.5 s; the server holds every answer due between 0.3 s and 0.8 s until
    # 0.8 s. Only 8 connections: requests due meanwhile wait in the client, and still count from
    # their scheduled time.
    def script(n: int, t: float) -> Answer:
        return Answer(delay=max(0.0, stall_end - t) if t >= stall_start else 0.0)

    stall_start = stall_end = 1e9
    server.script = script
    workload = server.workload()
    spec = LoadSpec(concurrency=8, rate=200.0, duration_s=1.5, warmup_s=0)
    server.started = time.perf_counter()
    stall_start, stall_end = 0.3, 0.8
    result = run_load(workload, spec)
    assert result.sent == 300  # rate x duration, stall or not
    assert result.ok == 300
    assert server.received == 300
    assert result.late > 50  # waited in the client for a free connection
    # ~100 requests were due during the 0.5 s stall: over a quarter of all waited ≥ 100 ms.
    assert result.latency_ms.p90 >= 100.0
    assert result.latency_ms.max >= 400.0


def test_a_closed_loop_hides_the_same_stall_in_fewer_sends(server):
    # The contrast that motivates the open loop: at c=1 one request sees the stall, and the
    # loop simply sends less.
    server.script = lambda n, t: Answer(delay=0.5 if n == 10 else 0.005)
    result = run_load(server.workload(), LoadSpec(concurrency=1, duration_s=1.0, warmup_s=0))
    assert result.latency_ms.p90 < 50.0
    assert result.sent < 200


def test_open_loop_latency_includes_waiting_for_a_connection(server):
    # One connection, 10 ms answers, 200 requests/s: the client cannot keep up, so latency
    # grows with the queue instead of staying at 10 ms.
    server.script = lambda n, t: Answer(delay=0.01)
    result = run_load(
        server.workload(), LoadSpec(concurrency=1, rate=200.0, duration_s=0.5, warmup_s=0)
    )
    assert result.sent == 100
    assert result.latency_ms.max > 200.0


def test_several_client_processes_add_up(server):
    result = run_load(
        server.workload(),
        LoadSpec(concurrency=4, duration_s=None, requests=400, warmup_s=0, processes=2),
    )
    assert (result.ok, result.processes) == (400, 2)
    assert server.received == 400


def test_a_target_that_refuses_connections_is_a_load_test_error():
    endpoint = Endpoint("127.0.0.1", free_port())
    workload = Workload(endpoint, (encode_request(endpoint, "/"),))
    with pytest.raises(LoadTestError, match=r"cannot connect to http://127\.0\.0\.1"):
        run_load(workload, LoadSpec(concurrency=1, duration_s=None, requests=1, warmup_s=0))
