"""`rtserve reseal`: re-sign a hand-edited manifest only when the edit is sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import rtserve
from rtserve.building.reseal import reseal
from rtserve.errors import IntegrityError, SchemaDefinitionError, ValidationError
from tests.unit.cli.conftest import Invoke, write_jsonl


def _edit_field(bundle: Path, name: str, **changes: Any) -> None:
    """Change one input field in rtserve.yaml, as a person with an editor would."""
    path = bundle / "rtserve.yaml"
    manifest = yaml.safe_load(path.read_text())
    (spec,) = [f for f in manifest["schema"]["inputs"] if f["name"] == name]
    spec.update(changes)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def test_reseal_after_adding_a_maximum_makes_the_new_bound_enforced(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    old_digest = rtserve.Bundle.open(fraud_bundle_copy).digest
    _edit_field(fraud_bundle_copy, "amount", maximum=10_000.0)
    before = rtserve_cli("verify", fraud_bundle_copy)

    result = rtserve_cli("reseal", fraud_bundle_copy)

    assert before.exit_code == 1
    assert "rtserve.yaml" in before.stderr
    assert result.exit_code == 0, result.output
    new_digest = rtserve.Bundle.open(fraud_bundle_copy).digest
    assert new_digest != old_digest
    assert old_digest in result.stdout
    assert new_digest in result.stdout
    assert rtserve_cli("verify", fraud_bundle_copy).exit_code == 0
    predictor = rtserve.load(fraud_bundle_copy)
    assert predictor.schema.field("amount").maximum == 10_000.0
    row = {"amount": 50_000.0, "hour": 3, "prior_transactions": 2, "country": "DE",
           "merchant": "fuel", "card_present": True}  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        predictor.predict([row])
    assert caught.value.fields == ["amount"]
    rows = write_jsonl(tmp_path / "rows.jsonl", [row])
    refused = rtserve_cli("predict", fraud_bundle_copy, "--input", rows)
    assert refused.exit_code == 1
    assert "above the maximum" in refused.stderr


def test_reseal_refuses_when_the_model_file_changed(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    _edit_field(fraud_bundle_copy, "amount", maximum=10_000.0)
    model = fraud_bundle_copy / "model" / "model.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    manifest_before = (fraud_bundle_copy / "rtserve.yaml").read_text()

    result = rtserve_cli("reseal", fraud_bundle_copy)

    assert result.exit_code == 1
    assert "model/model.skops" in result.stderr
    assert "only rtserve.yaml may be edited" in result.stderr
    assert (fraud_bundle_copy / "rtserve.yaml").read_text() == manifest_before


def test_reseal_refuses_an_added_file(fraud_bundle_copy: Path) -> None:
    (fraud_bundle_copy / "notes.txt").write_text("hello")

    with pytest.raises(IntegrityError, match=r"notes\.txt"):
        reseal(fraud_bundle_copy)


def test_reseal_refuses_a_schema_that_rejects_the_validation_sample(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    _edit_field(fraud_bundle_copy, "hour", maximum=3)
    manifest_before = (fraud_bundle_copy / "rtserve.yaml").read_text()

    result = rtserve_cli("reseal", fraud_bundle_copy)

    assert result.exit_code == 1
    assert "rejects the validation sample" in result.stderr
    assert "hour" in result.stderr
    assert (fraud_bundle_copy / "rtserve.yaml").read_text() == manifest_before


def test_reseal_refuses_an_edit_that_changes_the_models_outputs(fraud_bundle_copy: Path) -> None:
    # Imputing a constant where the model used to receive NaN changes its predictions.
    _edit_field(fraud_bundle_copy, "amount", missing="impute", impute=10_000.0)

    with pytest.raises(SchemaDefinitionError, match="does NOT match"):
        reseal(fraud_bundle_copy)


def test_reseal_of_an_untouched_bundle_changes_nothing(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    digest = rtserve.Bundle.open(fraud_bundle_copy).digest

    result = rtserve_cli("reseal", fraud_bundle_copy, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["changed"] is False
    assert document["old_digest"] == document["new_digest"] == digest
    assert document["parity"]["passed"] is True


def test_reseal_works_on_directories_only(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    rtserve.Bundle.open(fraud_bundle_dir).save(tmp_path / "fraud-1.tar.gz")

    result = rtserve_cli("reseal", tmp_path / "fraud-1.tar.gz")

    assert result.exit_code == 1
    assert "unpack the archive" in result.stderr


@pytest.mark.parametrize(
    ("key", "edit"),
    [
        ("name", lambda m: m.update(name="fraud-v2")),
        ("version", lambda m: m.update(version="2")),
        ("environment", lambda m: m["environment"]["packages"].update({"scikit-learn": "0.1"})),
        ("created_at", lambda m: m.update(created_at="2020-01-01T00:00:00Z")),
        ("runtime", lambda m: m["runtime"]["options"].update({"label_from_proba": False})),
    ],
)
def test_reseal_refuses_an_edit_of_identity_or_environment_naming_the_section(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, key: str, edit: Any
) -> None:
    path = fraud_bundle_copy / "rtserve.yaml"
    manifest = yaml.safe_load(path.read_text())
    edit(manifest)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))

    result = rtserve_cli("reseal", fraud_bundle_copy)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: rtserve.yaml: {key} changed since the build; ")
    assert "description, fallback, output, schema only" in result.stderr
    assert rtserve_cli("verify", fraud_bundle_copy).exit_code == 1  # still not resealed


def test_reseal_accepts_a_new_description_and_policies_with_a_schema_edit(
    rtserve_cli: Invoke, fraud_bundle_copy: Path
) -> None:
    path = fraud_bundle_copy / "rtserve.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["description"] = "fraud scores for card payments"
    manifest["output"] = {"round_probabilities": 3}
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    _edit_field(fraud_bundle_copy, "amount", minimum=0.0)

    result = rtserve_cli("reseal", fraud_bundle_copy)

    assert result.exit_code == 0, result.output
    assert rtserve.Bundle.open(fraud_bundle_copy).manifest.description.startswith("fraud scores")
