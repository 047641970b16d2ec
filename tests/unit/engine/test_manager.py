"""The model manager: which version an unversioned request gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import rtserve
from rtserve.engine.manager import ModelManager
from rtserve.settings import Settings
from rtserve.types import ModelState


@pytest.fixture(scope="module")
def versions_of_one_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(frame, (frame.a > 0).astype(int))
    root = tmp_path_factory.mktemp("versions")
    paths = {}
    for version in ("9", "10", "2"):
        paths[version] = root / f"m-{version}"
        rtserve.build(model, frame, name="m", version=version, optimize="off").save(paths[version])
    return paths


def test_the_unversioned_model_is_the_newest_by_version_order_not_the_last_given(
    versions_of_one_model: dict[str, Path],
) -> None:
    manager = ModelManager(Settings.load())
    manager.load_all([str(versions_of_one_model[v]) for v in ("10", "2", "9")])

    assert manager.get("m").version == "10"
    assert manager.versions("m") == ["2", "9", "10"]
    manager.close()


def test_the_listings_order_versions_naturally_and_name_the_default(
    versions_of_one_model: dict[str, Path],
) -> None:
    from rtserve.engine.dataplane import DataPlane

    manager = ModelManager(Settings.load())
    manager.load_all([str(versions_of_one_model[v]) for v in ("10", "2", "9")])
    manager.get("m", "9").state = ModelState.FAILED
    manager.get("m", "9").reason = "warm-up outputs differ"
    plane = DataPlane(manager)

    assert plane.repository_index() == [
        {"name": "m", "version": "2", "state": "READY"},
        {"name": "m", "version": "9", "state": "UNAVAILABLE", "reason": "warm-up outputs differ"},
        {"name": "m", "version": "10", "state": "READY"},
    ]
    (listing,) = plane.models()
    assert listing["default_version"] == "10"
    assert [v["state"] for v in listing["versions"]] == ["ready", "failed", "ready"]
    manager.close()
