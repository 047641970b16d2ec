"""`rtserve replicas`: three `rtserve serve` processes behind Debian's nginx, under load.

One supervisor runs for the module. Closed-loop load at c=32 from rtserve's own load generator
(`rtserve bench`, a separate process) goes through nginx while a replica is killed with SIGKILL,
and again during a rolling restart of all three: no client may see a failed request. On a 2-core
machine the replicas, nginx and the load generator share the CPUs, so latency figures are what
they are; the failure count is what is asserted. p99 is printed for the whole run and, from
nginx's access log, for the requests answered while the fault lasted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from rtserve.demo import example_record
from rtserve.loadgen.launch import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.nginx, pytest.mark.timeout(600)]

REPLICAS = 3
CONCURRENCY = 32
KILL_RUN_S = 30
#: Three replicas restart one after another under load: ~36 s on a slow day of a 2-core machine.
ROLLING_RUN_S = 60
MAX_BODY = 64 * 1024
PREDICT = "/v1/models/fraud:predict"


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    url: str
    run_dir: Path
    bundle: Path

    def state(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "state.json").read_text())

    def access_log(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "logs" / "access.log").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def wait_for(self, condition: str, check: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.run_dir / "supervisor.log").read_text()
            state = self.state() if (self.run_dir / "state.json").exists() else None
            if state is not None and check(state):
                return state
            time.sleep(0.1)
        raise AssertionError(f"not {condition} after {timeout} s: {self.state()}")


def all_ready(state: dict[str, Any]) -> bool:
    return state["nginx_pid"] is not None and all(
        replica["state"] == "ready" for replica in state["replicas"]
    )


@pytest.fixture(scope="module")
def supervised(
    e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Supervised]:
    root = tmp_path_factory.mktemp("replicas")
    config = root / "rtserve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "limits": {"max_body_bytes": MAX_BODY},
                "decision_log": {"directory": str(root / "decisions")},
            }
        )
    )
    port = free_port()
    run_dir = root / "run"
    run_dir.mkdir()
    with (run_dir / "supervisor.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rtserve", "replicas", str(e2e_bundles[0]), "-n", str(REPLICAS),
             "--port", str(port), "--run-dir", str(run_dir), "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    supervised = Supervised(process, f"http://127.0.0.1:{port}", run_dir, e2e_bundles[0])
    try:
        started = time.monotonic()
        supervised.wait_for("all ready", all_ready)
        print(f"\nreplicas: 3 replicas and nginx ready in {time.monotonic() - started:.1f} s")
        yield supervised
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def bench(supervised: Supervised, seconds: int) -> subprocess.Popen[bytes]:
    """`rtserve bench URL -c 32 -d SECONDS --json` in its own process, no unmeasured warm-up."""
    return subprocess.Popen(
        [sys.executable, "-m", "rtserve", "bench", supervised.url, "--bundle",
         str(supervised.bundle), "-c", str(CONCURRENCY), "-d", str(seconds), "--warmup", "0",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def result_of(load: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    out, err = load.communicate(timeout=timeout)
    assert load.returncode == 0, err.decode()
    return json.loads(out)["result"]


def p99_between(records: list[dict[str, Any]], start: float, end: float) -> tuple[float, int]:
    """p99 (ms) of nginx's request times of predictions that ended between ``start`` and ``end``
    (wall-clock seconds), and how many there were."""
    times = [
        r["request_time"] * 1000
        for r in records
        if start <= r["msec"] <= end and PREDICT in r["request"]
    ]
    return (float(np.percentile(times, 99)) if times else float("nan")), len(times)


def test_requests_pass_through_nginx_round_robin_with_their_request_id_and_body_limit(
    supervised: Supervised,
) -> None:
    ports = {replica["port"] for replica in supervised.state()["replicas"]}
    with httpx.Client(base_url=supervised.url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        for n in range(2 * REPLICAS):
            answer = http.post(
                PREDICT, json={"instances": [example_record()]}, headers={"X-Request-ID": f"rr-{n}"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == f"rr-{n}"  # the replica got the client's id
        too_big = http.post(PREDICT, content=b"{" + b" " * MAX_BODY + b"}")
        assert too_big.status_code == 413  # nginx refuses it with rtserve's own limit
    time.sleep(0.2)  # nginx writes its access log line after the response
    logged = {
        r["request_id"]: r for r in supervised.access_log() if r["request_id"].startswith("rr-")
    }
    assert sorted(logged) == [f"rr-{n}" for n in range(2 * REPLICAS)]
    assert {int(r["upstream"].rsplit(":", 1)[1]) for r in logged.values()} == ports


def test_kill_9_of_a_replica_under_load_fails_no_request(supervised: Supervised) -> None:
    before = supervised.state()
    victim = before["replicas"][1]
    with bench(supervised, KILL_RUN_S) as load:  # reaped (its pipes closed) however this ends
        time.sleep(8)
        killed_at = time.time()
        os.kill(victim["pid"], signal.SIGKILL)
        after = supervised.wait_for(
            "restarted and back in rotation",
            lambda s: s["replicas"][1]["restarts"] == victim["restarts"] + 1 and all_ready(s)
            and s["generation"] >= before["generation"] + 2,
        )  # fmt: skip
        recovered_at = time.time()
        result = result_of(load, KILL_RUN_S + 60)
    records = supervised.access_log()
    p99_fault, during = p99_between(records, killed_at, recovered_at)
    dead = f"127.0.0.1:{victim['port']}"
    retried = [
        r for r in records if r["msec"] >= killed_at and r["upstream"].startswith(dead + ", ")
    ]
    figures = {
        "requests": result["sent"],
        "ok": result["ok"],
        "errors": result["errors"],
        "throughput_rps": result["throughput"],
        "p99_ms_whole_run": result["latency_ms"]["p99"],
        "p99_ms_from_kill_to_back_in_rotation": round(p99_fault, 1),
        "requests_from_kill_to_back_in_rotation": during,
        "kill_to_back_in_rotation_s": round(recovered_at - killed_at, 2),
        "retried_by_nginx_after_the_kill": len(retried),
    }
    print("\nreplicas kill -9 figures:", json.dumps(figures, indent=1))
    assert result["errors"] == {}
    assert result["ok"] == result["sent"] > 0
    assert after["replicas"][1]["pid"] != victim["pid"]
    assert retried  # the kill did hit requests, and nginx sent them to another replica


def test_a_rolling_restart_under_load_fails_no_request(supervised: Supervised) -> None:
    before = supervised.state()
    with bench(supervised, ROLLING_RUN_S) as load:  # reaped (its pipes closed) however this ends
        time.sleep(3)
        started_at = time.time()
        supervised.process.send_signal(signal.SIGHUP)
        after = supervised.wait_for(
            "done with the rolling restart",
            lambda s: s["rolling_restarts"] == before["rolling_restarts"] + 1 and all_ready(s),
            timeout=ROLLING_RUN_S,
        )
        done_at = time.time()
        finished_under_load = load.poll() is None
        result = result_of(load, ROLLING_RUN_S + 60)
    p99_fault, during = p99_between(supervised.access_log(), started_at, done_at)
    figures = {
        "requests": result["sent"],
        "ok": result["ok"],
        "errors": result["errors"],
        "throughput_rps": result["throughput"],
        "p99_ms_whole_run": result["latency_ms"]["p99"],
        "p99_ms_during_rolling_restart": round(p99_fault, 1),
        "requests_during_rolling_restart": during,
        "rolling_restart_s": after["last_rolling_restart_s"],
    }
    print("\nreplicas rolling restart figures:", json.dumps(figures, indent=1))
    assert finished_under_load  # the whole restart happened while the load ran
    assert result["errors"] == {}
    assert result["ok"] == result["sent"] > 0
    old_pids = {r["pid"] for r in before["replicas"]}
    assert not old_pids & {r["pid"] for r in after["replicas"]}  # every replica is a new process


def test_sigterm_stops_nginx_then_the_replicas_and_exits_zero(supervised: Supervised) -> None:
    state = supervised.state()
    pids = [state["nginx_pid"], *(r["pid"] for r in state["replicas"])]
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(timeout=60) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = (supervised.run_dir / "supervisor.log").read_text()
    assert "stopped nginx and 3 replicas" in log


def test_a_replica_that_cannot_start_fails_the_command_with_its_log(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    with (fraud_bundle_copy / "validation.json").open("a") as tampered:
        tampered.write(" ")  # the bundle's integrity check now fails when a replica loads it
    done = subprocess.run(
        [sys.executable, "-m", "rtserve", "replicas", str(fraud_bundle_copy), "-n", "2",
         "--port", str(free_port()), "--run-dir", str(tmp_path / "run"), "--ready-timeout", "15"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not ready after 15 s (--ready-timeout)" in done.stderr
    assert "the bundle was modified or corrupted" in done.stderr  # the replica's own words
    assert not (tmp_path / "run" / "nginx.pid").exists()  # nginx was never started
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert {replica["state"] for replica in state["replicas"]} == {"stopped"}
