"""Specification: a bundle proves it is the one that was built; any change is refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import rtserve
from rtserve import Bundle
from rtserve.bundle.manifest import MANIFEST_FILE, read_manifest
from rtserve.errors import BundleError, BundleFormatError, IntegrityError


def _flip_byte(path: Path, position: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if position is None else position
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def _bundle_files(directory: Path) -> list[str]:
    return [*read_manifest(directory).files, MANIFEST_FILE]


def test_a_fresh_bundle_opens_verified_with_a_sha256_digest(fraud_bundle_dir: Path) -> None:
    bundle = Bundle.open(fraud_bundle_dir)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", bundle.digest)
    assert sorted(bundle.manifest.files) == [
        "model/model.skops",
        "optimized/model.onnx",  # the ONNX export that passed its parity gate
        "profile.json",
        "validation.json",
    ]
    bundle.verify()


def test_every_file_of_the_bundle_is_hashed(fraud_bundle_dir: Path) -> None:
    on_disk = sorted(
        p.relative_to(fraud_bundle_dir).as_posix()
        for p in fraud_bundle_dir.rglob("*")
        if p.is_file()
    )
    assert on_disk == sorted(_bundle_files(fraud_bundle_dir))


@pytest.mark.parametrize(
    "relative", ["model/model.skops", "profile.json", "validation.json", MANIFEST_FILE]
)
def test_one_flipped_byte_in_any_file_is_refused_naming_the_file(
    fraud_bundle_copy: Path, relative: str
) -> None:
    _flip_byte(fraud_bundle_copy / relative)
    with pytest.raises(IntegrityError) as caught:
        Bundle.open(fraud_bundle_copy)
    assert caught.value.field == relative
    assert caught.value.message.startswith(f"{relative}: ")
    assert "modified or corrupted" in caught.value.message
    with pytest.raises(IntegrityError):
        rtserve.load(fraud_bundle_copy)


@pytest.mark.parametrize("position", [0, 1, 100, -2])
def test_a_flipped_byte_anywhere_in_the_model_file_is_refused(
    fraud_bundle_copy: Path, position: int
) -> None:
    model = fraud_bundle_copy / "model/model.skops"
    _flip_byte(model, position % model.stat().st_size)
    with pytest.raises(IntegrityError, match=r"model/model.skops"):
        Bundle.open(fraud_bundle_copy)


def test_a_hand_edited_schema_is_refused_with_a_hint(fraud_bundle_copy: Path) -> None:
    manifest = fraud_bundle_copy / MANIFEST_FILE
    text = manifest.read_text()
    edited = text.replace(
        "  - name: hour\n    type: int\n    missing: reject",
        "  - name: hour\n    type: int\n    missing: pass",
        1,
    )
    assert edited != text
    manifest.write_text(edited)
    with pytest.raises(IntegrityError) as caught:
        rtserve.load(fraud_bundle_copy)
    assert caught.value.field == MANIFEST_FILE
    assert "edited after the build" in caught.value.message
    assert "rtserve reseal" in caught.value.message


def test_an_edited_file_hash_in_the_manifest_is_refused(fraud_bundle_copy: Path) -> None:
    manifest = fraud_bundle_copy / MANIFEST_FILE
    recorded = read_manifest(fraud_bundle_copy).files["profile.json"]
    forged = ("0" if recorded[0] != "0" else "1") + recorded[1:]
    manifest.write_text(manifest.read_text().replace(recorded, forged))
    with pytest.raises(IntegrityError, match=MANIFEST_FILE):
        Bundle.open(fraud_bundle_copy)


def test_a_missing_file_is_refused_naming_it(fraud_bundle_copy: Path) -> None:
    (fraud_bundle_copy / "validation.json").unlink()
    with pytest.raises(IntegrityError, match="missing from the bundle") as caught:
        Bundle.open(fraud_bundle_copy)
    assert caught.value.field == "validation.json"


def test_an_extra_file_is_refused_naming_it(fraud_bundle_copy: Path) -> None:
    (fraud_bundle_copy / "model" / "backdoor.py").write_text("print('hi')\n")
    with pytest.raises(IntegrityError, match="unexpected file") as caught:
        Bundle.open(fraud_bundle_copy)
    assert caught.value.field == "model/backdoor.py"


def test_a_model_file_replaced_by_a_link_to_identical_bytes_is_refused(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    model = fraud_bundle_copy / "model/model.skops"
    outside = tmp_path / "elsewhere.skops"
    outside.write_bytes(model.read_bytes())
    model.unlink()
    model.symlink_to(outside)
    with pytest.raises(IntegrityError, match="symbolic link") as caught:
        Bundle.open(fraud_bundle_copy)
    assert caught.value.field == "model/model.skops"


def test_verify_notices_a_change_made_after_opening(fraud_bundle_copy: Path) -> None:
    bundle = Bundle.open(fraud_bundle_copy)
    _flip_byte(fraud_bundle_copy / "profile.json")
    with pytest.raises(IntegrityError, match=r"profile.json"):
        bundle.verify()
    with pytest.raises(IntegrityError, match=r"profile.json"):
        rtserve.load(bundle)


def test_opening_without_check_skips_hashing_but_verify_still_refuses(
    fraud_bundle_copy: Path,
) -> None:
    _flip_byte(fraud_bundle_copy / "profile.json")
    bundle = Bundle.open(fraud_bundle_copy, check=False)
    with pytest.raises(IntegrityError):
        bundle.verify()


def test_a_directory_without_a_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleFormatError, match=r"no rtserve.yaml found"):
        Bundle.open(tmp_path)
    with pytest.raises(BundleFormatError, match="no such bundle"):
        Bundle.open(tmp_path / "absent")


def test_a_manifest_of_another_format_is_refused(fraud_bundle_copy: Path) -> None:
    manifest = fraud_bundle_copy / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace("rtserve.bundle/v1", "rtserve.bundle/v9"))
    with pytest.raises(BundleFormatError, match="another major version"):
        Bundle.open(fraud_bundle_copy)


def test_saving_keeps_the_digest_and_refuses_to_overwrite(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    bundle = Bundle.open(fraud_bundle_dir)
    copy = bundle.save(tmp_path / "copy")
    assert copy.digest == bundle.digest
    with pytest.raises(BundleError, match="already exists; bundles are immutable"):
        bundle.save(tmp_path / "copy")
    assert bundle.save(tmp_path / "copy", overwrite=True).digest == bundle.digest


def test_saving_an_archive_refuses_to_overwrite_one_too(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    bundle = Bundle.open(fraud_bundle_dir)
    archive = tmp_path / "fraud-1.tar.gz"
    archive.write_bytes(b"someone else's archive")

    with pytest.raises(BundleError, match="already exists; bundles are immutable"):
        bundle.save(archive)
    assert archive.read_bytes() == b"someone else's archive"
    assert bundle.save(archive, overwrite=True).digest == bundle.digest


def test_a_built_bundle_describes_itself_as_json(
    fraud_bundle_dir: Path, transactions: pd.DataFrame
) -> None:
    described = Bundle.open(fraud_bundle_dir).describe()
    assert described["name"] == "fraud"
    assert described["runtime"]["adapter"] == "sklearn"  # type: ignore[index]
    assert [f["name"] for f in described["schema"]["inputs"]] == list(transactions.columns)  # type: ignore[index]
