"""`rtserve containerize`: a build context whose Dockerfile hadolint passes and whose image runs
the server as non-root from a pinned base, with bundles at the paths `rtserve k8s` expects."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtserve.bundle.bundle import Bundle
from rtserve.cli.main import app
from rtserve.deploy.plan import RUN_AS


def containerize(*args: object) -> Any:
    return CliRunner().invoke(
        app, ["containerize", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )


@pytest.fixture(scope="module")
def context(fraud_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("image")
    result = containerize(fraud_bundle_dir, "-o", directory)
    assert result.exit_code == 0, result.output
    return directory


def test_the_generated_dockerfile_has_no_hadolint_findings(context):
    done = subprocess.run(
        ["hadolint", "--no-color", str(context / "Dockerfile")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_base_image_is_an_arg_pinned_by_digest_and_both_stages_use_it(context):
    text = (context / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", text, re.MULTILINE)
    assert re.findall(r"^FROM (\S+) AS (\w+)$", text, re.MULTILINE) == [
        ("${BASE_IMAGE}", "build"),
        ("${BASE_IMAGE}", "runtime"),
    ]


def test_the_runtime_stage_runs_as_non_root_with_an_exec_form_entrypoint_and_a_healthcheck(context):
    runtime = (context / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    assert f"USER {RUN_AS}:{RUN_AS}" in runtime
    assert "RUN " not in runtime  # nothing built or installed in the final stage
    assert 'ENTRYPOINT ["rtserve", "serve"]' in runtime
    assert re.search(r"HEALTHCHECK .* CMD \[\"python3\", \"-c\", .*/healthz", runtime)


def test_only_wheels_are_installed_and_every_requirement_is_hash_checked(context):
    text = (context / "Dockerfile").read_text()
    assert "--only-binary=:all: --require-hashes" in text
    requirements = (context / "requirements.txt").read_text()
    pins = re.findall(r"^[A-Za-z0-9._-]+==\S+", requirements, re.MULTILINE)
    assert pins
    assert "rtserve" not in requirements.split("--hash")[0]
    assert requirements.count("==") <= requirements.count("--hash=sha256:")
    assert not [line for line in requirements.splitlines() if line.startswith(("pytest", "mypy"))]
    assert len(list((context / "wheels").glob("rtserve-*.whl"))) == 1


def test_bundles_are_copied_verified_to_the_path_rtserve_k8s_expects_and_labelled_by_digest(
    context, fraud_bundle_dir
):
    bundle = Bundle.open(fraud_bundle_dir, check=True)
    text = (context / "Dockerfile").read_text()
    assert "COPY models/fraud-1/ /models/fraud-1/" in text
    assert bundle.digest in text  # the io.rtserve.models label
    Bundle.open(context / "models" / "fraud-1", check=True)
    assert "/models/fraud-1" in (context / "rtserve.yaml").read_text()
    assert bundle.digest in (context / "rtserve.yaml").read_text()  # pinned at load


def test_the_dockerignore_denies_everything_not_copied(context):
    lines = (context / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert "!models/fraud-1/" in lines


def test_a_wheelhouse_makes_the_build_offline(fraud_bundle_dir, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"")
    result = containerize(fraud_bundle_dir, "--wheelhouse", wheels, "-o", tmp_path / "ctx")
    assert result.exit_code == 0, result.output
    assert "--no-index" in (tmp_path / "ctx" / "Dockerfile").read_text().split("-r /build")[0]
    assert (tmp_path / "ctx" / "wheels" / "demo-1.0-py3-none-any.whl").exists()


def test_an_empty_wheelhouse_is_refused_with_how_to_fill_it(fraud_bundle_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    result = containerize(
        fraud_bundle_dir, "--wheelhouse", tmp_path / "empty", "-o", tmp_path / "c"
    )
    assert result.exit_code == 1
    assert "pip download" in result.output


def test_a_non_empty_output_directory_is_refused_without_overwrite(fraud_bundle_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = containerize(fraud_bundle_dir, "-o", tmp_path)
    assert result.exit_code == 1
    assert "--overwrite" in result.output


def test_a_registry_ref_is_labelled_but_not_baked_in(fraud_bundle_dir, tmp_path):
    result = containerize(fraud_bundle_dir, "--registry-ref", "risk:2", "-o", tmp_path / "c")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "c" / "Dockerfile").read_text()
    assert "risk:2" in text
    assert "/models/risk-2/" not in text
    assert "/models/risk-2" in (tmp_path / "c" / "rtserve.yaml").read_text()


def test_the_documented_containerize_command_works(fraud_bundle_dir, tmp_path):
    docs = (Path(__file__).parents[3] / "docs" / "deploy.md").read_text()
    command = re.search(r"^rtserve containerize (.*)$", docs, re.MULTILINE)
    assert command is not None
    args = [
        str(fraud_bundle_dir)
        if arg == "bundles/fraud-1"
        else str(tmp_path / arg)
        if arg.endswith("/")
        else arg
        for arg in command[1].split()
    ]
    result = containerize(*args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "image" / "Dockerfile").exists()
