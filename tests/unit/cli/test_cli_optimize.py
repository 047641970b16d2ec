"""`rtserve build --optimize` and the serving line of `rtserve build` / `rtserve inspect`: which
runtime answers and the export's parity figures, or why the native runtime does."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import Result

from tests.unit.cli.conftest import Invoke, ModelFiles


def _build(cli: Invoke, files: ModelFiles, output: Path, *extra: object) -> Result:
    return cli("build", files.skops, "--sample", files.sample_parquet, "--name", "fraud",
               "--version", "1", "--output", output, *extra)  # fmt: skip


def test_build_exports_by_default_and_inspect_shows_onnx_serving_with_parity(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    built = _build(rtserve_cli, model_files, tmp_path / "b")
    shown = rtserve_cli("inspect", tmp_path / "b")
    as_json = json.loads(rtserve_cli("inspect", tmp_path / "b", "--json").stdout)

    assert built.exit_code == 0, built.output
    assert "serving      onnx (ONNX export, parity passed:" in built.stdout
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.stdout.splitlines() if x.startswith("serving"))
    assert "sample +" in line
    assert "probe rows, max |diff|" in line
    assert "(tolerance 1e-05), 0.00% labels differ" in line
    assert "optimized/model.onnx" in shown.stdout
    assert as_json["serving"] == {
        "runtime": "onnx",
        "optimized": True,
        "reason": "ONNX export passed its parity gate",
    }
    assert as_json["optimized"]["parity"]["passed"] is True


def test_build_with_optimize_off_serves_natively_and_says_why(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    built = _build(rtserve_cli, model_files, tmp_path / "b", "--optimize", "off")
    shown = rtserve_cli("inspect", tmp_path / "b")

    assert built.exit_code == 0, built.output
    assert (
        "serving      sklearn (native: export switched off at build (optimize='off'))"
        in shown.stdout
    )
    assert not (tmp_path / "b" / "optimized").exists()


def test_build_refuses_an_unknown_optimize_mode(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = _build(rtserve_cli, model_files, tmp_path / "b", "--optimize", "fast")

    assert result.exit_code == 2
    assert "'fast' is not one of auto, off" in result.stderr
    assert not (tmp_path / "b").exists()
