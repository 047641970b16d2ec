"""SIGTERM under sustained load: readiness drops at once, accepted requests all complete, exit 0."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.openloop import REFUSED, client, offer
from tests.e2e.test_fault_overload import BODY, DELAY_S, THREADS, start_slow_server

GRACE_S = 10.0
DRAIN_S = 1.0


@pytest.mark.slow
def test_sigterm_under_load_loses_no_accepted_request_and_exits_zero(
    e2e_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = {
        "server": {"graceful_timeout_s": GRACE_S, "drain_delay_s": DRAIN_S},
        "shedding": {"max_queue": 64},
    }
    server = start_slow_server(e2e_bundles[1], tmp_path / "server.log", settings)
    url = f"{server.url}/v1/models/dense:predict"
    rate = 0.8 * THREADS / DELAY_S  # sustained load near capacity: always some queued and in flight
    readiness: list[int] = []

    async def scenario() -> tuple[list, float]:
        # no keep-alive: after the listening socket closes, a new request is refused outright
        async with client(max_keepalive_connections=0) as http:
            load = asyncio.create_task(offer(http, url, BODY, rate=rate, seconds=6))
            await asyncio.sleep(2.5)
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.1)
            try:
                readiness.append((await http.get(f"{server.url}/v2/health/ready")).status_code)
            except httpx.TransportError:
                readiness.append(REFUSED)
            results = await load
        return results, signalled

    results, signalled = asyncio.run(scenario())
    code = server.process.wait(timeout=GRACE_S + DRAIN_S + 10)
    exited_after = time.monotonic() - signalled
    outcomes = Counter(r.status for r in results)
    match = re.search(r"accepted=(\d+) completed=(\d+)", server.logs())
    assert match, server.logs()
    accepted, completed = int(match[1]), int(match[2])
    figures = {
        "requests": len(results),
        "outcomes": {str(k): v for k, v in outcomes.items()},
        "server_accepted": accepted,
        "server_completed": completed,
        "lost": accepted - completed,
        "exit_code": code,
        "exit_after_sigterm_s": round(exited_after, 2),
        "readiness_after_sigterm": readiness,
    }
    print("\nsigterm figures:", json.dumps(figures, indent=1))
    assert code == 0
    assert readiness == [503]  # still serving during the drain delay, but no longer ready
    assert accepted == completed  # zero accepted requests lost
    assert set(outcomes) <= {200, 503, REFUSED}  # completed, or refused before acceptance
    assert outcomes[200] == completed  # every accepted request's answer reached its client
    assert outcomes[REFUSED] > 0  # the load went on past the shutdown
    assert exited_after < DRAIN_S + GRACE_S
