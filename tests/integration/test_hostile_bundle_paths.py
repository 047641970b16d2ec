"""A bundle whose manifest points outside itself never reaches a server, nor leaks what it names.

Before the fix, ``validation: /etc/passwd`` (hashes re-sealed) was read at warm-up and the first
line of the file showed in ``GET /v1/models/{name}``; ``profile: /etc/passwd`` passed ``verify``
and then made every drift call fail. Now the manifest is refused when the bundle is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

import rtserve
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import read_manifest
from rtserve.engine.manager import ModelManager
from rtserve.errors import NotReadyError, UnsafePathError
from rtserve.server import asgi_app
from rtserve.server.app import create_app
from rtserve.settings import Settings

pytestmark = pytest.mark.integration

LEAK_MARKER = "root:"  # how /etc/passwd begins


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small logistic regression bundle, named ``victim``."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    target = tmp_path_factory.mktemp("bundles") / "victim-1"
    rtserve.build(model, frame, name="victim", version="1", optimize="off").save(target)
    return target


def _forged(genuine: Path, tmp_path: Path, key: str) -> Path:
    """A copy whose ``key`` names /etc/passwd, re-sealed with the project's own integrity code."""
    import shutil

    target = tmp_path / "victim-1"
    shutil.copytree(genuine, target)
    Bundle.seal(target, read_manifest(target).model_copy(update={key: "/etc/passwd"}))
    return target


@pytest.mark.parametrize("key", ["validation", "profile"])
def test_the_server_refuses_the_bundle_and_no_endpoint_shows_the_file(
    genuine: Path, tmp_path: Path, key: str
) -> None:
    forged = _forged(genuine, tmp_path, key)
    settings = Settings.load()
    manager = ModelManager(settings)

    with pytest.raises(UnsafePathError) as caught:
        manager.load(str(forged))

    assert caught.value.field == key
    assert LEAK_MARKER not in manager.broken[str(forged)]
    with TestClient(create_app(settings, manager), raise_server_exceptions=False) as client:
        for url in ("/v1/models", "/v1/models/victim", "/v2/models/victim", "/v2/health/ready"):
            assert LEAK_MARKER not in client.get(url).text, url


@pytest.mark.parametrize("key", ["validation", "profile"])
def test_the_embedded_app_refuses_the_bundle_naming_the_key_not_the_content(
    genuine: Path, tmp_path: Path, key: str
) -> None:
    forged = _forged(genuine, tmp_path, key)

    with pytest.raises(NotReadyError) as caught:
        asgi_app(forged)

    assert f"{key}: path '/etc/passwd' is absolute" in caught.value.message
    assert LEAK_MARKER not in caught.value.message
