"""``rtserve registry`` as a user runs it: exit codes, JSON output, a tampered audit log."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def rtserve(*args, registry, actor="key:admin", check=True):
    command = [sys.executable, "-m", "rtserve", "registry", "--registry", str(registry),
               "--actor", actor, *map(str, args)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_help_loads_no_database_or_data_libraries():
    code = (
        "import sys; from rtserve.cli.main import app; "
        "heavy = {'numpy', 'pandas', 'pydantic', 'sqlalchemy', 'alembic', 'fsspec'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_cli_pushes_promotes_and_refuses_with_exit_code_1(tmp_path, fraud_bundle_dir):
    reg = tmp_path / "reg"
    rtserve("init", registry=reg)
    rtserve("grant", "key:mae", "maintainer", registry=reg)
    pushed = json.loads(
        rtserve("--json", "push", fraud_bundle_dir, registry=reg, actor="key:mae").stdout
    )
    assert pushed["digest"].startswith("sha256:")
    assert pushed["pushed_by"] == "key:mae"
    request = rtserve("promote", "fraud", "1", "--to", "production", registry=reg, actor="key:mae")
    assert "pending" in request.stdout
    refused = rtserve(
        "approve", "1", "--comment", "mine", registry=reg, actor="key:mae", check=False
    )
    assert refused.returncode == 1
    assert "error:" in refused.stderr
    assert "approver" in refused.stderr
    [model] = json.loads(rtserve("--json", "list", registry=reg).stdout)
    assert (model["name"], model["versions"]) == ("fraud", 1)


def test_audit_verify_fails_naming_the_edited_row(tmp_path, fraud_bundle_dir):
    reg = tmp_path / "reg"
    rtserve("init", registry=reg)
    rtserve("push", fraud_bundle_dir, registry=reg)
    assert "audit chain ok" in rtserve("audit", "--verify", registry=reg).stdout
    with sqlite3.connect(reg / "registry.db") as conn:
        conn.execute("UPDATE registry_audit SET reason = 'nothing to see' WHERE seq = 2")
    broken = rtserve("audit", "--verify", registry=reg, check=False)
    assert broken.returncode == 1
    assert "entry 2 was edited" in broken.stderr
