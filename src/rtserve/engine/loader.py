"""Open a bundle and turn it into a Predictor, enforcing integrity, trust and versions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rtserve.bundle.archive import MAX_BUNDLE_BYTES
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import InputFrame, Manifest, RuntimeSpec
from rtserve.bundle.paths import confine
from rtserve.bundle.signature import TrustedKey, check_signature, trusted_keys_from
from rtserve.engine.framework_versions import check_framework_versions
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
    force_native: bool = False,
    max_bundle_bytes: int = MAX_BUNDLE_BYTES,
    trusted_keys: Iterable[TrustedKey | str | Path] | None = None,
    require_signature: bool = False,
) -> Predictor:
    """Load a bundle (directory, ``.tar.gz`` or ``Bundle``) for in-process prediction.

    Args:
        source: where the bundle is.
        trust_pickle: allow a pickle artifact to be unpickled (runs code from the file).
        pinned_digest: the bundle digest the operator expects; required with ``trust_pickle``,
            and checked whenever given.
        strict_versions: refuse, rather than warn, when a framework's minor version differs.
        force_native: predict with the model's own framework even where the bundle's ONNX
            export passed its parity gate (which ONNX Runtime then serves by default).
        max_bundle_bytes: the most bytes a ``.tar.gz`` may unpack to (besides the cap of
            4x the file sizes its manifest records); raise it for a genuinely larger bundle.
        trusted_keys: public keys (``TrustedKey`` values or PEM files) whose signatures are
            accepted; a signature that is present is checked against them.
        require_signature: refuse a bundle without a valid signature by one of ``trusted_keys``.

    Raises:
        IntegrityError: a file or the manifest changed after the build.
        UnsafeArtifactError: a pickle without trust and a matching pinned digest.
        EnvironmentMismatchError: strict versions and a mismatch, or a framework missing.
        UnsafePathError: a file the manifest names leads outside the bundle.
        BundleTooLargeError: an archive or a bundle file beyond its limit.
        SignatureError: the signature policy refuses the bundle (``reason`` says why).
    """
    keys = trusted_keys_from(trusted_keys)
    if isinstance(source, Bundle):
        bundle = source
        bundle.verify()
        check_signature(bundle, keys, require=require_signature)
    else:
        bundle = Bundle.open(
            source,
            max_bytes=max_bundle_bytes,
            trusted_keys=keys,
            require_signature=require_signature,
        )
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
    check_framework_versions(manifest.environment, strict=strict_versions)
    choice = serving(manifest, force_native=force_native)
    description = Description(
        outputs=manifest.model_schema.outputs,
        input_frame=choice.input_frame,
        options=choice.spec.options,
    )
    trust = Trust(allow_pickle=trust_pickle, pinned_digest=pinned_digest)
    field = "optimized.runtime.files" if choice.optimized else "runtime.files"
    for relative in choice.spec.files:  # the last check before an adapter opens them
        confine(bundle.path, relative, field=field)
    runtime = adapter_named(choice.spec.adapter).load(bundle.path, choice.spec, description, trust)
    return Predictor(bundle, runtime)


@dataclass(frozen=True)
class Serving:
    """Which artifact answers for a bundle, and why."""

    runtime: str  # adapter name: "onnx" for the export, else the native adapter
    optimized: bool  # True when the ONNX export serves
    reason: str
    spec: RuntimeSpec
    input_frame: InputFrame


def serving(manifest: Manifest, *, force_native: bool = False) -> Serving:
    """The ONNX export when its parity gate passed at build (unless forced native), else native."""
    optimized = manifest.optimized
    native = manifest.runtime
    if optimized is None:
        return Serving(native.adapter, False, "no export recorded", native, manifest.input_frame)
    if optimized.serving == "onnx" and optimized.runtime is not None:
        if not force_native:
            frame = optimized.input_frame or manifest.input_frame
            reason = "ONNX export passed its parity gate"
            return Serving(optimized.runtime.adapter, True, reason, optimized.runtime, frame)
        reason = "native runtime forced at load"
        return Serving(native.adapter, False, reason, native, manifest.input_frame)
    return Serving(native.adapter, False, optimized.reason, native, manifest.input_frame)
