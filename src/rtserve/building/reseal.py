"""Re-seal a bundle whose manifest was edited by hand, after proving the edit is still sound.

Bundles are immutable, but a schema is meant to be editable (add a bound, flag a field as PII).
Editing ``rtserve.yaml`` breaks the digest on purpose; ``reseal`` checks that only the manifest
changed, that the edited schema still accepts the validation sample and that the model still
reproduces the recorded outputs, and only then writes the new digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtserve.bundle.archive import is_archive
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.integrity import (
    EDITABLE_SECTIONS,
    changed_sections,
    compute_digest,
    hash_files,
)
from rtserve.bundle.manifest import MANIFEST_FILE, Manifest, read_manifest
from rtserve.bundle.validator import Validator
from rtserve.engine.loader import load
from rtserve.engine.predictor import DEFAULT_PARITY_TOLERANCE, ParityReport
from rtserve.errors import (
    BundleError,
    BundleFormatError,
    IntegrityError,
    SchemaDefinitionError,
    UnsafeArtifactError,
    ValidationError,
)

_ONLY_MANIFEST = f"only {MANIFEST_FILE} may be edited before a reseal; rebuild to change files"


@dataclass(frozen=True)
class ResealReport:
    """What a reseal found and did."""

    name: str
    version: str
    old_digest: str
    new_digest: str
    parity: ParityReport

    @property
    def changed(self) -> bool:
        """False when the manifest already carried its correct digest (nothing was written)."""
        return self.old_digest != self.new_digest


def reseal(
    source: str | Path,
    *,
    trust_pickle: bool = False,
    strict_versions: bool = False,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
) -> ResealReport:
    """Check a hand-edited bundle directory and rewrite its digest.

    Args:
        source: a bundle directory (an archive must be unpacked first).
        trust_pickle: allow loading a pickle artifact for the parity check (runs code from it).
        strict_versions: refuse, rather than warn, when a framework's minor version differs.
        tolerance: how far the outputs may drift from the recorded ones.

    Raises:
        BundleError: a section other than the schema, the policies or the description changed
            (name, version, environment... are fixed at build).
        IntegrityError: a file other than ``rtserve.yaml`` differs from its recorded hash.
        SchemaDefinitionError: the edited schema rejects the validation sample, or the model no
            longer reproduces the recorded outputs under it.
        BundleFormatError: the edited manifest does not parse.
        UnsafeArtifactError: a pickle bundle without ``trust_pickle``.
    """
    directory = Path(source)
    if is_archive(directory):
        raise BundleError(
            f"{directory}: reseal works on a bundle directory; unpack the archive, edit and "
            "reseal the directory, then pack it again with Bundle.save('....tar.gz')",
            field="path",
        )
    if not directory.is_dir():
        raise BundleFormatError(f"{directory}: no such bundle directory", field="path")
    manifest = read_manifest(directory)
    _check_only_editable_sections(manifest)
    _check_files_unchanged(directory, manifest)
    candidate = manifest.model_copy(update={"digest": compute_digest(manifest)})
    bundle = Bundle(directory, candidate)
    _check_sample_accepted(bundle)
    if manifest.runtime.unsafe and not trust_pickle:
        raise UnsafeArtifactError(
            f"bundle {manifest.name}:{manifest.version} stores its model as a pickle; resealing "
            "loads it to check the outputs, which runs code from the file, so it needs "
            "trust_pickle=True (CLI: --trust-pickle)",
            field="runtime.format",
        )
    predictor = load(
        bundle,
        trust_pickle=trust_pickle,
        pinned_digest=candidate.digest if trust_pickle else None,
        strict_versions=strict_versions,
    )
    parity = predictor.check_parity(tolerance)
    if not parity.passed:
        raise SchemaDefinitionError(
            f"with the edited manifest, the {parity.describe()}; a served bundle would never "
            "become ready, so it was not resealed. Undo the edit, or rebuild with the change "
            "(rtserve build --set FIELD.ATTR=VALUE)"
        )
    if candidate.digest != manifest.digest:
        sealed = Bundle.seal(directory, manifest)
        if sealed.digest != candidate.digest:  # a file changed while we were checking
            raise IntegrityError(MANIFEST_FILE, candidate.digest, sealed.digest, _ONLY_MANIFEST)
    return ResealReport(
        name=manifest.name,
        version=manifest.version,
        old_digest=manifest.digest,
        new_digest=candidate.digest,
        parity=parity,
    )


def _check_only_editable_sections(manifest: Manifest) -> None:
    """Refuse an edit of anything but the schema, the serving policies or the description.

    Name, version, build time, environment, runtime and files say which model this is and how it
    was made; a bundle that differs there is another build, with a digest of its own.
    """
    changed = changed_sections(manifest)
    if changed:
        editable = ", ".join(sorted(EDITABLE_SECTIONS))
        raise BundleError(
            f"{MANIFEST_FILE}: {', '.join(changed)} changed since the build; reseal accepts edits "
            f"to {editable} only, because identity and environment are fixed when a bundle is "
            "built. Undo that edit, or build a new bundle (e.g. with another --version)",
            field=changed[0],
        )


def _check_files_unchanged(directory: Path, manifest: Manifest) -> None:
    """Refuse unless every file other than the manifest still has its recorded hash."""
    actual = hash_files(directory)
    for relative, expected in manifest.files.items():
        found = actual.get(relative)
        if found is None:
            raise IntegrityError(relative, expected, "<missing file>", _ONLY_MANIFEST)
        if found != expected:
            raise IntegrityError(relative, expected, found, _ONLY_MANIFEST)
    extra = sorted(set(actual) - set(manifest.files))
    if extra:
        raise IntegrityError(
            extra[0], "<not listed>", actual[extra[0]], f"unexpected file; {_ONLY_MANIFEST}"
        )


def _check_sample_accepted(bundle: Bundle) -> None:
    """The edited schema must accept the rows the model was validated on at build."""
    sample = bundle.read_validation()
    try:
        Validator(bundle.manifest.model_schema).columns(sample.inputs)
    except ValidationError as exc:
        raise SchemaDefinitionError(
            f"the edited schema rejects the validation sample recorded at build: {exc.message}; "
            "a schema must accept the data the model was checked on, so loosen the edit",
            field=exc.field,
        ) from exc
