"""A shadow never touches the primary: one that sleeps 200 ms per prediction, or one that fails
on every row, leaves production's latency within the noise of runs without shadows (measured in
one run, phases interleaved), and its copies are dropped and counted, never queued without bound."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from rtserve.engine.dataplane import DataPlane
from rtserve.rollout.spec import RolloutState, parse_spec
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.rollout_support import body, build_failing_version, build_versions, negative_record

pytestmark = pytest.mark.slow

CLIENTS, REQUESTS = 4, 250  # per phase: 1,000 requests


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shadow-bundles")
    built = build_versions(root, ("1", "2"))
    built["3"] = build_failing_version(root, "3")
    return built


def p99_ms(client: TestClient) -> float:
    """Production's p99 over one phase of concurrent requests (all must succeed)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = client.post("/v1/models/dense:predict", json=body(negative_record(rng)))
            mine.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            assert response.json()["model"]["version"] == "1"
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return float(np.percentile(latencies, 99) * 1000)


def shadows(plane: DataPlane, *versions: str) -> None:
    spec = parse_spec({"production": "1", "shadows": list(versions), "shadow_queue": 64},
                      model="dense")  # fmt: skip
    plane.rollouts.apply(spec, RolloutState())


def test_a_slow_or_failing_shadow_leaves_the_primary_p99_within_the_noise(
    tmp_path: Path, versions: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(yaml.safe_dump({"model": "dense", "production": "1"}))
    settings = Settings(
        bundles=[str(p) for p in versions.values()],
        rollout={"file": str(spec), "interval_s": 3600},  # phases below set the shadows
        decision_log={"directory": str(tmp_path / "decisions")},
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        plane: DataPlane = app.state.dataplane
        slow = plane.manager.get("dense", "2").predictor
        assert slow is not None
        predict = slow.runtime.predict

        def sleepy(columns: Any) -> Any:  # 200 ms per request (one row each), off the GIL
            time.sleep(0.2 * len(next(iter(columns.values()))))
            return predict(columns)

        monkeypatch.setattr(slow.runtime, "predict", sleepy)
        p99_ms(client)  # warm-up
        figures: dict[str, list[float]] = {"none": [], "slow": [], "failing": []}
        for _ in range(3):  # interleaved, so a drift of the machine's speed hits all phases
            for phase, shadowed in (("none", ()), ("slow", ("2",)), ("failing", ("3",))):
                shadows(plane, *shadowed)
                figures[phase].append(p99_ms(client))
        stats = {s["version"]: s for s in client.get("/v1/models/dense/rollout").json()["shadows"]}
        shadows(plane, "2", "3")  # both at once, for the counters below
        p99_ms(client)
        time.sleep(0.5)
        both = {s["version"]: s for s in client.get("/v1/models/dense/rollout").json()["shadows"]}
    print(f"\nproduction p99 (ms) by shadow phase, three interleaved rounds: {figures}")
    baseline = float(np.median(figures["none"]))
    for phase in ("slow", "failing"):
        # The median round (one round can meet a busy moment of the machine); a shadow on the
        # path would add its 200 ms to every request, far beyond this bound.
        assert float(np.median(figures[phase])) <= 2 * baseline + 5.0, (phase, figures)
    assert stats["3"]["errors"] > 0, stats  # the failing shadow failed, off the path
    # the slow shadow (5 requests/s) fell behind: its queue of 64 overflowed, copies dropped
    assert both["2"]["dropped"] > 800
    assert both["3"]["errors"] + both["3"]["dropped"] >= CLIENTS * REQUESTS - 64
