"""The image `rtserve containerize` describes, built and run for real with podman.

Built offline (wheels fetched on the host, ``--no-index`` in the image) on a local bookworm base
(no registry is reachable here; see ``tests/e2e/podman_stack.py``), then run as it would be in a
pod: read-only root filesystem with tmpfs at /tmp and /var/lib/rtserve, a port published on
127.0.0.1 only, API keys from the environment. A warm cache (base image and wheelhouse under
``~/.cache/rtserve-tests``) leaves the build (45-90 s on vfs storage) as the bulk of the
time: 70 s to 2 minutes in all, 2 min 45 s with a cold cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

import rtserve
from rtserve.demo import example_record
from rtserve.deploy.container import find_project
from rtserve.deploy.plan import RUN_AS
from rtserve.guard.auth import hash_key
from rtserve.loadgen import Protocol, encode_bodies, rows_from_bundle
from rtserve.loadgen.launch import free_port
from tests.e2e.podman_stack import (
    Podman,
    TargetPython,
    base_image,
    cache_dir,
    cache_lock,
    export_requirements,
    wheelhouse,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.podman,
    pytest.mark.timeout(1200),  # a cold cache: mmdebstrap, wheel downloads, the build
]

API_KEY = "container-test-key"
DRAIN_S = 1.0
GRACEFUL_S = 10.0
#: `podman stop -t`: drain + graceful timeout + the server's 5 s watchdog margin, then SIGKILL.
STOP_GRACE_S = 20
PREDICT = "/v1/models/fraud:predict"
FIGURES: dict[str, object] = {}


@dataclass(frozen=True)
class Image:
    tag: str
    context: Path


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    startup_s: float


@pytest.fixture(scope="module")
def podman() -> Podman:
    return Podman.under(cache_dir())


@pytest.fixture(scope="module")
def image(
    podman: Podman, e2e_bundles: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Image]:
    """The fraud bundle's image, built offline from the cached local base; removed afterwards."""
    cache = cache_dir()
    with cache_lock(cache):
        base = base_image(podman, cache)
        target = TargetPython.of(podman, base.image)
        wheels, wheels_how, wheels_s = wheelhouse(
            cache, export_requirements(find_project()), target
        )
    context = tmp_path_factory.mktemp("image") / "context"
    started = time.perf_counter()
    written = subprocess.run(
        [sys.executable, "-m", "rtserve", "containerize", str(e2e_bundles[0]), "-o", str(context),
         "--wheelhouse", str(wheels)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    containerize_s = time.perf_counter() - started
    tag = f"localhost/rtserve-test-fraud:{time.time_ns()}"
    started = time.perf_counter()
    # --layers=false: on vfs every committed layer is a full copy; only the final image is kept.
    podman.run(
        "build", "--format", "docker", "--layers=false", "--force-rm", "--pull=never",
        "--network=none", "--build-arg", f"BASE_IMAGE={base.image}", "-t", tag, str(context),
        timeout=900,
    )  # fmt: skip
    FIGURES.update(
        base={"how": base.how, "seconds": round(base.seconds, 1)},
        base_python=target.markers["python_full_version"],
        wheelhouse={"how": wheels_how, "seconds": round(wheels_s, 1)},
        containerize_s=round(containerize_s, 1),
        build_s=round(time.perf_counter() - started, 1),
    )
    yield Image(tag, context)
    podman.run("rmi", "--force", tag, check=False)


def start(podman: Podman, image: Image, name: str) -> Container:
    """``podman run`` the image read-only, as a pod would, and wait until /readyz says 200."""
    port = free_port()
    keys = json.dumps([{"name": "tests", "sha256": hash_key(API_KEY), "roles": ["predict"]}])
    started = time.perf_counter()
    podman.run(
        "run", "--detach", "--name", name, "--read-only",
        "--tmpfs", "/tmp", "--tmpfs", "/var/lib/rtserve",
        "--publish", f"127.0.0.1:{port}:8080",
        "--env", f"RTSERVE_AUTH__API_KEYS={keys}",
        "--env", f"RTSERVE_SERVER__DRAIN_DELAY_S={DRAIN_S}",
        "--env", f"RTSERVE_SERVER__GRACEFUL_TIMEOUT_S={GRACEFUL_S}",
        image.tag,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = started + 120
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Container(name, url, time.perf_counter() - started)
        except httpx.TransportError:
            pass
        state = podman.run("inspect", name, "--format", "{{.State.Status}}").stdout.strip()
        assert state == "running", podman.run("logs", name, check=False).stdout
        time.sleep(0.1)
    raise AssertionError(f"not ready after 120 s:\n{podman.run('logs', name).stdout}")


@pytest.fixture(scope="module")
def served(podman: Podman, image: Image) -> Iterator[Container]:
    name = f"rtserve-test-{time.time_ns()}"
    try:
        container = start(podman, image, name)
        FIGURES["startup_to_ready_s"] = round(container.startup_s, 2)
        yield container
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def sh(podman: Podman, container: Container, script: str, *, user: str | None = None) -> str:
    """Run a shell line in the container; its exit status and output, for the assertions."""
    as_user = ["--user", user] if user else []
    done = podman.run("exec", *as_user, container.name, "sh", "-c", script, check=False)
    return f"{done.returncode} {done.stdout}{done.stderr}".strip()


def test_the_image_is_built_offline_on_the_local_base_and_declares_a_non_root_user(
    podman: Podman, image: Image, e2e_bundles: tuple[Path, Path]
) -> None:
    facts = json.loads(podman.run("image", "inspect", image.tag).stdout)[0]
    config = facts["Config"]
    FIGURES["image_mb"] = round(facts["Size"] / 1e6)
    print("\ncontainer image figures:", json.dumps(FIGURES, indent=1))
    assert config["User"] == f"{RUN_AS}:{RUN_AS}"
    assert config["Entrypoint"] == ["rtserve", "serve"]
    assert facts["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    digest = rtserve.load(e2e_bundles[0]).digest
    assert json.loads(config["Labels"]["io.rtserve.models"]) == {"fraud": f"fraud:1@{digest}"}
    assert "--no-index" in (image.context / "Dockerfile").read_text()  # nothing from the network


def test_read_only_it_answers_readyz_and_predictions_as_uid_10001_with_api_keys(
    podman: Podman, served: Container, e2e_bundles: tuple[Path, Path]
) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.get("/readyz").json() == {"ready": True}
        body = {"instances": [example_record()]}
        assert http.post(PREDICT, json=body).status_code == 401
        answer = http.post(PREDICT, json=body, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200, answer.text
    expected = rtserve.load(e2e_bundles[0]).predict([example_record()])
    probabilities = answer.json()["predictions"][0]["probabilities"]
    np.testing.assert_allclose(
        [probabilities["0"], probabilities["1"]], expected.probabilities[0], atol=1e-6
    )
    status = sh(podman, served, "grep -E '^(Uid|Gid):' /proc/1/status")  # PID 1: the server
    assert status.split() == ["0", "Uid:", *[str(RUN_AS)] * 4, "Gid:", *[str(RUN_AS)] * 4]
    assert podman.run("healthcheck", "run", served.name, check=False).returncode == 0


def test_it_cannot_write_its_bundles_code_or_settings_only_its_tmpfs_mounts(
    podman: Podman, served: Container
) -> None:
    for path in ("/models/fraud-1", "/opt/rtserve", "/etc/rtserve", "/"):
        assert sh(podman, served, f"touch {path}/x").startswith("1 "), path
        # the file system itself is read-only: not even root may write
        assert "Read-only file system" in sh(podman, served, f"touch {path}/x", user="0"), path
    for path in ("/tmp", "/var/lib/rtserve"):
        assert sh(podman, served, f"touch {path}/x && echo ok") == "0 ok", path
    # the decision log lives on the /var/lib/rtserve tmpfs (a prediction was made above)
    segments = sh(podman, served, "ls /var/lib/rtserve/decisions")
    assert segments.startswith("0 decisions-"), segments


@dataclass(frozen=True)
class Outcome:
    request_id: str
    ended: float  # time.monotonic()
    status: int | str  # HTTP status, or how the connection failed


def hammer(url: str, bodies: list[bytes], threads: int, stop: threading.Event) -> list[Outcome]:
    """``threads`` clients sending predictions back to back, one connection per request (after
    the listener closes, a new request is refused outright), until ``stop`` is set."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=url, timeout=30, limits=limits) as http:
            sent = 0
            while not stop.is_set():
                request_id = f"t{index}-{sent}"
                sent += 1
                headers = {"X-API-Key": API_KEY, "X-Request-ID": request_id,
                           "Content-Type": "application/json"}  # fmt: skip
                status: int | str
                try:
                    body = bodies[sent % len(bodies)]
                    status = http.post(PREDICT, content=body, headers=headers).status_code
                except httpx.ConnectError:
                    status = "refused"  # nothing listens: never reached the server
                except httpx.RemoteProtocolError:
                    status = "closed"  # before a complete response
                except httpx.ReadError:
                    status = "reset"
                except httpx.TimeoutException:
                    status = "timeout"
                with lock:
                    outcomes.append(Outcome(request_id, time.monotonic(), status))
                if isinstance(status, str):
                    time.sleep(0.01)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def readiness_until_exit(url: str, stopping: subprocess.Popen[str]) -> list[int | str]:
    """What ``/readyz`` answered, polled from ``podman stop`` until it returns, with repeats
    collapsed: e.g. ``[200, 503, "ConnectError"]``. Polled rather than probed once, because when
    the signal reaches the server after ``podman stop`` starts depends on the machine's load."""
    seen: list[int | str] = []
    while stopping.poll() is None:
        try:
            answer: int | str = httpx.get(f"{url}/readyz", timeout=5).status_code
        except httpx.TransportError as exc:
            answer = type(exc).__name__
        if not seen or seen[-1] != answer:
            seen.append(answer)
        time.sleep(0.05)
    return seen


def answered_by_server(logs: str) -> dict[str, int]:
    """Request id -> status of every prediction the server's access log recorded (one JSON line
    per request, written when it ends, in a ``finally``: also for a request cut short)."""
    answered: dict[str, int] = {}
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == "rtserve.access" and record.get("path") == PREDICT:
            answered[record["request_id"]] = record["status"]
    return answered


def test_sigterm_under_load_exits_zero_within_the_grace_period_and_loses_no_accepted_request(
    podman: Podman, image: Image, e2e_bundles: tuple[Path, Path]
) -> None:
    name = f"rtserve-test-stop-{time.time_ns()}"
    try:
        container = start(podman, image, name)
        bodies = encode_bodies(rows_from_bundle(e2e_bundles[0]), Protocol.RECORDS, limit=64)
        stop = threading.Event()
        results: list[list[Outcome]] = []
        load = threading.Thread(
            target=lambda: results.append(hammer(container.url, bodies, 12, stop))
        )
        load.start()
        time.sleep(3.0)
        stopping = podman.popen("stop", "--time", str(STOP_GRACE_S), name)
        signalled = time.monotonic()
        readiness = readiness_until_exit(container.url, stopping)
        stop_output, _ = stopping.communicate(timeout=STOP_GRACE_S + 30)
        stopped_s = time.monotonic() - signalled
        time.sleep(1.0)  # the clients go on against the stopped container
        stop.set()
        load.join()
        state = json.loads(podman.run("inspect", name, "--format", "{{json .State}}").stdout)
        printed = podman.run("logs", name)  # the JSON log is the container's stderr
        logs = printed.stdout + printed.stderr
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)
    outcomes = results[0]
    by_client = {o.request_id: o.status for o in outcomes if isinstance(o.status, int)}
    by_server = answered_by_server(logs)
    failures = Counter(o.status for o in outcomes if isinstance(o.status, str))
    after_signal = Counter(o.status for o in outcomes if o.ended > signalled)
    FIGURES.update(
        stop_s=round(stopped_s, 2), startup_to_ready_s_second_run=round(container.startup_s, 2)
    )
    figures = {
        "requests": len(outcomes),
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "after_sigterm": {str(k): v for k, v in after_signal.items()},
        "server_logged": len(by_server),
        "exit_code": state["ExitCode"],
        "stop_s": round(stopped_s, 2),
        "readiness_after_sigterm": readiness,
    }
    print("\ncontainer sigterm figures:", json.dumps(figures, indent=1))
    print("container figures:", json.dumps(FIGURES, indent=1))
    assert stopping.returncode == 0, stop_output
    assert state["ExitCode"] == 0
    assert not state["OOMKilled"]
    assert stopped_s < STOP_GRACE_S  # SIGTERM sufficed; podman did not need SIGKILL
    # During the drain delay the server answers, but no longer as ready; only then does it close.
    assert 503 in readiness, readiness
    assert all(isinstance(seen, int) for seen in readiness[: readiness.index(503)]), readiness
    for overrun in ("timeout graceful shutdown exceeded", "graceful shutdown did not finish"):
        assert overrun not in logs, logs[-3000:]
    # Every request the server took was answered, and its answer reached its client; every
    # answer a client got, the server logged. What failed never reached the application.
    assert by_client == by_server
    assert set(by_client.values()) <= {200, 503}
    assert set(failures) <= {"refused", "closed", "reset"}
    assert after_signal[200] > 0  # served through the drain, under load
    assert after_signal["refused"] > 0  # and the load went on past the shutdown
