"""gc.freeze belongs to rtserve's own process, never to an application that embeds rtserve."""

from __future__ import annotations

import gc
import time

import pytest
from starlette.testclient import TestClient

from rtserve.server.app import create_app
from rtserve.settings import Settings


def _frozen_during_start(monkeypatch: pytest.MonkeyPatch, **options: bool) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
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


def test_rtserve_s_own_runner_freezes_what_exists_once_the_models_are_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _frozen_during_start(monkeypatch, freeze_gc=True) == ["freeze"]
