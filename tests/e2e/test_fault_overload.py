"""Overload: capacity C measured in the same run, then 2·C offered; admission control keeps the
goodput, keeps admitted requests fast, sheds the rest fast, and the server recovers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, free_port
from tests.e2e.openloop import client, offer, percentile

DELAY_S = 0.32  # per model call
THREADS = 8  # model calls at once: nominal capacity 25 requests/s
BODY = {"instances": [{"a": 0.1, "b": -0.4, "c": 1.2}]}
SETTINGS = {"batching": {"max_batch_size": 1}, "shedding": {"max_queue": 2}}
MAX_LAG_MS = 50.0  # the generator's own lateness beyond which a run is not a measurement


def start_slow_server(bundle: Path, log: Path, settings: dict[str, object]) -> ServerProcess:
    port = free_port()
    script = Path(__file__).with_name("slow_server.py")
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(bundle),
                str(port),
                str(DELAY_S),
                str(THREADS),
                json.dumps(settings),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, server.logs()
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"slow server not ready:\n{server.logs()}")


@pytest.fixture
def slow_server(e2e_bundles: tuple[Path, Path], tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_slow_server(e2e_bundles[1], tmp_path / "server.log", SETTINGS)
    yield server
    server.stop()


@pytest.mark.slow
def test_at_twice_capacity_goodput_holds_admitted_stay_fast_and_the_rest_is_shed_fast(
    slow_server: ServerProcess,
) -> None:
    url = f"{slow_server.url}/v1/models/dense:predict"

    async def scenario() -> dict[str, float]:
        async with client() as http:
            await offer(http, url, BODY, rate=10, seconds=1.5)  # warm-up
            probe_s = 4.0
            probe = await offer(http, url, BODY, rate=2.0 * THREADS / DELAY_S, seconds=probe_s)
            capacity = sum(r.status == 200 for r in probe) / probe_s
            normal = await offer(http, url, BODY, rate=0.7 * capacity, seconds=5)
            overload_s = 8.0
            overload = await offer(http, url, BODY, rate=2 * capacity, seconds=overload_s)
            stopped = time.monotonic()
            recovered_after = float("inf")
            p99_normal = percentile([r.latency for r in normal if r.status == 200], 99)
            while time.monotonic() - stopped < 15:
                (answer,) = await offer(http, url, BODY, rate=10, seconds=0.1)
                if answer.status == 200 and answer.latency <= 1.5 * p99_normal:
                    recovered_after = time.monotonic() - stopped
                    break
                await asyncio.sleep(0.1)
        lags = [r.lag for phase in (probe, normal, overload) for r in phase]
        admitted = [r.latency for r in overload if r.status == 200]
        shed = [r.latency for r in overload if r.status == 503]
        return {
            "capacity_rps": capacity,
            "offered_rps": 2 * capacity,
            "goodput_rps": len(admitted) / overload_s,
            "p99_normal_ms": p99_normal * 1000,
            "p99_admitted_overload_ms": percentile(admitted, 99) * 1000,
            "shed": len(shed),
            "shed_p50_ms": percentile(shed, 50) * 1000,
            "shed_p99_ms": percentile(shed, 99) * 1000,
            "other": sum(r.status not in (200, 503) for r in overload),
            "normal_failures": sum(r.status != 200 for r in normal),
            "recovered_after_s": recovered_after,
            "generator_lag_p99_ms": percentile(lags, 99) * 1000,
        }

    # A run is a measurement only if the generator kept its schedule: on a machine whose CPUs
    # are taken by other work neither client nor server gets to run, and the figures say nothing
    # about admission control. Such runs are repeated (at most 3 in all), never judged.
    for _attempt in range(3):
        figures = asyncio.run(scenario())
        print("\noverload figures:", json.dumps(figures, indent=1))
        if figures["generator_lag_p99_ms"] <= MAX_LAG_MS:
            break
    assert figures["generator_lag_p99_ms"] <= MAX_LAG_MS, "the machine is too busy to measure"
    assert figures["capacity_rps"] > 0.6 * THREADS / DELAY_S  # the server is not starved
    assert figures["normal_failures"] == 0
    assert figures["goodput_rps"] >= 0.9 * figures["capacity_rps"]
    assert figures["p99_admitted_overload_ms"] <= 2 * figures["p99_normal_ms"]
    assert figures["shed"] > 0
    # shed at once: typically far below one model call, and never queued behind one (the bound is
    # end to end, so it also absorbs the machine's other load on the client and server loops)
    assert figures["shed_p50_ms"] < 0.25 * DELAY_S * 1000
    assert figures["shed_p99_ms"] < DELAY_S * 1000
    assert figures["other"] == 0  # every request answered: 200 or 503
    assert figures["recovered_after_s"] <= 10
