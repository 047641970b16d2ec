"""Rollouts in the request path, in-process: canary shares, pinned versions, shadows compared
and reported, and a canary walked step by step to production by the gate."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from rtserve.engine import rollout_control
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.rollout_support import body, build_flipped_version, build_versions, positive_record

NO_TIMING_CHECKS = {"max_p99_ratio": None, "max_psi": None}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout-bundles")
    built = build_versions(root, ("1", "2", "4"))
    built["3"] = build_flipped_version(root, "3")  # disagrees with the others on every row
    return built


def serving(
    tmp_path: Path, versions: dict[str, Path], spec: dict[str, Any], **extra: Any
) -> TestClient:
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump({"model": "dense", **spec}))
    settings = Settings(
        bundles=[str(versions[v]) for v in ("1", "2", "4")],
        rollout={"file": str(path), "interval_s": 0.1},
        decision_log={"directory": str(tmp_path / "decisions")},
        **extra,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(11)


def test_a_ten_percent_canary_gets_ten_percent_of_5000_requests_and_says_so_everywhere(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "canary": {"version": "2", "weight": 10}, "gate": NO_TIMING_CHECKS}
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)
        seen: Counter[tuple[str, str, str]] = Counter()
        for _ in range(5000):
            response = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
            assert response.status_code == 200, response.text
            model = response.json()["model"]
            seen[(model["version"], model["variant"], response.headers["rtserve-variant"])] += 1
        metrics = client.get("/metrics").text
    print(f"\n10% canary over 5,000 requests: {dict(seen)}")
    assert set(seen) == {("1", "production", "production"), ("2", "canary", "canary")}
    assert abs(seen[("2", "canary", "canary")] / 5000 - 0.10) <= 0.02
    assert (
        'rtserve_requests_total{endpoint="predict",model="dense",protocol="records",'
        f'status="200",variant="canary",version="2"}} {float(seen[("2", "canary", "canary")])}'
    ) in metrics
    lines = [line for f in (tmp_path / "decisions").rglob("*.jsonl*") for line in
             f.read_text().splitlines()]  # fmt: skip
    logged = Counter(json.loads(line)["variant"] for line in lines)
    assert logged == {"production": seen[("1", "production", "production")],
                      "canary": seen[("2", "canary", "canary")]}  # fmt: skip


def test_the_server_is_not_ready_until_its_rollout_is_applied(
    tmp_path: Path,
    versions: dict[str, Path],
    rng: random.Random,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The models load first, the rollout is applied after: until it is, readiness says no, so
    no request reaches a version the split would not have sent it to."""
    applying, release = threading.Event(), threading.Event()
    apply_now = rollout_control.start_rollouts

    def apply_when_released(*args: Any, **kwargs: Any) -> Any:
        applying.set()
        release.wait(30)
        return apply_now(*args, **kwargs)

    monkeypatch.setattr(rollout_control, "start_rollouts", apply_when_released)
    spec = {"production": "1", "canary": {"version": "2", "weight": 10}, "gate": NO_TIMING_CHECKS}
    with serving(tmp_path, versions, spec) as client:
        assert applying.wait(60), "the models did not load"
        time.sleep(0.2)  # every bundle is loaded now; only the rollout is still to come
        assert client.get("/v2/health/ready").status_code == 503
        release.set()
        wait_ready(client)
        response = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
        assert response.status_code == 200, response.text
        assert response.json()["model"]["variant"] in {"production", "canary"}


def test_a_pinned_version_bypasses_the_split(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "canary": {"version": "2", "weight": 50}, "gate": NO_TIMING_CHECKS}
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)
        for _ in range(50):
            response = client.post(
                "/v1/models/dense/versions/4:predict", json=body(positive_record(rng))
            )
            assert response.json()["model"] == {
                "name": "dense",
                "version": "4",
                "variant": "pinned",
            }
        v2 = client.post(
            "/v2/models/dense/versions/1/infer",
            json={
                "inputs": [
                    {"name": c, "shape": [1], "datatype": "FP64", "data": [0.5]}
                    for c in ("a", "b", "c")
                ]
            },
        )
    assert v2.status_code == 200, v2.text
    assert v2.json()["parameters"] == {"variant": "pinned"}
    assert v2.headers["rtserve-variant"] == "pinned"


def test_an_ab_split_keyed_by_a_header_is_sticky_and_requests_without_the_key_get_production(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "ab": {"key": "header:X-Customer", "split": {"1": 50, "2": 50}},
            "gate": NO_TIMING_CHECKS}  # fmt: skip
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)

        def version_for(customer: str) -> str:
            response = client.post("/v1/models/dense:predict", json=body(positive_record(rng)),
                                   headers={"X-Customer": customer})  # fmt: skip
            return str(response.json()["model"]["variant"])

        first = {f"c{i}": version_for(f"c{i}") for i in range(200)}
        again = {f"c{i}": version_for(f"c{i}") for i in range(200)}
        keyless = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
    assert first == again
    assert set(first.values()) == {"ab:1", "ab:2"}
    assert keyless.json()["model"]["variant"] == "production"


def test_an_ab_split_keyed_by_a_field_reads_the_first_record(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "ab": {"key": "a", "split": {"1": 50, "4": 50}},
            "gate": NO_TIMING_CHECKS}  # fmt: skip
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)
        variants = {
            client.post("/v1/models/dense:predict", json=body({"a": a, "b": 0.0, "c": 0.0}))
            .json()["model"]["variant"]
            for a in (0.1 * i for i in range(60))
        }  # fmt: skip
        repeated = {
            client.post("/v1/models/dense:predict", json=body({"a": 0.3, "b": b, "c": 0.0}))
            .json()["model"]["variant"]
            for b in range(20)
        }  # fmt: skip
    assert variants == {"ab:1", "ab:4"}
    assert len(repeated) == 1


def test_shadow_disagreement_shows_in_metrics_and_the_rollout_endpoint_within_seconds(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    # "3" (labels flipped) shadows "1": they disagree on every row; "2" agrees on every row.
    bundles = [str(versions[v]) for v in ("1", "2", "3")]
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump({"model": "dense", "production": "1", "shadows": ["2", "3"],
                                    "segments": ["b"]}))  # fmt: skip
    settings = Settings(bundles=bundles, rollout={"file": str(path), "interval_s": 0.1},
                        decision_log={"directory": str(tmp_path / "decisions")})  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        started = time.monotonic()
        for i in range(100):
            record = {**positive_record(rng), "b": 0.5 if i % 4 else 1.5}  # two segments of b
            response = client.post("/v1/models/dense:predict", json=body(record))
            assert response.json()["model"]["variant"] == "production"
        shadows: dict[str, Any] = {}
        while time.monotonic() - started < 10:
            status = client.get("/v1/models/dense/rollout").json()
            shadows = {s["version"]: s for s in status["shadows"]}
            if all(s["compared"] == 100 for s in shadows.values()):
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
        metrics = client.get("/metrics").text
    assert shadows["2"]["compared"] == shadows["3"]["compared"] == 100, shadows
    assert seconds < 10
    assert shadows["2"]["window"]["label_agreement"] == 1.0
    assert shadows["3"]["window"]["label_agreement"] == 0.0
    assert shadows["3"]["window"]["abs_delta_p50"] > 0.0
    assert shadows["2"]["segments"] == {
        "b=0.5": {"rows": 75, "label_agreement": 1.0, "abs_delta_mean": 0.0},
        "b=1.5": {"rows": 25, "label_agreement": 1.0, "abs_delta_mean": 0.0},
    }
    assert shadows["3"]["segments"]["b=1.5"]["label_agreement"] == 0.0
    decisions = [json.loads(line) for f in (tmp_path / "decisions").rglob("*.jsonl*")
                 for line in f.read_text().splitlines()]  # fmt: skip
    by_request: dict[str, set[tuple[str, str]]] = {}
    for d in decisions:
        by_request.setdefault(d["request_id"], set()).add((d["version"], d["variant"]))
    # each request's shadow decisions sit beside production's, under the same request id
    assert len(by_request) == 100
    assert all(
        v == {("1", "production"), ("2", "shadow"), ("3", "shadow")} for v in by_request.values()
    )
    assert (
        'rtserve_shadow_predictions_total{model="dense",outcome="compared",version="3"} 100.0'
        in (metrics)
    )
    assert 'rtserve_shadow_label_agreement_ratio{model="dense",version="3"} 0.0' in metrics


def test_a_healthy_canary_is_promoted_step_by_step(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "canary": {"version": "2"}, "steps": [10, 50, 100], "dwell_s": 0.3,
            "gate": {"window_s": 30, "min_requests": 20, **NO_TIMING_CHECKS}}  # fmt: skip
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)
        weights: list[float] = []
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for _ in range(20):
                assert client.post(
                    "/v1/models/dense:predict", json=body(positive_record(rng))
                ).status_code == 200  # fmt: skip
            status = client.get("/v1/models/dense/rollout").json()
            if not weights or weights[-1] != status["state"]["weight"]:
                weights.append(status["state"]["weight"])
            if status["state"]["status"] == "promoted":
                break
        after = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
        default = client.get("/v1/models/dense/versions").json()["default_version"]
    assert status["state"]["status"] == "promoted", status
    assert weights == [10.0, 50.0, 100.0]
    assert [d["status"] for d in status["decisions"]] == ["running", "promoted"]
    assert "gate passed" in status["decisions"][-1]["reason"]
    assert after.json()["model"]["version"] == "2"
    assert default == "2"


def test_a_spec_naming_a_version_not_served_is_not_applied_and_says_why(
    tmp_path: Path, versions: dict[str, Path], rng: random.Random
) -> None:
    spec = {"production": "1", "canary": {"version": "9", "weight": 50}}
    with serving(tmp_path, versions, spec) as client:
        wait_ready(client)
        status = client.get("/v1/models/dense/rollout").json()
        answered = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
    assert status["active"] is False
    assert "version 9 of dense is not served here" in status["problem"]
    assert answered.json()["model"] == {"name": "dense", "version": "4"}
