"""Open a bundle and turn it into a Predictor, enforcing integrity, trust and versions."""

from __future__ import annotations

from pathlib import Path

from rtserve.bundle.bundle import Bundle
from rtserve.engine import environment
from rtserve.engine.predictor import Predictor
from rtserve.errors import UnsafeArtifactError
from rtserve.runtimes.base import Description, Trust
from rtserve.runtimes.registry import adapter_named


def load(
    source: str | Path | Bundle,
    *,
    trust_pickle: bool = False,
    pinned_digest: str | None = None,
    strict_versions: bool = False,
) -> Predictor:
    """Load a bundle (directory, ``.tar.gz`` or ``Bundle``) for in-process prediction.

    Args:
        source: where the bundle is.
        trust_pickle: allow a pickle artifact to be unpickled (runs code from the file).
        pinned_digest: the bundle digest the operator expects; required with ``trust_pickle``,
            and checked whenever given.
        strict_versions: refuse, rather than warn, when a framework's minor version differs.

    Raises:
        IntegrityError: a file or the manifest changed after the build.
        UnsafeArtifactError: a pickle without trust and a matching pinned digest.
        EnvironmentMismatchError: strict versions and a mismatch, or a framework missing.
    """
    bundle = source if isinstance(source, Bundle) else Bundle.open(source)
    if isinstance(source, Bundle):
        bundle.verify()
    manifest = bundle.manifest
    if pinned_digest is not None and pinned_digest != bundle.digest:
        raise UnsafeArtifactError(
            f"bundle digest {bundle.digest} does not match the pinned {pinned_digest}; "
            "this is not the bundle you trusted",
            field="digest",
        )
    if manifest.runtime.unsafe and (not trust_pickle or pinned_digest is None):
        raise UnsafeArtifactError(
            f"bundle {manifest.name}:{manifest.version} stores its model as a pickle "
            f"({manifest.runtime.options.get('pickle_reason', 'no safe format fits')}); "
            "unpickling runs code from the file, so it loads only with trust_pickle=True "
            f"and pinned_digest={bundle.digest!r} (CLI: --trust-pickle --pin-digest)",
            field="runtime.format",
        )
    environment.check(manifest.environment, strict=strict_versions)
    adapter = adapter_named(manifest.runtime.adapter)
    description = Description(
        outputs=manifest.model_schema.outputs,
        input_frame=manifest.input_frame,
        options=manifest.runtime.options,
    )
    trust = Trust(allow_pickle=trust_pickle, pinned_digest=pinned_digest)
    runtime = adapter.load(bundle.path, manifest.runtime, description, trust)
    return Predictor(bundle, runtime)
