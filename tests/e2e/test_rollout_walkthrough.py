"""docs/rollout.md's walk-through (a canary from start to promotion), run verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtserve.loadgen.launch import free_port

# the whole walkthrough: 2-4 min on a 2-core machine, more on a slow day of it
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(660)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "rollout.md"


def test_the_rollout_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += "\n".join(blocks)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PORT": str(free_port())}  # fmt: skip
    for name in ("RTSERVE_REGISTRY", "RTSERVE_CONFIG", "RTSERVE_REGISTRY_ACTOR"):
        env.pop(name, None)
    done = subprocess.run(["timeout", "600", "bash", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    log = (
        (tmp_path / "server.log").read_text(errors="replace")
        if (tmp_path / "server.log").exists()
        else ""
    )
    assert done.returncode == 0, done.stdout + done.stderr + log[-3000:]
    assert "rollout-await-approval" in done.stdout
    assert "rollout-promoted" in done.stdout
    assert "rollout-step" in done.stdout
