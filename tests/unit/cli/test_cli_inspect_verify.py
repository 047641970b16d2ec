"""`rtserve inspect` and `rtserve verify`: what a bundle holds, and whether it is sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import rtserve
from rtserve.bundle.manifest import read_manifest
from tests.unit.cli.conftest import Invoke, NumericFiles


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_inspect_shows_identity_runtime_schema_profile_and_files(
    rtserve_cli: Invoke, fraud_bundle_dir: Path
) -> None:
    bundle = rtserve.Bundle.open(fraud_bundle_dir)

    result = rtserve_cli("inspect", fraud_bundle_dir)

    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "fraud",
        bundle.digest,
        "created",
        "sklearn / skops",
        "environment",
        "scikit-learn",
        "classification: classes 0, 1 (with probabilities)",
        "400 rows",
        "model/model.skops",
        "KiB",
    ):
        assert text in out, text
    for spec in bundle.manifest.model_schema.inputs:
        assert spec.name in out
    assert "{DE, FR, GB, NL, US}" in out


def test_inspect_json_is_the_bundle_description_with_a_profile_summary(
    rtserve_cli: Invoke, fraud_bundle_dir: Path
) -> None:
    bundle = rtserve.Bundle.open(fraud_bundle_dir)

    result = rtserve_cli("inspect", fraud_bundle_dir, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    expected = bundle.describe()
    assert {k: document[k] for k in expected} == expected
    summary = document["profile_summary"]
    assert summary["rows"] == 400
    assert summary["features"]["country"]["kind"] == "categorical"
    assert summary["outputs"]["task"] == "classification"
    assert abs(sum(summary["outputs"]["class_frequencies"].values()) - 1.0) < 1e-9


def test_inspect_refuses_a_modified_bundle_unless_told_not_to_verify(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    _flip_byte(fraud_bundle_copy / "profile.json")

    refused = rtserve_cli("inspect", fraud_bundle_copy)
    unchecked = rtserve_cli("inspect", fraud_bundle_copy, "--no-verify", "--json")

    assert refused.exit_code == 1
    assert "profile.json" in refused.stderr
    assert unchecked.exit_code == 0, unchecked.output
    assert "hashes were not checked" in unchecked.stderr
    assert "profile.json: unreadable" in unchecked.stderr
    assert json.loads(unchecked.stdout)["profile_summary"] is None


def test_verify_passes_a_sound_bundle_and_prints_its_digest(
    rtserve_cli: Invoke, fraud_bundle_dir: Path
) -> None:
    digest = rtserve.Bundle.open(fraud_bundle_dir).digest

    result = rtserve_cli("verify", fraud_bundle_dir)
    as_json = rtserve_cli("verify", fraud_bundle_dir, "--json", "--pin-digest", digest)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK fraud:1 " + digest)
    assert "matches the recorded outputs" in result.stdout
    document = json.loads(as_json.stdout)
    assert document["ok"] is True
    assert document["digest"] == digest
    assert document["parity"]["passed"] is True
    assert document["parity"]["rows"] == 200


def test_verify_fails_on_a_flipped_byte_naming_the_file(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    _flip_byte(fraud_bundle_copy / "model" / "model.skops")

    result = rtserve_cli("verify", fraud_bundle_copy)
    as_json = rtserve_cli("verify", fraud_bundle_copy, "--json")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: model/model.skops: sha256")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    assert document["error"]["code"] == "integrity"


def test_verify_fails_on_a_digest_other_than_the_pinned_one(
    rtserve_cli: Invoke, fraud_bundle_dir: Path
) -> None:
    result = rtserve_cli("verify", fraud_bundle_dir, "--pin-digest", "sha256:" + "0" * 64)

    assert result.exit_code == 1
    assert "does not match the pinned" in result.stderr


def test_verify_loads_a_pickle_bundle_only_with_trust_and_a_pinned_digest(
    rtserve_cli: Invoke, numeric_files: NumericFiles, foreign_type_model: Any, tmp_path: Path
) -> None:
    import joblib

    joblib.dump(foreign_type_model, tmp_path / "model.pkl")
    built = rtserve_cli(
        "build", tmp_path / "model.pkl", "--sample", numeric_files.sample, "--name", "neg",
        "--version", "1", "--output", tmp_path / "b", "--trust-pickle",
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    digest = rtserve.Bundle.open(tmp_path / "b").digest

    untrusted = rtserve_cli("verify", tmp_path / "b")
    unpinned = rtserve_cli("verify", tmp_path / "b", "--trust-pickle")
    trusted = rtserve_cli("verify", tmp_path / "b", "--trust-pickle", "--pin-digest", digest)

    assert untrusted.exit_code == 1
    assert "--trust-pickle --pin-digest" in untrusted.stderr
    assert unpinned.exit_code == 1
    assert trusted.exit_code == 0, trusted.output


def test_verify_warns_about_a_framework_version_mismatch_and_refuses_it_when_strict(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    # As if built under another scikit-learn (reseal refuses environment edits, so seal directly).
    manifest = read_manifest(fraud_bundle_copy)
    packages = {**manifest.environment.packages, "scikit-learn": "0.1.0"}
    environment = manifest.environment.model_copy(update={"packages": packages})
    rtserve.Bundle.seal(fraud_bundle_copy, manifest.model_copy(update={"environment": environment}))

    lenient = rtserve_cli("verify", fraud_bundle_copy)
    strict = rtserve_cli("verify", fraud_bundle_copy, "--strict-versions")

    assert lenient.exit_code == 0, lenient.output
    assert "warning: scikit-learn" in lenient.stderr
    assert "built with scikit-learn 0.1.0" in lenient.stderr
    assert strict.exit_code == 1
    assert "strict version checking" in strict.stderr


def test_verify_of_a_missing_bundle_fails_and_without_one_is_a_usage_error(
    rtserve_cli: Invoke, tmp_path: Path
) -> None:
    missing = rtserve_cli("verify", tmp_path / "nope")
    no_argument = rtserve_cli("verify")

    assert missing.exit_code == 1
    assert "no such bundle" in missing.stderr
    assert no_argument.exit_code == 2
