"""Pack a bundle directory into ``.tar.gz`` and unpack one without letting entries escape."""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from rtserve.errors import BundleFormatError, UnsafeArchiveError

#: Refuse archives that would unpack to more than this (a decompression bomb guard).
MAX_UNPACKED_BYTES = 8 << 30


def is_archive(path: Path) -> bool:
    """True for a path that names a packed bundle."""
    return path.is_file() and (path.name.endswith(".tar.gz") or path.name.endswith(".tgz"))


def pack(directory: Path, target: Path) -> Path:
    """Write ``directory``'s files (no links, no owners) into a gzip tar at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink():
                raise UnsafeArchiveError(f"{path}: links are not packed into bundles")
            info = tar.gettarinfo(str(path), arcname=path.relative_to(directory).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    tmp.replace(target)
    return target


def unpack(archive: Path, destination: Path) -> Path:
    """Extract ``archive`` into ``destination`` after checking every entry.

    Raises:
        BundleFormatError: the file is not a readable gzip tar.
        UnsafeArchiveError: for absolute paths, ``..`` components, links, devices, or a total
            size beyond ``MAX_UNPACKED_BYTES``; nothing is extracted then.
    """
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as exc:
        raise BundleFormatError(f"{archive}: not a readable .tar.gz ({exc})") from exc
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:  # truncated or corrupt stream
            raise BundleFormatError(f"{archive}: not a readable .tar.gz ({exc})") from exc
        total = 0
        for member in members:
            _check_member(member)
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise UnsafeArchiveError(
                    f"{archive}: unpacks to more than {MAX_UNPACKED_BYTES} bytes; refusing"
                )
        destination.mkdir(parents=True, exist_ok=True)
        # The "data" filter re-checks paths and strips modes; our own checks above give the
        # sentence a user sees.
        tar.extractall(destination, members=members, filter="data")
    return destination


def _check_member(member: tarfile.TarInfo) -> None:
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
