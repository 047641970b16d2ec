"""A real ``rtserve serve --registry`` under load while production moves: no request fails.

The servers follow ``dense@production`` with a short poll interval; the tests promote, roll
back and promote broken versions through the registry's Python API (what the CLI calls) while
32 client threads keep predicting, and check every answer against the timeline of moves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rtserve.registry import Registry
from tests.e2e.conftest import ServerProcess, start_server
from tests.e2e.openloop import ERROR, REFUSED, percentile
from tests.registry_support import (
    build_broken_version,
    build_version,
    open_registry,
    push,
    record,
    rollback,
    to_production,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POLL_S = 0.5
CLIENTS = 32
#: The load test's length; RTSERVE_SWAP_TEST_S shortens it on a slow machine.
DURATION_S = float(os.environ.get("RTSERVE_SWAP_TEST_S", "30"))
MOVES = 10
#: Poll interval + load and warm-up of a tiny model + scheduling slack on a loaded 2-core box.
SWITCH_BOUND_S = POLL_S + 3.0


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int  # HTTP status, REFUSED (never accepted) or ERROR (lost)
    version: str | None


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap-e2e")
    built = {v: build_version(root, v) for v in ("1", "2", "3", "4")}
    built["9"] = build_broken_version(root, "9")
    return built


def registry_with(tmp_path: Path, bundles: dict[str, Path]) -> tuple[Registry, Path]:
    directory = tmp_path / "registry"
    registry = open_registry(directory)
    for bundle in bundles.values():
        push(registry, bundle)
    to_production(registry, "1")
    return registry, directory


def serve(
    directory: Path, log: Path, poll_s: float = POLL_S, timeout: float = 90.0, **settings: object
) -> ServerProcess:
    """``rtserve serve --registry DIR dense@production`` with a settings file for the rest."""
    config = log.with_suffix(".yaml")
    config.write_text(json.dumps({"decision_log": {"enabled": False}, **settings}))
    args = ["--registry", str(directory), "dense@production", "--poll-interval", str(poll_s),
            "--config", str(config)]  # fmt: skip
    return start_server(args, log, timeout=timeout)


def drive(url: str, stop: threading.Event, answers: list[Answer]) -> list[threading.Thread]:
    """CLIENTS threads, each a closed loop of keep-alive predictions until ``stop``."""
    body = {"instances": [record()]}

    def loop() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.post(f"{url}/v1/models/dense:predict", json=body)
                    status = response.status_code
                    version = response.headers.get("rtserve-model-version")
                except (httpx.ConnectError, httpx.RemoteProtocolError):
                    status, version = REFUSED, None  # no response byte: never accepted
                except httpx.ReadError as exc:
                    # reset before any response byte: a connection still in the listen backlog
                    # or an idle keep-alive one closed at shutdown (the server's access log
                    # shows whether it had read the request)
                    status, version = REFUSED, f"{type(exc).__name__}: {exc}"
                except httpx.HTTPError as exc:
                    status, version = ERROR, f"{type(exc).__name__}: {exc}"  # cut off: lost
                answers.append(Answer(sent, time.monotonic(), status, version))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def peak_rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of ``pid`` in MiB (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status)[1])  # type: ignore[index]
    return rss / 1024, hwm / 1024


def production_at(timeline: list[tuple[float, str]], start: float, end: float) -> set[str]:
    """Versions that were production at some moment in [start, end]."""
    seen = set()
    for i, (moved, version) in enumerate(timeline):
        until = timeline[i + 1][0] if i + 1 < len(timeline) else float("inf")
        if moved <= end and until >= start:
            seen.add(version)
    return seen


def test_promotions_and_rollbacks_under_load_fail_no_request(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    registry, directory = registry_with(tmp_path, bundles)
    server = serve(directory, tmp_path / "server.log")
    pid = server.process.pid
    answers: list[Answer] = []
    stop = threading.Event()
    timeline: list[tuple[float, str]] = [(float("-inf"), "1")]
    steps: list[str | Callable[[], str]] = ["2", "3", "r", "4", "r", "3", "1", "r", "4", "r"]
    rss_before = peak_rss_mib(pid)
    try:
        threads = drive(server.url, stop, answers)
        gap = DURATION_S / (MOVES + 1)
        time.sleep(gap)
        for step in steps:
            if step == "r":
                version = rollback(registry)
            else:
                to_production(registry, str(step))
                version = str(step)
            timeline.append((time.monotonic(), version))
            time.sleep(gap)
        stop.set()
        for thread in threads:
            thread.join(60)
        rss_after = peak_rss_mib(pid)
    finally:
        stop.set()
        code = server.stop()
    assert code == 0, server.logs()[-3000:]
    outcomes = Counter(a.status for a in answers)
    assert outcomes == Counter({200: len(answers)}), outcomes  # 0 failed requests

    # Each answer's version was production at some point in the request's lifetime, allowing
    # for the server's lag behind the registry (the poll interval plus load and warm-up).
    late = [
        a
        for a in answers
        if a.version not in production_at(timeline, a.sent - SWITCH_BOUND_S, a.received)
    ]
    assert not late, late[:5]

    # After each move, the answers change to the new version within the bound.
    switch_delays = []
    for moved, version in timeline[1:]:
        first = min((a.received for a in answers if a.version == version and a.sent >= moved),
                    default=float("inf"))  # fmt: skip
        switch_delays.append(first - moved)
    assert max(switch_delays) <= SWITCH_BOUND_S, switch_delays

    windows = list(zip([m for m, _ in timeline[1:]], switch_delays, strict=True))
    in_swap = [any(m <= a.received and a.sent <= m + d for m, d in windows) for a in answers]
    during = [a.received - a.sent for a, s in zip(answers, in_swap, strict=True) if s]
    outside = [a.received - a.sent for a, s in zip(answers, in_swap, strict=True) if not s]
    figures = {
        "duration_s": DURATION_S,
        "clients": CLIENTS,
        "requests": len(answers),
        "moves": len(timeline) - 1,
        "requests_during_swaps": len(during),
        "p99_ms_during_swaps": round(1000 * percentile(during, 99), 1),
        "p99_ms_outside_swaps": round(1000 * percentile(outside, 99), 1),
        "switch_delay_s_max": round(max(switch_delays), 3),
        "switch_delay_s_median": round(sorted(switch_delays)[len(switch_delays) // 2], 3),
        "rss_mib_before": round(rss_before[0], 1),
        "rss_mib_after": round(rss_after[0], 1),
        "peak_rss_mib": round(rss_after[1], 1),
    }
    print("\nswap figures:", json.dumps(figures, indent=1))
    actions = Counter(e.action for e in registry.audit(subject="dense"))
    assert actions["swap"] == MOVES
    assert actions["unload"] == MOVES
    registry.close()


def test_a_broken_version_promoted_under_load_is_refused_and_fails_no_request(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    registry, directory = registry_with(tmp_path, bundles)
    server = serve(directory, tmp_path / "server.log")
    answers: list[Answer] = []
    stop = threading.Event()
    try:
        threads = drive(server.url, stop, answers)
        time.sleep(1.0)
        to_production(registry, "9")
        deadline = time.monotonic() + 20
        while not any(e.action == "warmup-failed" for e in registry.audit(subject="dense@9")):
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.1)
        time.sleep(2 * POLL_S)  # more polls: the refused version is not retried at each one
        stop.set()
        for thread in threads:
            thread.join(60)
        described = httpx.get(f"{server.url}/v1/models/dense").json()
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        stop.set()
        code = server.stop()
    assert code == 0
    assert Counter(a.status for a in answers) == Counter({200: len(answers)})
    assert {a.version for a in answers} == {"1"}  # the old version kept answering
    assert described["version"] == "1"
    assert described["last_swap"]["outcome"] == "warmup_failed"
    assert 'rtserve_model_swaps_total{model="dense",outcome="warmup_failed"} 1.0' in metrics
    assert [e.action for e in registry.audit(subject="dense@9")].count("warmup-failed") == 1
    registry.close()


def test_sigterm_during_a_swap_exits_zero_and_loses_no_accepted_request(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    registry, directory = registry_with(tmp_path, bundles)
    server = serve(directory, tmp_path / "server.log", poll_s=0.05)
    answers: list[Answer] = []
    stop = threading.Event()
    try:
        threads = drive(server.url, stop, answers)
        time.sleep(1.0)
        to_production(registry, "2")
        time.sleep(0.05)  # the next poll starts the swap: stop the server in the middle of it
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(60)
    finally:
        stop.set()
        server.stop()
    assert code == 0, server.logs()[-3000:]
    outcomes = Counter(a.status for a in answers)
    # every request the server accepted was answered; the rest were refused at the door
    errors = Counter(a.version for a in answers if a.status == ERROR)
    assert set(outcomes) <= {200, 503, REFUSED}, (outcomes, errors)
    # The server's access log has one line per request it read: every one of them answered,
    # and every answer reached its client.
    served = Counter(
        json.loads(line)["status"]
        for line in server.logs().splitlines()
        if '"path":"/v1/models/dense:predict"' in line
    )
    assert set(served) <= {200, 503}, served
    assert served[200] == outcomes[200] > 0, (served, outcomes)
    assert served[503] == outcomes[503]
    swapped = [e for e in registry.audit(subject="dense@2") if e.action in ("swap", "load")]
    print(
        f"\nsigterm during swap: client {dict(outcomes)}, server {dict(served)}, "
        f"swap audited: {bool(swapped)}"
    )
    registry.close()


def test_an_unsigned_version_is_never_served_when_signatures_are_required(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    from rtserve.bundle.signature import generate_key_pair

    registry, directory = registry_with(tmp_path, bundles)
    _private, public = generate_key_pair(tmp_path / "keys")
    log = tmp_path / "server.log"
    loading = {"require_signature": True, "trusted_keys": [str(public)]}
    with pytest.raises(AssertionError, match="not ready"):
        serve(directory, log, timeout=15, loading=loading)
    assert "unsigned" in log.read_text() or "signature" in log.read_text()
    refused = [e for e in registry.audit(subject="dense@1") if e.action == "refused-load"]
    assert refused
    assert "signature" in refused[0].reason.lower()
    registry.close()
