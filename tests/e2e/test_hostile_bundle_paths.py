"""The real `rtserve verify` refuses a bundle whose manifest points outside it: one line, no leak."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import read_manifest

pytestmark = pytest.mark.e2e

CONSOLE_SCRIPT = Path(sys.executable).with_name("rtserve")


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    target = tmp_path_factory.mktemp("bundles") / "victim-1"
    rtserve.build(model, frame, name="victim", version="1", optimize="off").save(target)
    return target


@pytest.mark.parametrize("key", ["validation", "profile"])
def test_rtserve_verify_refuses_a_manifest_pointing_at_etc_passwd(
    genuine: Path, tmp_path: Path, key: str
) -> None:
    forged = tmp_path / "victim-1"
    shutil.copytree(genuine, forged)
    Bundle.seal(forged, read_manifest(forged).model_copy(update={key: "/etc/passwd"}))

    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "verify", str(forged)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {key}: path '/etc/passwd' is absolute")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "root:" not in result.stdout + result.stderr
