"""Pack a bundle directory into ``.tar.gz`` and unpack one with every entry and byte bounded.

Unpacking reads the archive twice and writes only in the second pass. The first pass reads the
headers: it counts entries, refuses links, devices, absolute paths and ``..``, finds and parses
``rtserve.yaml`` (bounded), refuses entries the manifest does not list (but for the bounded
signature file ``rtserve.sig`` beside it), and adds up the sizes the entries declare against the
cap. The cap is ``SIZE_SLACK`` times the sizes the manifest records
(plus the manifest), never more than ``max_bytes``. The second pass streams each file to disk
counting what is actually written, so a stream that yields more than its header said stops at
the cap too. A failure anywhere removes everything written.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from rtserve.bundle.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from rtserve.bundle.paths import check_relative
from rtserve.bundle.signature import MAX_SIGNATURE_BYTES, SIGNATURE_FILE
from rtserve.errors import (
    BundleError,
    BundleFormatError,
    BundleTooLargeError,
    UnsafeArchiveError,
)

#: Default absolute cap on the bytes an archive may unpack to (raise it with ``max_bytes``, or
#: the ``loading.max_bundle_bytes`` setting / ``RTSERVE_LOADING__MAX_BUNDLE_BYTES`` for a server).
MAX_BUNDLE_BYTES = 4 << 30
#: Most entries (files and folders) in one archive; a bundle holds a handful.
MAX_MEMBERS = 10_000
#: An archive may unpack to at most this many times the file sizes its manifest records.
SIZE_SLACK = 4
#: Bytes moved per read and write while streaming a file out of the archive.
_CHUNK = 1 << 20
#: Largest single read the tar reader may ask for (its extended headers are read in one piece).
_MAX_READ = 2 << 20
#: Decompressed bytes the header pass may read through headers and the manifest, all together.
_HEADER_BUDGET = 64 << 20


def is_archive(path: Path) -> bool:
    """True for a path that names a packed bundle."""
    return path.is_file() and (path.name.endswith(".tar.gz") or path.name.endswith(".tgz"))


def pack(directory: Path, target: Path) -> Path:
    """Write ``directory``'s files (no links, no owners) into a gzip tar at ``target``.

    ``rtserve.yaml`` goes first, so an unpacker learns the cap from it before any other entry.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    paths = sorted(directory.rglob("*"), key=lambda p: (p.name != MANIFEST_FILE, p))
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in paths:
                relative = path.relative_to(directory).as_posix()
                if path.is_symlink():
                    raise UnsafeArchiveError(
                        f"{path}: links are not packed into bundles", field=relative
                    )
                if not (path.is_file() or path.is_dir()):
                    raise UnsafeArchiveError(
                        f"{path}: only regular files and folders are packed into bundles",
                        field=relative,
                    )
                info = tar.gettarinfo(str(path), arcname=relative)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if path.is_file():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    return target


def unpack(archive: Path, destination: Path, *, max_bytes: int = MAX_BUNDLE_BYTES) -> Path:
    """Extract ``archive`` into ``destination`` after checking every entry; return the bundle root.

    The root is ``destination`` or, for an archive of one top-level folder, that folder.

    Args:
        archive: the ``.tar.gz`` file.
        destination: an absent or empty folder to extract into.
        max_bytes: absolute cap on the bytes written, whatever the manifest records.

    Raises:
        BundleFormatError: not a readable gzip tar, no ``rtserve.yaml`` in it, or one that does
            not parse.
        UnsafeArchiveError: an absolute path, ``..``, a link, a device, a sparse or duplicate
            entry, an entry outside the bundle's folder or not listed in the manifest.
        BundleTooLargeError: more than ``MAX_MEMBERS`` entries, or more bytes (declared or
            actually streamed) than the cap.

        On any error nothing is left behind in ``destination``.
    """
    try:
        raw = archive.open("rb")
    except OSError as exc:
        raise BundleFormatError(
            f"{archive}: cannot be read ({exc.strerror})", field="path"
        ) from exc
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        stream = _BoundedStream(unzipped, _HEADER_BUDGET)
        with _readable(archive):
            # closed by the `with tar` that follows
            tar = tarfile.open(fileobj=stream, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115
        with tar:
            plan = _survey(tar, archive, max_bytes)
            stream.budget += plan.cap  # the write pass reads each file's bytes once more
            _extract(tar, plan, archive, destination)
    return destination / plan.prefix if plan.prefix else destination


@dataclass
class _Plan:
    """What the header pass found: the entries to write, the bundle's folder and the cap."""

    manifest: Manifest | None = None
    prefix: str = ""
    cap: int = 0
    declared: int = 0
    members: list[tuple[tarfile.TarInfo, str]] = field(default_factory=list)


def _survey(tar: tarfile.TarFile, archive: Path, max_bytes: int) -> _Plan:
    """The header pass: check every entry and the declared sizes; write nothing."""
    plan = _Plan(cap=max_bytes)
    seen: set[str] = set()
    with _readable(archive):
        for count, member in enumerate(_members(tar), start=1):
            if count > MAX_MEMBERS:
                raise BundleTooLargeError(
                    f"{archive}: holds more than {MAX_MEMBERS} entries; a bundle holds a "
                    "handful of files, so this is not one rtserve made",
                    field=member.name,
                )
            relative = _check_member(member)
            if relative in seen:
                raise UnsafeArchiveError(
                    f"archive entry {member.name!r} appears twice; which copy counts would "
                    "depend on the unpacker, so the archive is refused",
                    field=member.name,
                )
            seen.add(relative)
            plan.members.append((member, relative))
            if member.isdir():
                continue
            plan.declared += member.size
            if _is_manifest(relative):
                _take_manifest(tar, member, relative, plan, max_bytes)
            elif plan.manifest is not None:
                _check_listed(member, relative, plan)
            if plan.declared > plan.cap:
                raise _over_cap(archive, plan)
    if plan.manifest is None:
        raise BundleFormatError(
            f"{archive}: no {MANIFEST_FILE} at the archive's root or in its single top-level "
            "folder; is this an rtserve bundle? (pack one with Bundle.save('....tar.gz'))",
            field=MANIFEST_FILE,
        )
    for member, relative in plan.members:  # files were checked as they came (or at the manifest)
        if member.isdir() and relative not in ("", plan.prefix):
            _check_inside(member, relative, plan)
    return plan


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each entry in archive order, reading one header at a time (never the whole list)."""
    while (member := tar.next()) is not None:
        yield member


def _take_manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo, relative: str, plan: _Plan, max_bytes: int
) -> None:
    """Read and parse ``rtserve.yaml`` (bounded), then set the cap from what it records."""
    if plan.manifest is not None:
        raise UnsafeArchiveError(
            f"archive entry {member.name!r} is a second {MANIFEST_FILE}; a bundle has exactly one",
            field=member.name,
        )
    if member.size > MAX_MANIFEST_BYTES:
        raise BundleTooLargeError(
            f"archive entry {member.name!r} is {member.size} bytes, over the limit of "
            f"{MAX_MANIFEST_BYTES} for {MANIFEST_FILE}; rtserve never writes one this large",
            field=member.name,
        )
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - a regular file always has a reader
        raise UnsafeArchiveError(f"archive entry {member.name!r} cannot be read", field=member.name)
    with source:
        data = _read_all(source, member.size)
    plan.manifest = parse_manifest(data)
    plan.prefix = relative.rpartition("/")[0]
    if plan.manifest.sizes is not None:
        recorded = sum(plan.manifest.sizes.values()) + len(data)
        plan.cap = min(max_bytes, SIZE_SLACK * recorded)
    for earlier, earlier_relative in plan.members:
        if earlier.isfile() and earlier is not member:
            _check_listed(earlier, earlier_relative, plan)


def _read_all(source: IO[bytes], size: int) -> bytes:
    """All of a small entry, read in chunks (the tar reader's reads stay bounded)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0 and (chunk := source.read(min(_CHUNK, remaining))):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _is_manifest(relative: str) -> bool:
    """``rtserve.yaml`` at the root or in a top-level folder."""
    parts = relative.split("/")
    return parts[-1] == MANIFEST_FILE and len(parts) <= 2


def _check_inside(member: tarfile.TarInfo, relative: str, plan: _Plan) -> str:
    """The entry's path inside the bundle's folder, or refuse an entry outside it."""
    if not plan.prefix:
        return relative
    if not relative.startswith(plan.prefix + "/"):
        raise UnsafeArchiveError(
            f"archive entry {member.name!r} lies outside the bundle's folder {plan.prefix!r}; "
            "an archive holds one bundle, at its root or in one top-level folder",
            field=member.name,
        )
    return relative.removeprefix(plan.prefix + "/")


def _check_listed(member: tarfile.TarInfo, relative: str, plan: _Plan) -> None:
    """Refuse a file the manifest does not list: it would fail verification after unpacking.

    The one unlisted file allowed is the detached signature beside the manifest (the digest
    cannot hash its own signature), and only up to the size a signature file may have.
    """
    assert plan.manifest is not None  # noqa: S101 - only called once the manifest is parsed
    inside = _check_inside(member, relative, plan)
    if inside == SIGNATURE_FILE:
        if member.size > MAX_SIGNATURE_BYTES:
            raise BundleTooLargeError(
                f"archive entry {member.name!r} is {member.size} bytes, over the limit of "
                f"{MAX_SIGNATURE_BYTES} for {SIGNATURE_FILE}; rtserve sign never writes one "
                "this large, so nothing was unpacked",
                field=member.name,
            )
        return
    if inside not in plan.manifest.files:
        raise UnsafeArchiveError(
            f"archive entry {member.name!r} is not one of the files {MANIFEST_FILE} lists; "
            "a bundle holds only the files its manifest hashes, so nothing was unpacked",
            field=member.name,
        )


def _over_cap(archive: Path, plan: _Plan) -> BundleTooLargeError:
    """The refusal, naming the entry at which the declared sizes passed the cap."""
    total, name = 0, ""
    for member, _ in plan.members:
        total += member.size if member.isfile() else 0
        name = member.name
        if total > plan.cap:
            break
    recorded = plan.manifest is not None and plan.manifest.sizes is not None
    why = (
        f"{SIZE_SLACK}x the file sizes {MANIFEST_FILE} records"
        if recorded
        else "the limit for unpacked bundles"
    )
    return BundleTooLargeError(
        f"{archive}: unpacks to more than {plan.cap} bytes ({why}; {total} declared up to "
        f"entry {name!r}), so nothing was unpacked. A decompression bomb looks like this; for a "
        "genuinely larger bundle raise max_bundle_bytes (rtserve.load(..., "
        "max_bundle_bytes=N) or RTSERVE_LOADING__MAX_BUNDLE_BYTES)",
        field=name,
    )


def _extract(tar: tarfile.TarFile, plan: _Plan, archive: Path, destination: Path) -> None:
    """The write pass: stream each checked entry to disk, counting the bytes really written."""
    created_destination = not destination.exists()
    before = set() if created_destination else set(destination.iterdir())
    written = 0
    try:
        destination.mkdir(parents=True, exist_ok=True)
        for member, relative in plan.members:
            target = destination.joinpath(*relative.split("/"))
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = _write_member(tar, member, target, written, plan, archive)
    except BaseException as exc:
        if created_destination:
            shutil.rmtree(destination, ignore_errors=True)
        else:
            for entry in set(destination.iterdir()) - before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # reading errors arrive as BundleFormatError already
            raise BundleError(
                f"{archive}: cannot unpack into {destination} ({exc.strerror or exc})",
                field="path",
            ) from exc
        raise


def _write_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    target: Path,
    written: int,
    plan: _Plan,
    archive: Path,
) -> int:
    """Copy one file out of the archive; refuse past its declared size or the cap."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with _readable(archive):
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - a regular file always has a reader
            raise UnsafeArchiveError(
                f"archive entry {member.name!r} cannot be read", field=member.name
            )
        with source, os.fdopen(os.open(target, flags, 0o644), "wb") as sink:
            copied = 0
            while chunk := source.read(_CHUNK):
                copied += len(chunk)
                written += len(chunk)
                if copied > member.size or written > plan.cap:
                    raise BundleTooLargeError(
                        f"{archive}: entry {member.name!r} streamed more bytes than it declared "
                        f"or than the cap of {plan.cap} bytes allows; refused while unpacking "
                        "(a decompression bomb looks like this)",
                        field=member.name,
                    )
                sink.write(chunk)
    return written


def _check_member(member: tarfile.TarInfo) -> str:
    """Refuse an entry that could leave the bundle or is no plain file; its normalised path."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"archive entry {name!r} is an absolute path; refusing", field=name
        )
    if ".." in path.parts:
        raise UnsafeArchiveError(
            f"archive entry {name!r} climbs out of the bundle with '..'; refusing", field=name
        )
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"archive entry {name!r} is a link (to {member.linkname!r}); bundles hold no links",
            field=name,
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"archive entry {name!r} is not a regular file or directory; refusing", field=name
        )
    if member.issparse():
        raise UnsafeArchiveError(
            f"archive entry {name!r} is a sparse file, whose unpacked size its header does not "
            "show; bundles hold only plain files",
            field=name,
        )
    relative = "/".join(part for part in path.parts if part != ".")
    if not relative:
        if member.isdir():
            return ""
        raise UnsafeArchiveError(f"archive entry {name!r} has no file name", field=name)
    check_relative(relative, field=name)
    return relative


@contextmanager
def _readable(archive: Path) -> Iterator[None]:
    """Turn the ways a corrupt gzip or tar stream fails into one ``BundleFormatError``."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleFormatError(f"{archive}: not a readable .tar.gz ({exc})", field="path") from exc


class _BoundedStream:
    """The decompressed tar stream, refusing oversized single reads and reads past a budget.

    Tar extended headers (pax, GNU long names) are read in one piece whatever size they
    declare; without this a few KiB of gzip could make the reader allocate gigabytes.
    """

    def __init__(self, inner: gzip.GzipFile, budget: int) -> None:
        self._inner = inner
        self.budget = budget
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes; refuses sizes over ``_MAX_READ`` and reads past the budget."""
        if size < 0 or size > _MAX_READ:
            raise BundleTooLargeError(
                f"a tar header asks to read {size} bytes at once (over {_MAX_READ}); bundles "
                "hold no such headers",
                field="path",
            )
        data = self._inner.read(size)
        self._read += len(data)
        if self._read > self.budget:
            raise BundleTooLargeError(
                f"the archive's headers and files exceed {self.budget} decompressed bytes",
                field="path",
            )
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move in the decompressed stream (forward seeks decompress and discard)."""
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        """Position in the decompressed stream."""
        return self._inner.tell()
