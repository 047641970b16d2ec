"""The one gate every read of a bundle file goes through: confined to the bundle, size-bounded.

A manifest is data that may come from anyone who can hand over a bundle. Every path it names
(``profile``, ``validation``, ``runtime.files``, ``optimized.runtime.files``, the keys of
``files``) is checked twice: by ``check_relative`` when the manifest is parsed (shape only:
relative, canonical, no ``..``, no NUL or control characters) and by ``confine`` right before the
read (on disk: no symbolic link on the way, the resolved path inside the bundle). ONNX external
data locations go through ``confine`` too. ``read_bounded`` adds "a regular file, at most this
many bytes", so no file is parsed unbounded and no FIFO blocks a reader.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from rtserve.errors import BundleTooLargeError, UnsafePathError

#: Longest path accepted in a manifest or an archive (bundles use short, fixed names).
MAX_PATH_CHARS = 1024
#: Longest single path component (what common file systems allow).
MAX_NAME_CHARS = 255

_RULE = "use a relative POSIX path inside the bundle such as 'model/model.skops'"


def check_relative(value: object, *, field: str) -> str:
    """Return ``value`` if it is a canonical relative path that stays inside the bundle.

    Nothing is read: this is the shape check made when the manifest is parsed, so a bad path is
    refused before any file is opened through it.

    Raises:
        UnsafePathError: empty, absolute, a drive or ``\\`` path, ``..``/``.``/empty components,
            NUL or control characters, or longer than ``MAX_PATH_CHARS``.
    """
    if not isinstance(value, str) or not value:
        raise UnsafePathError(f"{field}: {value!r} is not a file path; {_RULE}", field=field)
    shown = repr(value[:80]) + ("…" if len(value) > 80 else "")
    if len(value) > MAX_PATH_CHARS:
        raise UnsafePathError(
            f"{field}: path {shown} is {len(value)} characters long, over the limit of "
            f"{MAX_PATH_CHARS}; {_RULE}",
            field=field,
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise UnsafePathError(
            f"{field}: path {shown} holds a NUL or control character; {_RULE}", field=field
        )
    if value.startswith("/") or (len(value) > 1 and value[1] == ":") or "\\" in value:
        raise UnsafePathError(
            f"{field}: path {shown} is absolute (or a Windows path) and would be read from "
            f"outside the bundle; {_RULE}",
            field=field,
        )
    parts = value.split("/")
    if ".." in parts:
        raise UnsafePathError(
            f"{field}: path {shown} climbs out of the bundle with '..'; {_RULE}", field=field
        )
    if "" in parts or "." in parts or any(len(part) > MAX_NAME_CHARS for part in parts):
        raise UnsafePathError(
            f"{field}: path {shown} is not in canonical form (empty, '.' or over-long "
            f"components); {_RULE}",
            field=field,
        )
    return value


def confine(root: Path, relative: str, *, field: str) -> Path:
    """The file ``relative`` names inside ``root``, refusing anything that could lead outside.

    Besides the shape check, every component from ``root`` down is checked on disk: a symbolic
    link anywhere on the way is refused (its target can change, or sit outside the bundle), and
    the resolved path must lie under the resolved ``root``.

    Raises:
        UnsafePathError: the path's shape is unsafe, a component is a link, or it resolves
            outside ``root``.
    """
    check_relative(relative, field=field)
    base = root.resolve()
    current = base
    for part in PurePosixPath(relative).parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePathError(
                f"{field}: {relative!r} passes through the symbolic link "
                f"{current.relative_to(base).as_posix()!r}; bundles hold only regular files, "
                "so replace the link by the file itself and rebuild",
                field=field,
            )
    resolved = current.resolve()
    if not resolved.is_relative_to(base):  # belt and braces: nothing above should allow this
        raise UnsafePathError(
            f"{field}: {relative!r} resolves outside the bundle; {_RULE}", field=field
        )
    return resolved


def read_bounded(root: Path, relative: str, *, field: str, limit: int) -> bytes:
    """The bytes of a regular file inside ``root``, refused unread when larger than ``limit``.

    The file is opened without following a final link and checked on the open descriptor, so
    what is measured is what is read (a FIFO or device would otherwise block or never end).

    Raises:
        UnsafePathError: see ``confine``; also a path that is not a regular file.
        BundleTooLargeError: the file is larger than ``limit`` bytes.
        FileNotFoundError: the file does not exist (callers say which part is missing).
    """
    path = confine(root, relative, field=field)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(
                f"{field}: {relative!r} is not a regular file; bundles hold only regular files",
                field=field,
            )
        if info.st_size > limit:
            raise BundleTooLargeError(too_large(field, relative, info.st_size, limit), field=field)
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew between the check and the read
        raise BundleTooLargeError(too_large(field, relative, len(data), limit), field=field)
    return data


def too_large(field: str, relative: str, size: int, limit: int) -> str:
    """The sentence for a bundle file over its size limit (it never shows the content)."""
    return (
        f"{field}: {relative!r} is {size} bytes, over the limit of {limit} bytes for this part "
        "of a bundle; rtserve never writes one this large, so the bundle was altered or made by "
        "another tool: rebuild it with rtserve.build"
    )
