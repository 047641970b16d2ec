"""Rollouts driven by the registry: the server loads the canary, the gate steps it up and files
the promotion that approvers decide, or rolls a failing one back; every decision is in the audit
log with the figures that drove it."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rtserve.registry import Registry
from rtserve.rollout.spec import parse_spec
from rtserve.server.app import create_app
from rtserve.settings import Settings
from tests.integration.conftest import wait_ready
from tests.registry_support import APPROVER, MAINTAINER, open_registry, push, to_production
from tests.rollout_support import (
    body,
    build_failing_version,
    build_versions,
    negative_record,
    positive_record,
)

QUICK_GATE = {"window_s": 30, "min_requests": 20, "max_p99_ratio": None, "max_psi": None}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout-registry-bundles")
    built = build_versions(root, ("1", "2"))
    built["3"] = build_failing_version(root, "3")
    return built


@pytest.fixture
def registry(tmp_path: Path, versions: dict[str, Path]) -> Iterator[Registry]:
    registry = open_registry(tmp_path / "registry")
    for bundle in versions.values():
        push(registry, bundle)
    to_production(registry, "1")
    yield registry
    registry.close()


def server(tmp_path: Path) -> TestClient:
    settings = Settings(
        registry={"url": str(tmp_path / "registry"), "follow": ["dense@production"],
                  "poll_interval_s": 0.1},
        rollout={"interval_s": 0.1},
        decision_log={"enabled": False},
    )  # fmt: skip
    return TestClient(create_app(settings), raise_server_exceptions=False)


def wait_rollout(client: TestClient, timeout: float = 30.0) -> dict[str, Any]:
    """The rollout status once applied: readiness says production serves; the canary loads and
    the rollout is applied just after."""
    deadline = time.monotonic() + timeout
    while not (status := client.get("/v1/models/dense/rollout").json())["active"]:
        assert time.monotonic() < deadline, f"rollout not applied after {timeout}s: {status}"
        time.sleep(0.05)
    return status


def drive(
    client: TestClient, until: Any, rng: random.Random, failing_share: float = 0.0
) -> tuple[dict[str, Any], Counter[tuple[int, str]]]:
    """Send requests in rounds of 20 until ``until(status)`` or 60 s; count (code, variant)."""
    seen: Counter[tuple[int, str]] = Counter()
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for _ in range(20):
            record = negative_record(rng) if rng.random() < failing_share else positive_record(rng)
            response = client.post("/v1/models/dense:predict", json=body(record))
            seen[(response.status_code, response.headers.get("rtserve-variant", ""))] += 1
        status = client.get("/v1/models/dense/rollout").json()
        if until(status):
            break
    return status, seen


def test_a_healthy_canary_steps_up_then_waits_for_approval_and_is_promoted(
    tmp_path: Path, registry: Registry
) -> None:
    spec = parse_spec({"production": "1", "canary": {"version": "2"}, "steps": [20, 60, 100],
                       "dwell_s": 0.3, "gate": QUICK_GATE}, model="dense")  # fmt: skip
    registry.start_rollout(spec, actor=MAINTAINER, reason="roll out v2")
    rng = random.Random(1)
    with server(tmp_path) as client:
        wait_ready(client)
        assert wait_rollout(client)["state"]["weight"] == 20.0
        status, seen = drive(client, lambda s: s["state"]["status"] == "awaiting_approval", rng)
        assert status["state"]["status"] == "awaiting_approval", status
        pending = [r for r in registry.requests("dense", status="pending") if r.version == "2"]
        assert len(pending) == 1
        assert pending[0].requester == MAINTAINER  # filed for whoever started the rollout
        registry.approve(pending[0].id, actor=APPROVER, comment="gate passed at every step")
        status, after = drive(client, lambda s: s["state"]["status"] == "promoted", rng)
        answered = client.post("/v1/models/dense:predict", json=body(positive_record(rng)))
    assert status["state"]["status"] == "promoted", status
    assert answered.json()["model"]["version"] == "2"
    assert all(code == 200 for code, _ in seen + after)
    actions = [e.action for e in registry.audit(subject="dense")]
    assert actions.count("rollout-start") == 1
    assert actions.count("rollout-step") == 1  # 20% -> 60%
    assert "rollout-await-approval" in actions
    assert "rollout-promoted" in actions
    step = next(e for e in registry.audit(subject="dense") if e.action == "rollout-step")
    assert step.after["state"]["weight"] == 60.0
    assert step.after["figures"]["verdict"] == "pass"
    assert step.after["figures"]["canary"]["requests"] >= 20
    assert registry.verify_audit().ok


def test_a_failing_canary_is_rolled_back_and_the_audit_log_keeps_the_figures(
    tmp_path: Path, registry: Registry
) -> None:
    spec = parse_spec({"production": "1", "canary": {"version": "3", "weight": 30},
                       "gate": QUICK_GATE}, model="dense")  # fmt: skip
    registry.start_rollout(spec, actor=MAINTAINER, reason="roll out v3")
    rng = random.Random(2)
    with server(tmp_path) as client:
        wait_ready(client)
        wait_rollout(client)
        status, seen = drive(
            client, lambda s: s["state"]["status"] != "running", rng, failing_share=0.3
        )
    assert status["state"]["status"] == "rolled_back", status
    assert all(code == 200 for code, variant in seen if variant == "production")
    rollback = next(e for e in registry.audit(subject="dense") if e.action == "rollout-rollback")
    errors = next(c for c in rollback.after["figures"]["checks"] if c["name"] == "errors")
    assert errors["verdict"] == "break"
    assert "error rate" in rollback.reason
    assert registry.rollout("dense").state.weight == 0.0  # type: ignore[union-attr]
