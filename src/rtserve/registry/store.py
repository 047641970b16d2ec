"""The artifact store: bundles as ``.tar.gz`` files named by their digest, on any fsspec URL.

A local directory by default (``artifacts/`` next to ``registry.db``); ``s3://``, ``gs://``,
``memory://`` ... otherwise, with the matching fsspec backend installed. Content addressing
makes a stored artifact immutable: the same digest is the same bytes, so writing it twice is a
no-op and no two versions can disagree about what a digest holds.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rtserve.bundle.archive import pack
from rtserve.bundle.bundle import Bundle
from rtserve.errors import RegistryStorageError

_INCOMING = ".incoming"


class ArtifactStore:
    """Puts and gets bundle archives under ``<url>/sha256/<hex>.tar.gz``."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise RegistryStorageError(
                f"artifact store {url!r} cannot be used ({exc}); give a local directory or an "
                "fsspec URL whose backend is installed (e.g. s3fs for s3://)",
                field="store",
            ) from exc
        self.fs: Any = fs
        self.root: str = root.rstrip("/") or "/"

    def key(self, digest: str) -> str:
        """Where the artifact of ``digest`` lives in the store."""
        algorithm, _, hexdigest = digest.partition(":")
        return f"{self.root}/{algorithm}/{hexdigest}.tar.gz"

    def upload(self, bundle: Bundle) -> tuple[str, int]:
        """Pack ``bundle`` and copy it to a temporary name in the store; returns (name, bytes).

        Nothing is visible under the digest's name until ``publish``.
        """
        scratch = Path(tempfile.mkdtemp(prefix="rtserve-push-"))
        incoming = f"{self.root}/{_INCOMING}/{uuid.uuid4().hex}.tar.gz"
        try:
            archive = pack(bundle.path, scratch / "bundle.tar.gz")
            size = archive.stat().st_size
            self.fs.makedirs(f"{self.root}/{_INCOMING}", exist_ok=True)
            self.fs.put_file(str(archive), incoming)
        except OSError as exc:
            self.discard(incoming)
            raise self._failed("write to", exc) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return incoming, size

    def publish(self, incoming: str, digest: str) -> bool:
        """Move an upload to its digest's name; False (and the upload dropped) if already there."""
        target = self.key(digest)
        try:
            if self.fs.exists(target):
                self.discard(incoming)
                return False
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(incoming, target)
        except OSError as exc:
            raise self._failed("publish in", exc) from exc
        return True

    def discard(self, path: str) -> None:
        """Remove ``path`` if it exists (cleanup; never raises for a missing file)."""
        try:
            if self.fs.exists(path):
                self.fs.rm_file(path)
        except OSError:  # cleanup is best effort; a leftover upload is harmless and unreferenced
            pass

    def exists(self, digest: str) -> bool:
        """Whether the artifact of ``digest`` is stored."""
        return bool(self.fs.exists(self.key(digest)))

    def local_path(self, digest: str, cache_dir: Path | None = None) -> Path:
        """A local file holding the artifact: the stored file itself for a local store, else a
        copy downloaded into ``cache_dir`` (a new temporary directory when None)."""
        key = self.key(digest)
        if not self.fs.exists(key):
            raise RegistryStorageError(
                f"artifact {digest} is missing from the store {self.url!r}; restore it from a "
                "backup or push the bundle again under a new version",
                field="store",
            )
        if _is_local(self.fs):
            return Path(key)
        target_dir = cache_dir or Path(tempfile.mkdtemp(prefix="rtserve-artifact-"))
        target = target_dir / key.rsplit("/", 1)[1]
        if not target.exists():
            partial = target.with_name(target.name + ".partial")
            try:
                self.fs.get_file(key, str(partial))
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise self._failed("read from", exc) from exc
            partial.replace(target)
        return target

    def _failed(self, what: str, exc: OSError) -> RegistryStorageError:
        return RegistryStorageError(
            f"cannot {what} the artifact store {self.url!r}: {exc}; check the path or URL and "
            "its permissions",
            field="store",
        )


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols
