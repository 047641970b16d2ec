"""Versions: content-addressed, immutable, all-or-nothing pushes; model cards; resolution."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rtserve.errors import (
    IntegrityError,
    RegistryConflictError,
    RegistryInputError,
    RegistryNotFoundError,
    RegistryPermissionError,
)
from rtserve.registry import Registry, schema
from rtserve.registry.card import roc_auc


def _artifacts(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_pushing_stores_the_bundle_under_its_digest_and_records_who_pushed_it(
    registry, fraud_versions
):
    version = registry.push(fraud_versions["1"], "key:mae", owner="risk-team")
    assert (version.name, version.version, version.pushed_by) == ("fraud", "1", "key:mae")
    assert version.digest.startswith("sha256:")
    assert version.artifact.endswith(version.digest.split(":")[1] + ".tar.gz")
    assert registry.store.exists(version.digest)
    assert version.card.owner == "risk-team"


def test_pushing_the_same_bundle_twice_is_a_no_op(registry, fraud_versions, tmp_path):
    first = registry.push(fraud_versions["1"], "key:mae")
    entries = len(registry.audit())
    again = registry.push(fraud_versions["1"], "key:max")
    assert again == first
    assert len(registry.audit()) == entries
    assert len(registry.versions("fraud")) == 1


def test_another_bundle_under_an_existing_version_is_refused_naming_both_digests(
    registry, fraud_pipeline, transactions, tmp_path
):
    import rtserve

    a = tmp_path / "a"
    b = tmp_path / "b"
    rtserve.build(fraud_pipeline, transactions.head(60), name="fraud", version="7",
                  optimize="off").save(a)  # fmt: skip
    rtserve.build(fraud_pipeline, transactions.head(80), name="fraud", version="7",
                  optimize="off").save(b)  # fmt: skip
    first = registry.push(a, "key:mae")
    with pytest.raises(RegistryConflictError) as caught:
        registry.push(b, "key:mae")
    assert first.digest in caught.value.message
    assert "immutable" in caught.value.message


def test_a_tampered_bundle_is_refused_and_leaves_neither_rows_nor_files(
    registry, fraud_versions, tmp_path
):
    copy = tmp_path / "tampered"
    shutil.copytree(fraud_versions["1"], copy)
    (copy / "validation.json").write_text((copy / "validation.json").read_text() + " ")
    with pytest.raises(IntegrityError):
        registry.push(copy, "key:mae")
    assert registry.models() == []
    assert _artifacts(tmp_path) == []


def test_a_push_whose_database_write_fails_leaves_no_artifact_behind(
    registry, fraud_versions, tmp_path, monkeypatch
):
    def broken_audit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Registry, "_audit", broken_audit)
    with pytest.raises(RuntimeError, match="disk full"):
        registry.push(fraud_versions["1"], "key:mae")
    monkeypatch.undo()
    assert registry.models() == []
    assert _artifacts(tmp_path) == []


def test_a_viewer_cannot_push(registry, fraud_versions):
    with pytest.raises(RegistryPermissionError, match="maintainer"):
        registry.push(fraud_versions["1"], "key:vic")


def test_a_version_label_that_is_a_stage_name_is_refused(
    registry, fraud_pipeline, transactions, tmp_path
):
    import rtserve

    target = tmp_path / "odd"
    rtserve.build(fraud_pipeline, transactions.head(60), name="fraud", version="production",
                  optimize="off").save(target)  # fmt: skip
    with pytest.raises(RegistryInputError, match="stage name"):
        registry.push(target, "key:mae")


def test_the_model_card_holds_metrics_from_the_validation_sample_and_the_labels(
    registry, fraud_versions
):
    from rtserve.bundle.bundle import Bundle

    sample = Bundle.open(fraud_versions["2"]).read_validation()
    labels = [int(x) for x in sample.outputs["label"]]
    labels[0] = 1 - labels[0]  # one mistake
    version = registry.push(fraud_versions["2"], "key:mae", intended_use="card fraud",
                            training_data="s3://data/2024-06", limitations="EU only",
                            labels=labels)  # fmt: skip
    metrics = version.card.metrics
    assert metrics["validation_rows"] == sample.rows
    assert metrics["accuracy"] == pytest.approx(1 - 1 / sample.rows)
    assert 0.0 <= metrics["roc_auc"] <= 1.0
    shown = registry.show("fraud@2")["version"]["card"]
    assert shown["intended_use"] == "card fraud"
    assert shown["limitations"] == "EU only"


def test_labels_that_do_not_match_the_validation_rows_are_refused(registry, fraud_versions):
    with pytest.raises(RegistryInputError, match="one label per"):
        registry.push(fraud_versions["1"], "key:mae", labels=[0, 1])


def test_roc_auc_by_ranks_matches_the_textbook_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [False, True]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.2], [True, True]) is None


def test_a_version_resolves_by_label_stage_and_alias(registry, fraud_versions):
    registry.push(fraud_versions["1"], "key:mae")
    registry.push(fraud_versions["2"], "key:mae")
    registry.promote("fraud", "1", to="staging", actor="key:mae")
    registry.set_alias("fraud", "challenger", "2", actor="key:mae")
    assert registry.resolve("fraud@1").version == "1"
    assert registry.resolve("fraud@staging").version == "1"
    assert registry.resolve("fraud@challenger").version == "2"
    assert registry.version("fraud", "staging").pointers == ("staging",)
    with pytest.raises(RegistryNotFoundError, match="production"):
        registry.resolve("fraud@production")
    with pytest.raises(RegistryNotFoundError):
        registry.resolve("fraud@9")
    with pytest.raises(RegistryNotFoundError):
        registry.resolve("churn@1")


def test_the_bundle_path_of_a_stage_opens_as_the_pushed_bundle(registry, fraud_versions):
    from rtserve.bundle.bundle import Bundle

    pushed = registry.push(fraud_versions["1"], "key:mae")
    registry.promote("fraud", "1", to="staging", actor="key:mae")
    assert Bundle.open(registry.bundle_path("fraud@staging")).digest == pushed.digest


def test_list_shows_each_model_with_its_stages_and_aliases(registry, fraud_versions):
    registry.push(fraud_versions["1"], "key:mae")
    registry.push(fraud_versions["2"], "key:mae")
    registry.promote("fraud", "2", to="staging", actor="key:mae")
    [summary] = registry.models()
    assert (summary.name, summary.versions, summary.latest) == ("fraud", 2, "2")
    assert summary.stages == {"staging": "2", "production": None}


def test_an_empty_database_is_migrated_and_a_second_open_is_a_no_op(registry_url, tmp_path):
    first = Registry.open(url=registry_url, store=str(tmp_path / "a"))
    assert first.migrated == ["0001", "0002"]
    with first.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {t.name for t in schema.metadata.sorted_tables} <= tables
    first.init("key:admin")
    second = Registry.open(url=registry_url, store=str(tmp_path / "a"))
    assert second.migrated == []
    assert second.roles() == {"key:admin": ["admin"]}
    first.close()
    second.close()


def test_a_registry_directory_holds_the_database_next_to_the_artifacts(tmp_path, fraud_versions):
    reg = Registry.open(tmp_path / "reg")
    reg.init("key:admin")
    reg.push(fraud_versions["1"], "key:admin")
    assert (tmp_path / "reg" / "registry.db").is_file()
    assert any((tmp_path / "reg" / "artifacts").rglob("*.tar.gz"))
    reg.close()


def test_an_fsspec_store_url_works_like_a_directory(tmp_path, fraud_versions):
    from rtserve.bundle.bundle import Bundle

    reg = Registry.open(url=f"sqlite:///{tmp_path / 'r.db'}", store=f"file://{tmp_path / 'store'}")
    reg.init("key:admin")
    pushed = reg.push(fraud_versions["1"], "key:admin")
    reg.promote("fraud", "1", to="staging", actor="key:admin")
    assert Bundle.open(reg.bundle_path("fraud@staging")).digest == pushed.digest
    reg.close()
