"""Every way a command can fail ends in one `error:` line (exit 1) or a usage message (exit 2),
never a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.cli.conftest import Invoke, ModelFiles


def _tampered(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tampered"
    shutil.copytree(bundle, copy)
    (copy / "validation.json").write_text("{}")
    return copy


def _bad_rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"amount": "lots"}\n')
    return path


def _garbage(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 not what the extension says")
    return path


#: (command line from the fixtures and tmp_path, expected exit code)
FAILURES: dict[str, tuple[Callable[[Path, ModelFiles, Path], list[object]], int]] = {
    "build: model file that is not one": (
        lambda b, f, t: [
            "build",
            _garbage(t, "m.skops"),
            "--sample",
            f.sample_parquet,
            "--name",
            "x",
            "--version",
            "1",
            "--output",
            t / "out",
        ],
        1,
    ),
    "build: sample that is not parquet": (
        lambda b, f, t: [
            "build",
            f.skops,
            "--sample",
            _garbage(t, "s.parquet"),
            "--name",
            "x",
            "--version",
            "1",
            "--output",
            t / "out",
        ],
        1,
    ),
    "build: invalid name": (
        lambda b, f, t: [
            "build",
            f.skops,
            "--sample",
            f.sample_parquet,
            "--name",
            "Bad Name",
            "--version",
            "1",
            "--output",
            t / "out",
        ],
        1,
    ),
    "build: a pickle without trust": (
        lambda b, f, t: [
            "build",
            f.pickle,
            "--sample",
            f.sample_parquet,
            "--name",
            "x",
            "--version",
            "1",
            "--output",
            t / "out",
        ],
        1,
    ),
    "inspect: not a bundle": (lambda b, f, t: ["inspect", t], 1),
    "verify: tampered bundle": (lambda b, f, t: ["verify", _tampered(b, t)], 1),
    "verify: archive that is not gzip": (lambda b, f, t: ["verify", _garbage(t, "b.tar.gz")], 1),
    "reseal: an archive": (lambda b, f, t: ["reseal", _garbage(t, "b.tar.gz")], 1),
    "predict: rows that break the schema": (
        lambda b, f, t: ["predict", b, "--input", _bad_rows(t)],
        1,
    ),
    "predict: unknown option value": (
        lambda b, f, t: ["predict", b, "--input", f.rows_jsonl, "--on-invalid", "ignore"],
        2,
    ),
    "bench: neither URL nor bundle": (lambda b, f, t: ["bench", t / "nothing", "-n", "1"], 1),
    "decisions: unknown request id": (
        lambda b, f, t: ["decisions", "--request-id", "nope", "--dir", t],
        1,
    ),
    "serve: missing bundle": (lambda b, f, t: ["serve", t / "missing"], 2),
    "serve: a registry directory that does not exist": (
        lambda b, f, t: ["serve", "--registry", t / "no-registry", "fraud@production"],
        2,
    ),
    "serve: a trusted key file that is no key": (
        lambda b, f, t: ["serve", b, "--config", _bad_key_config(t)],
        1,
    ),
}


def _bad_key_config(tmp_path: Path) -> Path:
    key = tmp_path / "not-a-key.pem"
    key.write_text("not a key")
    config = tmp_path / "bad-key.yaml"
    config.write_text(f"loading:\n  require_signature: true\n  trusted_keys: ['{key}']\n")
    return config


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failing_command_says_so_in_one_line_without_a_traceback(
    case: str, rtserve_cli: Invoke, fraud_bundle_dir: Path, model_files: ModelFiles, tmp_path: Path
) -> None:
    arguments, exit_code = FAILURES[case]
    result = rtserve_cli(*arguments(fraud_bundle_dir, model_files, tmp_path))

    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if exit_code == 1:
        lines = result.stderr.splitlines()
        assert lines[0].startswith("error: "), result.stderr
        assert not any(line.startswith("error: ") for line in lines[1:])
