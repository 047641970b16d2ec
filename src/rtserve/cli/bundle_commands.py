"""Bundle commands: ``build``, ``inspect``, ``verify`` and ``reseal``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rtserve.cli.options import BundleArg, JsonFlag, PinDigest, StrictVersions, TrustPickle
from rtserve.cli.output import print_json, print_warning, stderr, stdout
from rtserve.cli.signing import RequireSignature, TrustedKeys, signature_line
from rtserve.errors import BundleError, RtserveError
from rtserve.runtimes.model_file import KNOWN_SUFFIXES, is_pickle

if TYPE_CHECKING:
    from rtserve.bundle.bundle import Bundle
    from rtserve.bundle.manifest import Manifest
    from rtserve.engine.predictor import ParityReport

# Bundles, frameworks and pandas are imported inside the commands, so that `rtserve --help`
# stays fast.

#: ``rtserve.bundle.sample.DEFAULT_ROWS``, written out so that the help needs no numpy (a test
#: keeps the two equal).
DEFAULT_VALIDATION_ROWS = 200

PICKLE_TRUST_NOTE = (
    "{path} is a pickle: loading it runs code stored in the file. rtserve does it because you "
    "passed --trust-pickle; trusting where the file came from is your own decision"
)


def build(
    model_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help=f"The fitted model: {', '.join(KNOWN_SUFFIXES)}.",
            show_default=False,
        ),
    ],
    sample: Annotated[
        Path,
        typer.Option(
            "--sample",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Training rows (.parquet or .csv) with the model's input columns.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="Model name (lowercase, URL-safe).", show_default=False)
    ],
    version: Annotated[
        str, typer.Option("--version", help="Version label of this build.", show_default=False)
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to save the bundle: a directory, or a path ending in .tar.gz.",
            show_default=False,
        ),
    ],
    description: Annotated[
        str, typer.Option("--description", help="Free text stored in the manifest.")
    ] = "",
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD.ATTR=VALUE",
            help="Change the inferred schema, e.g. amount.minimum=0, email.pii=true, "
            "country.unseen=reject (values are YAML; repeat the option).",
            show_default=False,
        ),
    ] = None,
    overrides_file: Annotated[
        Path | None,
        typer.Option(
            "--schema-overrides",
            exists=True,
            dir_okay=False,
            readable=True,
            help="YAML file {field: {attr: value}}; --set wins over it.",
            show_default=False,
        ),
    ] = None,
    validation_rows: Annotated[
        int,
        typer.Option("--validation-rows", min=1, help="Sample rows kept with their outputs."),
    ] = DEFAULT_VALIDATION_ROWS,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle",
            help="Allow MODEL_FILE to be a .pkl/.pickle/.joblib (loading it runs code from it), "
            "and store the bundle as a pickle when the model holds code outside rtserve's "
            "allow-list (a custom function or class); such a bundle loads only with "
            "--trust-pickle --pin-digest.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing bundle at --output.")
    ] = False,
    optimize: Annotated[
        str,
        typer.Option(
            "--optimize",
            metavar="auto|off",
            help="auto: also export to ONNX and serve the export when it matches the model on "
            "the sample (parity gate); off: native runtime only.",
        ),
    ] = "auto",
    json_output: JsonFlag = False,
) -> None:
    """Build a bundle from a model file and a training sample.

    The schema is inferred from the sample and can be changed with --set / --schema-overrides;
    the bundle also holds a profile, a validation sample and the hashes of every file.

    Example:

        rtserve build model.skops --sample train.parquet --name fraud --version 1
        --set amount.minimum=0 --set email.pii=true --output bundles/fraud-1
    """
    from rich.markup import escape

    from rtserve.building.builder import build as build_bundle
    from rtserve.cli import overrides as schema_overrides
    from rtserve.cli import render
    from rtserve.cli.tables import read_sample, table_format
    from rtserve.runtimes.model_file import read_model_file

    changes = schema_overrides.parse_set(assignments or [])
    if overrides_file is not None:
        changes = schema_overrides.merge(schema_overrides.read_file(overrides_file), changes)
    table_format(sample, ("parquet", "csv"), "--sample")
    if optimize not in ("auto", "off"):
        raise typer.BadParameter(f"{optimize!r} is not one of auto, off", param_hint="--optimize")
    if model_file.suffix.lower() not in KNOWN_SUFFIXES:
        raise typer.BadParameter(
            f"{model_file.name}: expected a model file ending in {', '.join(KNOWN_SUFFIXES)}",
            param_hint="MODEL_FILE",
        )
    if output.exists() and not overwrite:
        raise BundleError(
            f"{output} already exists; bundles are immutable, so choose a new path "
            "(or pass --overwrite)",
            field="output",
        )
    if is_pickle(model_file) and trust_pickle:
        print_warning(PICKLE_TRUST_NOTE.format(path=model_file))
    with stderr().status(f"building {name}:{version} from {model_file.name} …"):
        frame = read_sample(sample)
        model = read_model_file(model_file, trust_pickle=trust_pickle)
        built = build_bundle(
            model,
            frame,
            name=name,
            version=version,
            description=description,
            schema_overrides=changes or None,
            validation_rows=validation_rows,
            optimize=optimize,
            allow_pickle=trust_pickle,
        )
        saved = built.save(output, overwrite=overwrite)
    if json_output:
        print_json(_with_serving(render.document(saved, output), saved))
        return
    console = stdout()
    render.header(console, saved)
    render.line(console, "serving", serving_line(saved.manifest))
    console.print(render.fields_table(saved.manifest.model_schema))
    render.line(console, "outputs", render.outputs_line(saved.manifest.model_schema.outputs))
    console.print(f"[green]saved[/] {escape(str(output))}")


def inspect_bundle(
    bundle: BundleArg,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify", help="Show the bundle without checking its hashes (e.g. mid-edit)."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show what a bundle holds: identity, runtime, signature, environment, schema, profile, files.

    Hashes are checked first (a modified bundle fails with exit code 1) unless --no-verify. The
    signature is shown (signer's key id and fingerprint) but not checked: `rtserve verify
    --trusted-key PUB.pem` checks it.

    Example:

        rtserve inspect bundles/fraud-1
        rtserve inspect bundles/fraud-1.tar.gz --json
    """
    from rtserve.bundle.bundle import Bundle
    from rtserve.bundle.signature import describe_signature
    from rtserve.cli import render

    opened = Bundle.open(bundle, check=not no_verify)
    if no_verify:
        print_warning("hashes were not checked (--no-verify): this view may not be what was built")
    signature = describe_signature(opened)
    if json_output:
        document = _with_serving(render.document(opened, bundle), opened)
        document["signature"] = signature
        print_json(document)
        return
    console = stdout()
    render.header(console, opened)
    render.line(console, "signature", signature_line(signature))
    render.line(console, "serving", serving_line(opened.manifest))
    render.environment(console, opened)
    console.print(render.fields_table(opened.manifest.model_schema))
    render.line(console, "outputs", render.outputs_line(opened.manifest.model_schema.outputs))
    render.profile_lines(console, opened)
    console.print(render.files_table(opened))


def verify(
    bundle: BundleArg,
    trust_pickle: TrustPickle = False,
    pin_digest: PinDigest = None,
    strict_versions: StrictVersions = False,
    trusted_keys: TrustedKeys = None,
    require_signature: RequireSignature = False,
    json_output: JsonFlag = False,
) -> None:
    """Check a bundle end to end: hashes, signature, trust, versions, and a matching warm-up.

    Opens the bundle with every hash checked, checks its signature against the --trusted-key
    keys (required with --require-signature), loads its runtime and predicts the validation
    sample, which must reproduce the outputs recorded at build. Exit code 1 on any failure.

    Example:

        rtserve verify bundles/fraud-1 --pin-digest sha256:3f2a…

        rtserve verify bundles/fraud-1 --trusted-key keys/rtserve-signing.pub.pem
        --require-signature
    """
    from rtserve.bundle.signature import describe_signature, load_public_keys
    from rtserve.engine.loader import load

    try:
        keys = load_public_keys(trusted_keys or [])
        predictor = load(
            bundle,
            trust_pickle=trust_pickle,
            pinned_digest=pin_digest,
            strict_versions=strict_versions,
            trusted_keys=keys,
            require_signature=require_signature,
        )
        parity = predictor.check_parity()
        if not parity.passed:
            raise BundleError(
                f"{bundle}: the {parity.describe()}; the installed framework versions may "
                "differ from the build (see `rtserve inspect`)"
            )
    except RtserveError as exc:
        if json_output:
            print_json({"ok": False, "path": str(bundle), "error": exc.to_dict()})
        raise
    signature = describe_signature(predictor.bundle, keys)
    if json_output:
        print_json(
            {
                "ok": True,
                "path": str(bundle),
                "name": predictor.name,
                "version": predictor.version,
                "digest": predictor.digest,
                "signature": signature,
                "parity": _parity_document(parity),
            }
        )
        return
    console = stdout()
    console.print(
        f"[bold green]OK[/] {predictor.name}:{predictor.version} {predictor.digest}",
        soft_wrap=True,
    )
    console.print(f"signature: {signature_line(signature)}", soft_wrap=True)
    console.print(parity.describe(), soft_wrap=True)


def reseal(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory whose rtserve.yaml was edited.")],
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", help="Allow a pickle bundle to load for the check (runs its code)."
        ),
    ] = False,
    strict_versions: StrictVersions = False,
    json_output: JsonFlag = False,
) -> None:
    """Re-sign a bundle after a hand edit of rtserve.yaml (e.g. a new bound in the schema).

    Refuses unless only rtserve.yaml changed, the edited schema still accepts the validation
    sample, and the model still reproduces the recorded outputs; then writes the new digest.

    Example:

        rtserve reseal bundles/fraud-1
    """
    from rtserve.building.reseal import reseal as reseal_bundle
    from rtserve.cli import render

    report = reseal_bundle(bundle, trust_pickle=trust_pickle, strict_versions=strict_versions)
    if json_output:
        print_json(
            {
                "name": report.name,
                "version": report.version,
                "old_digest": report.old_digest,
                "new_digest": report.new_digest,
                "changed": report.changed,
                "parity": _parity_document(report.parity),
            }
        )
        return
    console = stdout()
    if not report.changed:
        console.print(
            f"{report.name}:{report.version} is already sealed ({report.new_digest}); "
            "nothing to do",
            soft_wrap=True,
        )
        return
    console.print(f"[bold green]resealed[/] {report.name}:{report.version}")
    render.line(console, "old digest", report.old_digest or "(none)")
    render.line(console, "new digest", report.new_digest)
    console.print(report.parity.describe(), soft_wrap=True)


def serving_line(manifest: Manifest) -> str:
    """Which runtime serves by default, with the export's parity figures or why not."""
    from rtserve.engine.loader import serving

    choice = serving(manifest)
    optimized = manifest.optimized
    parity = optimized.parity if optimized is not None else None
    figures = ""
    if parity is not None:
        diff = "n/a" if parity.max_abs_diff is None else f"{parity.max_abs_diff:.2g}"
        figures = (
            f"{parity.rows} sample + {parity.probe_rows} probe rows, max |diff| {diff} "
            f"(tolerance {parity.tolerance:g}), {parity.label_mismatch_rate:.2%} labels differ"
        )
    if choice.optimized:
        return f"{choice.runtime} (ONNX export, parity passed: {figures})"
    reason = choice.reason + (f"; {figures}" if figures else "")
    return f"{choice.runtime} (native: {reason})"


def _with_serving(document: dict[str, Any], bundle: Bundle) -> dict[str, Any]:
    from rtserve.engine.loader import serving

    choice = serving(bundle.manifest)
    document["serving"] = {
        "runtime": choice.runtime,
        "optimized": choice.optimized,
        "reason": choice.reason,
    }
    return document


def _parity_document(parity: ParityReport) -> dict[str, Any]:
    return {
        "passed": parity.passed,
        "rows": parity.rows,
        "max_abs_diff": parity.max_abs_diff,
        "label_mismatch_rate": parity.label_mismatch_rate,
        "tolerance": parity.tolerance,
    }


def register(app: typer.Typer) -> None:
    """Add ``build``, ``inspect``, ``verify`` and ``reseal`` to the root command."""
    app.command("build")(build)
    app.command("inspect")(inspect_bundle)
    app.command("verify")(verify)
    app.command("reseal")(reseal)
