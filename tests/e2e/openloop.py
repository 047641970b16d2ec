"""A small open-loop (fixed-rate) load generator for the fault tests.

Requests are sent on a fixed schedule whatever the server does (a closed loop would slow down with
the server and hide overload). Each result records when it was sent, how long it took and how it
ended: an HTTP status, or ``refused`` (connection refused or closed before any response byte).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

REFUSED = -1  # no connection, or closed before the server sent anything
ERROR = -2  # anything else: a response cut off, a timeout


@dataclass(frozen=True)
class Result:
    sent: float  # monotonic seconds
    latency: float
    status: int  # HTTP status, REFUSED or ERROR
    lag: float = 0.0  # how late it was sent against the schedule (the generator's own delay)


async def offer(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], rate: float, seconds: float,
    headers: dict[str, str] | None = None,
) -> list[Result]:  # fmt: skip
    """Send ``rate`` requests per second for ``seconds``; wait for every answer."""
    start = time.monotonic()
    count = int(rate * seconds)
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(client, url, body, headers, start + i / rate)))
    return list(await asyncio.gather(*tasks))


async def _one(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    due: float,
) -> Result:
    sent = time.monotonic()
    try:
        response = await client.post(url, json=body, headers=headers)
        status = response.status_code
    except (httpx.ConnectError, httpx.RemoteProtocolError):
        status = REFUSED
    except httpx.HTTPError:
        status = ERROR
    return Result(sent, time.monotonic() - sent, status, max(0.0, sent - due))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def client(**limits: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1000, **limits))
