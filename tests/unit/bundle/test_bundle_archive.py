"""Specification: bundles pack into .tar.gz and unpack without letting any entry escape."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve import Bundle
from rtserve.bundle.archive import unpack
from rtserve.errors import BundleFormatError, IntegrityError, UnsafeArchiveError


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _archive_with(path: Path, bundle_dir: Path, extra: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A genuine bundle's files plus one crafted entry."""
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(bundle_dir.rglob("*")):
            if file.is_file():
                _add_bytes(tar, file.relative_to(bundle_dir).as_posix(), file.read_bytes())
        extra.size = len(data)
        tar.addfile(extra, io.BytesIO(data) if data else None)
    return path


def test_a_bundle_round_trips_through_tar_gz(
    fraud_bundle_dir: Path, tmp_path: Path, transactions: pd.DataFrame, fraud_pipeline: object
) -> None:
    original = Bundle.open(fraud_bundle_dir)
    packed = original.save(tmp_path / "fraud-1.tar.gz")
    assert (tmp_path / "fraud-1.tar.gz").is_file()
    reopened = Bundle.open(tmp_path / "fraud-1.tar.gz")
    assert reopened.digest == packed.digest == original.digest
    predictor = rtserve.load(tmp_path / "fraud-1.tar.gz")
    np.testing.assert_allclose(
        predictor.predict(transactions).probabilities,
        fraud_pipeline.predict_proba(transactions),  # type: ignore[attr-defined]
        rtol=0,
        atol=1e-9,
    )


def test_the_archive_holds_no_owners_or_links(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    Bundle.open(fraud_bundle_dir).save(tmp_path / "fraud-1.tar.gz")
    with tarfile.open(tmp_path / "fraud-1.tar.gz") as tar:
        members = tar.getmembers()
    assert {m.uid for m in members} == {0}
    assert all(m.isfile() or m.isdir() for m in members)
    assert "rtserve.yaml" in {m.name for m in members}


def test_an_archive_with_one_top_level_folder_opens(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "wrapped.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fraud_bundle_dir, arcname="fraud-1")
    assert Bundle.open(archive).digest == Bundle.open(fraud_bundle_dir).digest


def test_a_changed_byte_inside_an_archive_is_refused(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for file in sorted(fraud_bundle_dir.rglob("*")):
            if file.is_file():
                data = file.read_bytes()
                if file.name == "profile.json":
                    data = data.replace(b"0", b"1", 1)
                _add_bytes(tar, file.relative_to(fraud_bundle_dir).as_posix(), data)
    with pytest.raises(IntegrityError, match=r"profile.json"):
        Bundle.open(archive)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../escaped.txt", "climbs out of the bundle"),
        ("model/../../escaped.txt", "climbs out of the bundle"),
        ("/tmp/rtserve-absolute-escape.txt", "is an absolute path"),
    ],
)
def test_entries_that_would_leave_the_bundle_are_refused(
    fraud_bundle_dir: Path, tmp_path: Path, entry: str, message: str
) -> None:
    archive = _archive_with(
        tmp_path / "evil.tar.gz", fraud_bundle_dir, tarfile.TarInfo(entry), b"x"
    )
    destination = tmp_path / "out" / "bundle"
    with pytest.raises(UnsafeArchiveError, match=message) as caught:
        unpack(archive, destination)
    assert caught.value.field == entry
    assert not (tmp_path / "out" / "escaped.txt").exists()
    assert not destination.exists()  # nothing is extracted when one entry is bad
    with pytest.raises(UnsafeArchiveError):
        rtserve.load(archive)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_refused(fraud_bundle_dir: Path, tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("model/outside")
    link.type = kind
    link.linkname = "../../../etc/passwd"
    archive = _archive_with(tmp_path / "link.tar.gz", fraud_bundle_dir, link)
    with pytest.raises(UnsafeArchiveError, match=r"is a link.*bundles hold no links"):
        Bundle.open(archive)


def test_device_files_are_refused(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    device = tarfile.TarInfo("model/device")
    device.type = tarfile.CHRTYPE
    archive = _archive_with(tmp_path / "device.tar.gz", fraud_bundle_dir, device)
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        Bundle.open(archive)


def test_packing_refuses_a_bundle_directory_holding_a_link(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    bundle = Bundle.open(fraud_bundle_copy)
    (fraud_bundle_copy / "model" / "link").symlink_to("/etc/hostname")
    with pytest.raises(IntegrityError, match="bundles hold only regular files") as caught:
        bundle.save(tmp_path / "linked.tar.gz")
    assert caught.value.field == "model/link"
    assert not (tmp_path / "linked.tar.gz").exists()


def test_a_file_that_is_not_a_gzip_tar_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"not a tar file at all")
    with pytest.raises(BundleFormatError, match=r"not a readable .tar.gz"):
        Bundle.open(archive)


def test_a_truncated_archive_is_refused_as_unreadable(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    packed = tmp_path / "whole.tar.gz"
    Bundle.open(fraud_bundle_dir).save(packed)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(BundleFormatError, match=r"not a readable \.tar\.gz"):
        Bundle.open(truncated)
