"""File hashes and the bundle digest: how a bundle proves it is the one that was built."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rtserve.bundle.manifest import MANIFEST_FILE, Manifest
from rtserve.bundle.signature import SIGNATURE_FILE
from rtserve.errors import BundleFormatError, IntegrityError

_CHUNK = 1 << 20
#: Files at the bundle's root that the digest does not cover: the manifest (which holds the
#: hashes) and the detached signature (which signs the digest).
_UNHASHED = frozenset({MANIFEST_FILE, SIGNATURE_FILE})


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every regular file below ``directory`` except the manifest, by POSIX path.

    The signature file at the root is not hashed either: it signs the digest these hashes feed,
    so it cannot be part of it (``rtserve.bundle.signature``). Both are still checked for links
    and special files like every other entry.

    Raises:
        IntegrityError: for a symbolic link, FIFO, socket or device anywhere in the bundle.
    """
    hashes: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_symlink():
            # A link's target can change (or sit outside the bundle) without any hash changing.
            raise IntegrityError(
                relative,
                "<regular file>",
                "<symbolic link>",
                hint="bundles hold only regular files; a link could point outside the bundle",
            )
        if not (path.is_file() or path.is_dir()):
            # A FIFO would block the reader forever, a device never end: neither is hashed.
            raise IntegrityError(
                relative,
                "<regular file>",
                "<special file>",
                hint="bundles hold only regular files and folders",
            )
        if path.is_file() and relative not in _UNHASHED:
            hashes[relative] = sha256_file(path)
    return hashes


def file_sizes(directory: Path, files: dict[str, str]) -> dict[str, int]:
    """Size in bytes of each of ``files`` (as ``hash_files`` listed them) below ``directory``."""
    return {relative: (directory / relative).stat().st_size for relative in files}


#: The manifest sections a hand edit followed by ``rtserve reseal`` may change: the serving
#: contract (schema, policies) and the description. Everything else is fixed at build.
EDITABLE_SECTIONS = frozenset({"schema", "fallback", "output", "description"})


def section_hashes(manifest: Manifest) -> dict[str, str]:
    """A short sha256 of every section fixed at build, by manifest key (see ``EDITABLE_SECTIONS``)."""
    data = manifest.model_dump(mode="json", by_alias=True, exclude={"digest", "sealed_sections"})
    return {
        key: hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()[:16]
        for key, value in data.items()
        if key not in EDITABLE_SECTIONS
    }


def changed_sections(manifest: Manifest) -> list[str]:
    """The sections fixed at build that differ from what was sealed (none for an older bundle)."""
    recorded = manifest.sealed_sections
    if recorded is None:
        return []
    now = section_hashes(manifest)
    return sorted(key for key in set(now) | set(recorded) if now.get(key) != recorded.get(key))


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_digest(manifest: Manifest) -> str:
    """``sha256:<hex>`` over the manifest's canonical JSON without its own digest.

    The manifest lists every file's hash, so this one value covers the manifest and all files.
    """
    data = manifest.model_dump(mode="json", by_alias=True, exclude={"digest"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def verify(directory: Path, manifest: Manifest) -> None:
    """Refuse any difference between the bundle on disk and what its manifest records.

    Raises:
        IntegrityError: naming the first file (or the manifest) that differs, is missing, or is
            not listed.
        BundleFormatError: a recorded size differs from its file, or a path the manifest names
            (``profile``, ``validation``, a runtime file) is not one of its hashed ``files``.
    """
    expected_digest = compute_digest(manifest)
    if manifest.digest != expected_digest:
        raise IntegrityError(
            MANIFEST_FILE,
            manifest.digest.removeprefix("sha256:") or "<none>",
            expected_digest.removeprefix("sha256:"),
            hint="rtserve.yaml was edited after the build; if you changed the schema on "
            "purpose, run `rtserve reseal BUNDLE` to check the edit and re-sign it, or rebuild "
            "with rtserve.build(..., schema_overrides=...)",
        )
    actual = hash_files(directory)
    for relative, expected in manifest.files.items():
        found = actual.get(relative)
        if found is None:
            raise IntegrityError(
                relative, expected, "<missing file>", hint="the file is missing from the bundle"
            )
        if found != expected:
            raise IntegrityError(relative, expected, found)
    extra = sorted(set(actual) - set(manifest.files))
    if extra:
        raise IntegrityError(extra[0], "<not listed>", actual[extra[0]], hint="unexpected file")
    for relative, recorded in (manifest.sizes or {}).items():
        size = (directory / relative).stat().st_size
        if size != recorded:  # the hash matched, so the recorded size was edited
            raise BundleFormatError(
                f"sizes: {relative!r} is {size} bytes but the manifest records {recorded}; the "
                "manifest was edited by hand, so rebuild the bundle with rtserve.build",
                field="sizes",
            )
    for key, paths in manifest.named_paths().items():
        for relative in paths:
            if relative not in manifest.files:
                raise BundleFormatError(
                    f"{key}: {relative!r} is not one of the files the manifest hashes, so its "
                    "content would be read unchecked; rebuild the bundle with rtserve.build",
                    field=key,
                )
