"""docs/registry.md's walk-through, run verbatim in a scratch directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_the_registry_walkthrough_runs_as_written(tmp_path):
    script = "set -euo pipefail\n" + "\n".join(bash_blocks(DOC.read_text(encoding="utf-8")))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("RTSERVE_REGISTRY", "RTSERVE_CONFIG", "RTSERVE_REGISTRY_ACTOR"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "separation of duties" in done.stderr
    assert "audit chain ok" in done.stdout
