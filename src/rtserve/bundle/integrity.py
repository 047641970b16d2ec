"""File hashes and the bundle digest: how a bundle proves it is the one that was built."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rtserve.bundle.manifest import MANIFEST_FILE, Manifest
from rtserve.errors import IntegrityError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every regular file below ``directory`` except the manifest, by POSIX path.

    Raises:
        IntegrityError: for a symbolic link anywhere in the bundle.
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
        if path.is_file() and relative != MANIFEST_FILE:
            hashes[relative] = sha256_file(path)
    return hashes


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
