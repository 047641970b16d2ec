"""A real Prometheus server scrapes a running rtserve; several workers add up to one set of series."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rtserve.demo import card_transactions
from rtserve.observability.alerts import alert_rules_yaml
from rtserve.server.app import create_app
from rtserve.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    url: str, timeout: float = 90.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


@pytest.fixture
def rtserve_url(fraud_bundle: Path, tmp_path: Path) -> Iterator[str]:
    """rtserve on a free loopback port, served by uvicorn in a thread."""
    settings = Settings.load(
        bundles=[str(fraud_bundle)], decision_log={"directory": str(tmp_path / "decisions")}
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/readyz")
    yield url
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def prometheus(rtserve_url: str, tmp_path: Path) -> Iterator[str]:
    """The Debian `prometheus` binary scraping rtserve every second, with rtserve's alert rules."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (.ci/run installs the Debian package)"
    (tmp_path / "rules.yml").write_text(alert_rules_yaml())
    target = rtserve_url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: rtserve\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready", 60, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert reply["status"] == "success", reply
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


@pytest.mark.prometheus
def test_prometheus_scrapes_rtserve_and_answers_the_request_count(rtserve_url, prometheus):
    X, _ = card_transactions(5, seed=1)
    import json

    body = {"instances": json.loads(X.to_json(orient="records"))}
    for _ in range(7):
        assert httpx.post(f"{rtserve_url}/v1/models/fraud:predict", json=body).status_code == 200
    promql = 'sum(rtserve_requests_total{model="fraud",endpoint="predict",status="200"})'
    deadline = time.monotonic() + 60
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = query(prometheus, promql)
        if result and float(result[0]["value"][1]) == 7:
            break
        time.sleep(0.5)
    assert result, f"no series for {promql}"
    assert float(result[0]["value"][1]) == 7, result
    [up] = query(prometheus, 'up{job="rtserve"}')
    assert up["value"][1] == "1"
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert len(rules[0]["rules"]) == 8
    assert all(rule["health"] != "err" for rule in rules[0]["rules"])


def test_metrics_of_several_worker_processes_add_up(fraud_bundle, tmp_path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left over from an earlier run")
    port = free_port()
    env = {
        **os.environ,
        "RTSERVE_METRICS__MULTIPROCESS_DIR": str(shared),
        "RTSERVE_DECISION_LOG__DIRECTORY": str(tmp_path / "decisions"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "rtserve", "serve", str(fraud_bundle), "--workers", "2",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/readyz", 120, process)
        import json

        X, _ = card_transactions(2, seed=2)
        body = {"instances": json.loads(X.to_json(orient="records"))}
        for _ in range(40):  # a new connection each time, so both workers take requests
            assert httpx.post(f"{url}/v1/models/fraud:predict", json=body).status_code == 200

        def scrape() -> dict[str, float]:
            text = httpx.get(f"{url}/metrics").text
            lines = [line for line in text.splitlines() if not line.startswith("#")]
            found: dict[str, float] = {}
            for line in lines:
                name, _, number = line.rpartition(" ")
                found[name] = float(number)
            return found

        wanted = (
            'rtserve_requests_total{endpoint="predict",model="fraud",protocol="records",'
            'status="200",variant="",version="1"}'
        )
        deadline = time.monotonic() + 30
        seen: list[float] = []
        while time.monotonic() < deadline:
            snapshot = scrape()
            if snapshot.get("rtserve_worker_processes") == 2:
                seen.append(snapshot.get(wanted, 0.0))
                if len(seen) >= 6:
                    break
            time.sleep(0.2)
        # every scrape, whichever worker answers it, sees all 40
        assert seen[-6:] == [40.0] * 6, (seen, (tmp_path / "server.log").read_text()[-3000:])
        assert not (shared / "counter_999999.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        log.close()
        assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
