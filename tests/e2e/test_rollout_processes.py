"""Rollouts in real server processes: A/B keys sticky across workers and restarts, and a
failing canary rolled back under load without one failed request on production's share."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import start_server
from tests.rollout_support import (
    body,
    build_failing_version,
    build_versions,
    negative_record,
    positive_record,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout-e2e")
    built = build_versions(root, ("1", "2"))
    built["3"] = build_failing_version(root, "3")
    return built


def spec_file(tmp_path: Path, spec: dict[str, object]) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump({"model": "dense", **spec}))
    return path


def test_ab_keys_are_sticky_across_two_workers_and_a_restart(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    spec = spec_file(
        tmp_path,
        {"production": "1", "ab": {"key": "header:X-Customer", "split": {"1": 50, "2": 50}}},
    )
    args = [str(bundles["1"]), str(bundles["2"]), "--workers", "2", "--rollout", str(spec)]
    rng = random.Random(5)

    def assignments(url: str) -> dict[str, str]:
        seen: dict[str, str] = {}
        for round_ in range(2):
            for i in range(150):
                # a new connection per request: the kernel spreads them over both workers
                response = httpx.post(
                    f"{url}/v1/models/dense:predict",
                    json=body(positive_record(rng)),
                    headers={"X-Customer": f"customer-{i}", "Connection": "close"},
                )
                assert response.status_code == 200, response.text
                variant = response.json()["model"]["variant"]
                assert seen.setdefault(f"customer-{i}", variant) == variant, (round_, i)
        assert "rtserve_worker_processes 2.0" in httpx.get(f"{url}/metrics").text
        return seen

    server = start_server(args, tmp_path / "first.log")
    try:
        first = assignments(server.url)
    finally:
        assert server.stop() == 0
    server = start_server(args, tmp_path / "second.log")
    try:
        second = assignments(server.url)
    finally:
        server.stop()
    assert first == second
    assert set(Counter(first.values())) == {"ab:1", "ab:2"}


def test_a_failing_canary_is_rolled_back_under_load_without_failing_production_requests(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    spec = spec_file(tmp_path, {
        "production": "1", "canary": {"version": "3", "weight": 20}, "steps": [20, 50, 100],
        "dwell_s": 60, "gate": {"window_s": 60, "min_requests": 50, "max_p99_ratio": None,
                                "max_psi": None}})  # fmt: skip
    server = start_server(
        [str(bundles["1"]), str(bundles["3"]), "--rollout", str(spec)], tmp_path / "server.log"
    )
    outcomes: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                record = negative_record(rng) if rng.random() < 0.2 else positive_record(rng)
                response = http.post("/v1/models/dense:predict", json=body(record))
                variant = response.headers.get("rtserve-variant", "")
                with lock:
                    outcomes[(response.status_code, variant)] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            state = httpx.get(f"{server.url}/v1/models/dense/rollout").json()["state"]
            if state["status"] != "running":
                break
            time.sleep(0.2)
        time.sleep(2)  # production alone answers from here on
        stop.set()
        for thread in threads:
            thread.join()
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        stop.set()
        server.stop()
    assert state["status"] == "rolled_back", state
    assert state["weight"] == 0.0
    assert "error rate" in str(state["reason"])

    def failures(variant: str) -> float:
        """Server-side count of the variant's answers with a 5xx (a failed prediction, or the
        canary's circuit breaker refusing at once once it opened)."""
        pattern = (
            r'rtserve_requests_total\{endpoint="predict",model="dense",protocol="records",'
            rf'status="5\d\d",variant="{variant}",version="\d+"\}} (\S+)'
        )
        return sum(float(v) for v in re.findall(pattern, metrics))

    failed = sum(n for (code, _), n in outcomes.items() if code != 200)
    production_ok = sum(n for (code, v), n in outcomes.items() if code == 200 and v == "production")
    print(f"\nclient outcomes (status, variant): {dict(outcomes)}; decision: {state['reason']}")
    assert production_ok > 500
    assert failures("production") == 0
    assert failed == failures("canary") > 0  # every failure the clients saw was the canary's
    assert {v for (code, v) in outcomes if code != 200} == {"canary"}  # and said so
