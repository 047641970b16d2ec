"""A bundle on disk: open (from a directory or ``.tar.gz``), verify, save, pack, read its parts."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from pathlib import Path

from rtserve.bundle.archive import is_archive, pack, unpack
from rtserve.bundle.integrity import compute_digest, hash_files, verify
from rtserve.bundle.manifest import MANIFEST_FILE, Manifest, read_manifest
from rtserve.bundle.profile import Profile
from rtserve.bundle.sample import ValidationSample
from rtserve.errors import BundleError, BundleFormatError


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
    def open(cls, source: str | Path, *, check: bool = True) -> Bundle:
        """Open a bundle directory or ``.tar.gz``; with ``check`` every hash is verified."""
        path = Path(source)
        cleanup: Path | None = None
        if is_archive(path):
            target = Path(tempfile.mkdtemp(prefix="rtserve-bundle-"))
            try:
                unpack(path, target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            path, cleanup = _bundle_root(target), target
        elif not path.exists():
            raise BundleFormatError(f"{path}: no such bundle directory or archive", field="path")
        elif not path.is_dir():
            raise BundleFormatError(
                f"{path}: a bundle is a directory or a .tar.gz archive", field="path"
            )
        manifest = read_manifest(path)
        bundle = cls(path, manifest, cleanup=cleanup)
        if check:
            verify(path, manifest)
        return bundle

    @classmethod
    def seal(cls, directory: Path, manifest: Manifest, *, cleanup: Path | None = None) -> Bundle:
        """Hash every file, compute the digest and write the manifest: the last step of a build."""
        files = hash_files(directory)
        sealed = manifest.model_copy(update={"files": files, "digest": ""})
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

        The copy appears whole or not at all: it is written beside the target and renamed.
        """
        target = Path(target)
        if target.name.endswith((".tar.gz", ".tgz")):
            self.verify()
            pack(self.path, target)
            return Bundle.open(target)
        if target.exists() and not overwrite:
            raise BundleError(
                f"{target} already exists; bundles are immutable, so choose a new path "
                "(or pass overwrite=True)",
                field="path",
            )
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
        return Profile.model_validate_json((self.path / self.manifest.profile).read_bytes())

    def read_validation(self) -> ValidationSample:
        """The validation sample recorded at build."""
        return ValidationSample.model_validate_json(
            (self.path / self.manifest.validation).read_bytes()
        )

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (what ``rtserve inspect --json`` prints)."""
        data: dict[str, object] = json.loads(self.manifest.model_dump_json(by_alias=True))
        data["path"] = str(self.path)
        return data


def _bundle_root(directory: Path) -> Path:
    """The manifest's folder: the archive root, or its single top-level folder."""
    if (directory / MANIFEST_FILE).is_file():
        return directory
    children = list(directory.iterdir())
    if len(children) == 1 and children[0].is_dir() and (children[0] / MANIFEST_FILE).is_file():
        return children[0]
    return directory
