"""Specification: unpacking a bundle archive is bounded in entries, bytes and leftovers.

``rtserve.yaml`` is read first (bounded); entries it does not list, more than ``MAX_MEMBERS``
entries, or more bytes than 4x the sizes it records (never more than ``max_bytes``) are refused
before anything is written; the write pass counts the bytes really written; and the temporary
directory of ``Bundle.open`` is gone after every failure.
"""

from __future__ import annotations

import gc
import gzip
import io
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

import rtserve
from rtserve import Bundle
from rtserve.bundle import archive as archive_module
from rtserve.bundle.archive import MAX_BUNDLE_BYTES, MAX_MEMBERS, unpack
from rtserve.bundle.integrity import compute_digest
from rtserve.bundle.manifest import MANIFEST_FILE, read_manifest
from rtserve.errors import (
    BundleError,
    BundleFormatError,
    BundleTooLargeError,
    IntegrityError,
    UnsafeArchiveError,
)
from rtserve.settings import Settings

MIB = 1 << 20
#: One MiB of zeros as a gzip member (about 1 KiB); gzip streams may be concatenated members.
_ZEROS_GZ = gzip.compress(bytes(MIB), compresslevel=9)

Entry = tuple[tarfile.TarInfo, bytes | int | None]


def _file(name: str, data: bytes | int) -> Entry:
    """A regular file; an int is that many zero bytes, written as a cheap gzip bomb."""
    info = tarfile.TarInfo(name)
    info.size = data if isinstance(data, int) else len(data)
    return info, data


def _dir(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def write_archive(path: Path, entries: list[Entry]) -> Path:
    """A .tar.gz of ``entries`` in order, zero runs as repeated gzip members (tiny on disk)."""
    with path.open("wb") as out:
        for info, data in entries:
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if isinstance(data, int):
                assert data % MIB == 0
                out.write(gzip.compress(header) + _ZEROS_GZ * (data // MIB))
            else:
                body = data or b""
                padding = bytes(-len(body) % tarfile.BLOCKSIZE)
                out.write(gzip.compress(header + body + padding))
        out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))
    return path


def bundle_entries(directory: Path, **replace: bytes | int) -> list[Entry]:
    """A genuine bundle's files, manifest first (as ``pack`` writes them), some replaced."""
    files = sorted(
        (p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.name != MANIFEST_FILE
    )
    entries: list[Entry] = []
    for path in files:
        relative = path.relative_to(directory).as_posix()
        key = relative.replace("/", "__").replace(".", "_")
        entries.append(_file(relative, replace.get(key, path.read_bytes())))
    return entries


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``tempfile`` puts new directories during the test (so leftovers can be seen)."""
    directory = tmp_path / "private-tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_pack_writes_the_manifest_first_so_the_cap_is_known_before_any_file(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    Bundle.open(fraud_bundle_dir).save(tmp_path / "fraud.tar.gz")
    with tarfile.open(tmp_path / "fraud.tar.gz") as tar:
        assert tar.getnames()[0] == MANIFEST_FILE


def test_a_sealed_bundle_records_the_size_of_every_file(fraud_bundle_dir: Path) -> None:
    manifest = read_manifest(fraud_bundle_dir)
    assert manifest.sizes == {
        relative: (fraud_bundle_dir / relative).stat().st_size for relative in manifest.files
    }


def test_a_recorded_size_that_differs_from_the_file_is_refused(fraud_bundle_copy: Path) -> None:
    manifest = read_manifest(fraud_bundle_copy)
    assert manifest.sizes is not None
    sizes = {**manifest.sizes, "profile.json": manifest.sizes["profile.json"] + 1}
    forged = manifest.model_copy(update={"sizes": sizes})
    forged.model_copy(update={"digest": compute_digest(forged)}).write(fraud_bundle_copy)

    with pytest.raises(BundleFormatError, match="the manifest records") as caught:
        Bundle.open(fraud_bundle_copy)

    assert caught.value.field == "sizes"


def test_an_archive_with_more_entries_than_the_limit_is_refused_before_extracting(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    entries = bundle_entries(fraud_bundle_dir)
    entries += [_dir(f"junk/{i}") for i in range(MAX_MEMBERS)]
    archive = write_archive(tmp_path / "many.tar.gz", entries)
    destination = tmp_path / "out"

    with pytest.raises(BundleTooLargeError, match=f"more than {MAX_MEMBERS} entries") as caught:
        unpack(archive, destination)

    assert caught.value.field == entries[MAX_MEMBERS][0].name
    assert not destination.exists()


@pytest.mark.parametrize("manifest_first", [True, False])
def test_a_gzip_bomb_of_zeros_is_refused_before_a_byte_is_written(
    fraud_bundle_dir: Path, tmp_path: Path, manifest_first: bool
) -> None:
    entries = bundle_entries(fraud_bundle_dir, validation_json=1024 * MIB)
    if not manifest_first:  # the bomb first: the header pass must read past it, in memory only
        entries.reverse()
    archive = write_archive(tmp_path / "bomb.tar.gz", entries)
    assert archive.stat().st_size < 2 * MIB
    destination = tmp_path / "out"

    started = time.perf_counter()
    with pytest.raises(BundleTooLargeError, match=r"4x the file sizes") as caught:
        unpack(archive, destination)

    assert caught.value.field == "validation.json"
    assert "nothing was unpacked" in caught.value.message
    assert not destination.exists()
    if manifest_first:  # refused at the bomb's header: nothing was even decompressed
        assert time.perf_counter() - started < 1.0


def test_without_recorded_sizes_the_absolute_cap_applies_and_can_be_raised(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    # a bundle sealed before sizes were recorded: only the absolute cap bounds it
    manifest = read_manifest(fraud_bundle_copy).model_copy(update={"sizes": None})
    manifest.model_copy(update={"digest": compute_digest(manifest)}).write(fraud_bundle_copy)
    archive = write_archive(
        tmp_path / "big.tar.gz", bundle_entries(fraud_bundle_copy, validation_json=8 * MIB)
    )

    with pytest.raises(BundleTooLargeError, match="the limit for unpacked bundles") as caught:
        Bundle.open(archive, max_bytes=4 * MIB)
    assert "max_bundle_bytes" in caught.value.message  # what to do about it
    with pytest.raises(BundleTooLargeError):
        rtserve.load(archive, max_bundle_bytes=4 * MIB)
    # raised, the cap lets it unpack; the zeros then fail their hash like any changed file
    with pytest.raises(IntegrityError, match=r"validation\.json"):
        Bundle.open(archive, max_bytes=16 * MIB)


def test_a_stream_yielding_more_than_its_header_declares_stops_at_the_declared_size(
    fraud_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_archive(tmp_path / "lying.tar.gz", bundle_entries(fraud_bundle_dir))
    served = 0

    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            nonlocal served
            buffer[:] = bytes(len(buffer))
            served += len(buffer)
            return len(buffer)

    original = tarfile.TarFile.extractfile

    def lying(self: tarfile.TarFile, member: tarfile.TarInfo | str) -> io.BufferedReader | None:
        if isinstance(member, tarfile.TarInfo) and member.name == "validation.json":
            return io.BufferedReader(Endless())
        return original(self, member)  # type: ignore[return-value]

    monkeypatch.setattr(tarfile.TarFile, "extractfile", lying)
    destination = tmp_path / "out"

    with pytest.raises(BundleTooLargeError, match="streamed more bytes than it declared") as c:
        unpack(archive, destination)

    assert c.value.field == "validation.json"
    declared = (fraud_bundle_dir / "validation.json").stat().st_size
    assert served <= declared + 2 * MIB  # it stopped within a chunk of what was declared
    assert not destination.exists()


def test_an_entry_the_manifest_does_not_list_is_refused_before_extracting(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    entries = [*bundle_entries(fraud_bundle_dir), _file("model/backdoor.py", b"print(1)\n")]
    archive = write_archive(tmp_path / "extra.tar.gz", entries)

    with pytest.raises(UnsafeArchiveError, match="not one of the files") as caught:
        unpack(archive, tmp_path / "out")

    assert caught.value.field == "model/backdoor.py"
    assert not (tmp_path / "out").exists()


def test_an_entry_that_appears_twice_is_refused(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    entries = [*bundle_entries(fraud_bundle_dir), _file("profile.json", b"{}")]
    archive = write_archive(tmp_path / "twice.tar.gz", entries)

    with pytest.raises(UnsafeArchiveError, match="appears twice") as caught:
        Bundle.open(archive)

    assert caught.value.field == "profile.json"


def test_a_second_manifest_is_refused(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    manifest = (fraud_bundle_dir / MANIFEST_FILE).read_bytes()
    entries = [*bundle_entries(fraud_bundle_dir), _file(f"model/{MANIFEST_FILE}", manifest)]
    archive = write_archive(tmp_path / "two.tar.gz", entries)

    with pytest.raises(UnsafeArchiveError, match=f"second {MANIFEST_FILE}"):
        Bundle.open(archive)


def test_an_oversized_extended_header_is_refused_without_reading_it(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    entries = bundle_entries(fraud_bundle_dir)
    entries[1][0].pax_headers = {"comment": "x" * (3 * MIB)}
    archive = write_archive(tmp_path / "pax.tar.gz", entries)

    with pytest.raises(BundleTooLargeError, match="asks to read"):
        Bundle.open(archive)


def test_a_manifest_entry_over_its_size_limit_is_refused_unread(
    fraud_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "MAX_MANIFEST_BYTES", 100)
    archive = write_archive(tmp_path / "m.tar.gz", bundle_entries(fraud_bundle_dir))

    with pytest.raises(BundleTooLargeError, match="over the limit of 100") as caught:
        unpack(archive, tmp_path / "out")

    assert caught.value.field == MANIFEST_FILE


def test_a_sparse_entry_is_refused(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    entries = bundle_entries(fraud_bundle_dir)
    info, _ = entries[1]
    sparse_map = b"1\n0\n0\n".ljust(tarfile.BLOCKSIZE, b"\0")
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": info.name,
        "GNU.sparse.realsize": str(1 << 30),
    }
    info.size = len(sparse_map)
    entries[1] = (info, sparse_map)
    archive = write_archive(tmp_path / "sparse.tar.gz", entries)

    with pytest.raises(UnsafeArchiveError, match="sparse file") as caught:
        unpack(archive, tmp_path / "out")

    assert caught.value.field == info.name


def _no_manifest(bundle_dir: Path, path: Path) -> None:
    write_archive(path, bundle_entries(bundle_dir)[1:])


def _unparseable_manifest(bundle_dir: Path, path: Path) -> None:
    write_archive(path, bundle_entries(bundle_dir, rtserve_yaml=b"format: [unclosed\n"))


def _invalid_manifest(bundle_dir: Path, path: Path) -> None:
    text = (bundle_dir / MANIFEST_FILE).read_bytes().replace(b"validation: ", b"validation: /")
    write_archive(path, bundle_entries(bundle_dir, rtserve_yaml=text))


def _link(bundle_dir: Path, path: Path) -> None:
    link = tarfile.TarInfo("model/outside")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    write_archive(path, [*bundle_entries(bundle_dir), (link, None)])


def _bomb(bundle_dir: Path, path: Path) -> None:
    write_archive(path, bundle_entries(bundle_dir, profile_json=64 * MIB))


def _changed_byte(bundle_dir: Path, path: Path) -> None:
    profile = bytearray((bundle_dir / "profile.json").read_bytes())
    profile[10] ^= 1
    write_archive(path, bundle_entries(bundle_dir, profile_json=bytes(profile)))


def _not_gzip(bundle_dir: Path, path: Path) -> None:
    path.write_bytes(b"not a tar file at all")


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (_no_manifest, BundleFormatError),
        (_unparseable_manifest, IntegrityError),
        (_invalid_manifest, BundleError),
        (_link, UnsafeArchiveError),
        (_bomb, BundleTooLargeError),
        (_changed_byte, IntegrityError),
        (_not_gzip, BundleFormatError),
    ],
)
def test_the_temporary_directory_is_removed_on_every_failure(
    fraud_bundle_dir: Path, tmp_path: Path, private_tmp: Path, make: object, error: type
) -> None:
    archive = tmp_path / "hostile.tar.gz"
    make(fraud_bundle_dir, archive)  # type: ignore[operator]

    with pytest.raises(error):
        Bundle.open(archive)

    assert list(private_tmp.iterdir()) == []


def test_the_temporary_directory_is_removed_when_the_write_pass_fails(
    fraud_bundle_dir: Path, tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_archive(tmp_path / "ok.tar.gz", bundle_entries(fraud_bundle_dir))

    def full_disk(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive_module.os, "fdopen", full_disk)
    with pytest.raises(BundleError, match="No space left on device"):
        Bundle.open(archive)

    assert list(private_tmp.iterdir()) == []


def test_an_archive_of_dot_prefixed_entries_opens(fraud_bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "dotted.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fraud_bundle_dir, arcname=".")  # what `tar czf x.tgz -C bundle .` makes
    assert Bundle.open(archive).digest == Bundle.open(fraud_bundle_dir).digest


def test_an_entry_outside_the_single_top_folder_is_refused(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    entries = [
        _file(f"fraud-1/{info.name}", data)
        for info, data in bundle_entries(fraud_bundle_dir)
        if data is not None
    ]
    entries.append(_file("elsewhere.txt", b"x"))
    archive = write_archive(tmp_path / "two-roots.tar.gz", entries)

    with pytest.raises(UnsafeArchiveError, match="outside the bundle's folder") as caught:
        Bundle.open(archive)

    assert caught.value.field == "elsewhere.txt"


def test_a_bundle_sealed_before_sizes_were_recorded_opens_packs_and_reseals_unchanged(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(fraud_bundle_copy).model_copy(
        update={"sizes": None, "sealed_sections": None}
    )
    old = manifest.model_copy(update={"digest": compute_digest(manifest)})
    old.write(fraud_bundle_copy)
    assert "\nsizes:" not in (fraud_bundle_copy / MANIFEST_FILE).read_text()

    reopened = Bundle.open(fraud_bundle_copy).save(tmp_path / "old.tar.gz")
    resealed = Bundle.seal(fraud_bundle_copy, read_manifest(fraud_bundle_copy))

    assert reopened.digest == resealed.digest == old.digest
    assert resealed.manifest.sizes is None
    assert resealed.manifest.sealed_sections is None


def test_the_max_bundle_bytes_setting_defaults_to_the_archive_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.load().loading.max_bundle_bytes == MAX_BUNDLE_BYTES
    monkeypatch.setenv("RTSERVE_LOADING__MAX_BUNDLE_BYTES", str(16 * 1024**3))
    assert Settings.load().loading.max_bundle_bytes == 16 * 1024**3


def test_a_genuine_archive_opens_in_a_temporary_directory_removed_with_the_bundle(
    fraud_bundle_dir: Path, tmp_path: Path, private_tmp: Path
) -> None:
    packed = Bundle.open(fraud_bundle_dir).save(tmp_path / "fraud.tar.gz")

    assert packed.digest == Bundle.open(fraud_bundle_dir).digest
    assert [p.name[:15] for p in private_tmp.iterdir()] == ["rtserve-bundle-"]
    del packed
    gc.collect()
    assert list(private_tmp.iterdir()) == []
