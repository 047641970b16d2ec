"""A bundle on disk: open (from a directory or ``.tar.gz``), verify, save, pack, read its parts."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from rtserve.bundle.archive import MAX_BUNDLE_BYTES, is_archive, pack, unpack
from rtserve.bundle.integrity import (
    compute_digest,
    file_sizes,
    hash_files,
    section_hashes,
    verify,
)
from rtserve.bundle.manifest import Manifest, read_manifest
from rtserve.bundle.paths import read_bounded, too_large
from rtserve.bundle.profile import Profile
from rtserve.bundle.sample import ValidationSample
from rtserve.bundle.signature import TrustedKey, check_signature, trusted_keys_from
from rtserve.errors import BundleError, BundleFormatError, BundleTooLargeError

#: Largest ``profile.json`` or ``validation.json`` parsed (a 200-row sample is tens of KiB).
MAX_PART_BYTES = 64 << 20

_Part = TypeVar("_Part", bound=BaseModel)


class Bundle:
    """An immutable, verified bundle: its directory and parsed manifest.

    Bundles opened from an archive or made by ``build`` live in a private temporary directory that
    is removed when the object is garbage-collected; ``save`` makes a lasting copy.
    """

    def __init__(self, path: Path, manifest: Manifest, *, cleanup: Path | None = None) -> None:
        self.path = path
        self.manifest = manifest
        if cleanup is not None:
            weakref.finalize(self, shutil.rmtree, cleanup, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Bundle(name={self.name!r}, version={self.version!r}, digest={self.digest[:19]}…)"

    @classmethod
    def open(
        cls,
        source: str | Path,
        *,
        check: bool = True,
        max_bytes: int = MAX_BUNDLE_BYTES,
        trusted_keys: Iterable[TrustedKey | str | Path] | None = None,
        require_signature: bool = False,
    ) -> Bundle:
        """Open a bundle directory or ``.tar.gz``; with ``check`` every hash is verified.

        An archive is unpacked into a private temporary directory, writing at most
        ``max_bytes`` (see ``rtserve.bundle.archive.unpack``); that directory is removed on
        every failure, and with the ``Bundle`` otherwise.

        ``trusted_keys`` (``TrustedKey`` values or public key PEM files) and
        ``require_signature`` apply the signature policy of
        ``rtserve.bundle.signature.check_signature`` after the hashes: with
        ``require_signature`` the bundle must be signed over its digest by a trusted key, and a
        signature that is present is checked whenever trusted keys are given.

        Raises:
            SignatureError: the signature policy refuses the bundle (``reason`` says why).
        """
        keys = trusted_keys_from(trusted_keys)
        path = Path(source)
        if is_archive(path):
            target = Path(tempfile.mkdtemp(prefix="rtserve-bundle-"))
            try:
                root = unpack(path, target, max_bytes=max_bytes)
                bundle = cls._open_directory(root, check=check, cleanup=target)
                check_signature(bundle, keys, require=require_signature)
                return bundle
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        if not path.exists():
            raise BundleFormatError(f"{path}: no such bundle directory or archive", field="path")
        if not path.is_dir():
            raise BundleFormatError(
                f"{path}: a bundle is a directory or a .tar.gz archive", field="path"
            )
        bundle = cls._open_directory(path, check=check, cleanup=None)
        check_signature(bundle, keys, require=require_signature)
        return bundle

    @classmethod
    def _open_directory(cls, path: Path, *, check: bool, cleanup: Path | None) -> Bundle:
        manifest = read_manifest(path)
        if check:
            verify(path, manifest)
        return cls(path, manifest, cleanup=cleanup)

    @classmethod
    def seal(cls, directory: Path, manifest: Manifest, *, cleanup: Path | None = None) -> Bundle:
        """Hash every file, compute the digest and write the manifest: the last step of a build."""
        files = hash_files(directory)
        # A bundle sealed before sizes were recorded keeps that form (and its digest) on reseal.
        sizes = None if manifest.files and manifest.sizes is None else file_sizes(directory, files)
        for key, relative in (("profile", manifest.profile), ("validation", manifest.validation)):
            size = sizes.get(relative) if sizes else None
            if size is not None and size > MAX_PART_BYTES:  # refuse now what loading would refuse
                raise BundleTooLargeError(
                    too_large(key, relative, size, MAX_PART_BYTES)
                    + " (or keep fewer rows with validation_rows)",
                    field=key,
                )
        sealed = manifest.model_copy(update={"files": files, "sizes": sizes, "digest": ""})
        if sizes is not None and manifest.sealed_sections is None:  # a build, not a reseal
            sealed = sealed.model_copy(update={"sealed_sections": section_hashes(sealed)})
        sealed = sealed.model_copy(update={"digest": compute_digest(sealed)})
        sealed.write(directory)
        return cls(directory, sealed, cleanup=cleanup)

    @property
    def name(self) -> str:
        """The model name from the manifest."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The version label from the manifest."""
        return self.manifest.version

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` identifying this exact bundle (manifest and every file)."""
        return self.manifest.digest

    def verify(self) -> None:
        """Re-check every file hash and the digest against what is on disk now."""
        verify(self.path, self.manifest)

    def save(self, target: str | Path, *, overwrite: bool = False) -> Bundle:
        """Copy to ``target`` (a directory, or a path ending in ``.tar.gz`` to pack it).

        The copy appears whole or not at all: it is written beside the target and renamed. An
        existing directory or archive is refused unless ``overwrite=True``.
        """
        target = Path(target)
        if target.exists() and not overwrite:
            raise BundleError(
                f"{target} already exists; bundles are immutable, so choose a new path "
                "(or pass overwrite=True)",
                field="path",
            )
        if target.name.endswith((".tar.gz", ".tgz")):
            self.verify()
            pack(self.path, target)
            return Bundle.open(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(self.path, staging, dirs_exist_ok=True)
            verify(staging, self.manifest)
            if target.exists():
                shutil.rmtree(target)
            staging.replace(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Bundle(target, self.manifest)

    def read_profile(self) -> Profile:
        """The reference statistics recorded at build."""
        return self._read_part("profile", self.manifest.profile, Profile)

    def read_validation(self) -> ValidationSample:
        """The validation sample recorded at build."""
        return self._read_part("validation", self.manifest.validation, ValidationSample)

    def _read_part(self, key: str, relative: str, model: type[_Part]) -> _Part:
        """A JSON part, confined to the bundle and size-bounded; errors never quote its content.

        Raises:
            UnsafePathError: the path leads outside the bundle or through a link.
            BundleTooLargeError: the file is over ``MAX_PART_BYTES``.
            BundleFormatError: the file is missing or not the JSON this part holds.
        """
        try:
            raw = read_bounded(self.path, relative, field=key, limit=MAX_PART_BYTES)
        except FileNotFoundError:
            raise BundleFormatError(
                f"{key}: {relative!r} is missing from the bundle; restore the bundle from its "
                "source or rebuild it",
                field=key,
            ) from None
        try:
            return model.model_validate_json(raw)
        except PydanticValidationError as exc:
            # Pydantic quotes the input in its message; say where and what, never the bytes.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)[:3]
            )
            raise BundleFormatError(
                f"{key}: {relative!r} is not a valid {key} file ({problems}); restore the bundle "
                "from its source or rebuild it",
                field=key,
            ) from None

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (what ``rtserve inspect --json`` prints)."""
        data: dict[str, object] = json.loads(self.manifest.model_dump_json(by_alias=True))
        data["path"] = str(self.path)
        return data
