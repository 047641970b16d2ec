"""gc.freeze and the GIL switch interval belong to rtserve's own process, never to an
application that embeds rtserve."""

from __future__ import annotations

import gc
import sys
import time

import pytest
from starlette.testclient import TestClient

from rtserve.server.app import create_app
from rtserve.settings import Settings


def _frozen_during_start(monkeypatch: pytest.MonkeyPatch, **options: bool) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: calls.append(f"switch {s}"))
    app = create_app(Settings.load(bundles=[]), **options)
    with TestClient(app):
        deadline = time.monotonic() + 5
        while app.state.dataplane.manager.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the loading task's done-callbacks have run by now
    return calls


def test_an_embedded_app_leaves_the_host_processs_garbage_collector_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _frozen_during_start(monkeypatch) == []
    assert sys.getswitchinterval() == 0.005


def test_rtserve_s_own_runner_freezes_the_loaded_objects_and_shortens_the_gil_switch_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sorted(_frozen_during_start(monkeypatch, own_process=True)) == ["freeze", "switch 0.001"]
