"""``rtserve containerize``: a container build context (Dockerfile and all) for bundles.

The deploy package is imported inside the command, so that ``rtserve --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.output import print_note


def containerize(
    bundles: Annotated[
        list[str],
        typer.Argument(
            help="Bundle directories or .tar.gz archives to bake into the image (verified; "
            "their digests are pinned).",
            metavar="BUNDLE...",
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the build context into.")
    ],
    registry_ref: Annotated[
        list[str] | None,
        typer.Option(
            "--registry-ref",
            help="Also serve NAME:VERSION[@sha256:DIGEST] from a volume mounted at "
            "/models/NAME-VERSION (not baked in; e.g. rtserve k8s --bundle-claim).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Image title [default: from the first model's name].")
    ] = None,
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            help="Directory of dependency wheels: copied into the context, and the build "
            "installs with --no-index (offline, reproducible)."
        ),
    ] = None,
    auth: Annotated[
        bool,
        typer.Option(help="Require credentials (RTSERVE_AUTH__API_KEYS) on every API route."),
    ] = True,
    project: Annotated[
        Path | None,
        typer.Option(help="rtserve checkout whose uv.lock pins the requirements [default: found]."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a directory that has files already.")
    ] = False,
) -> None:
    """Write a container build context: a multi-stage Dockerfile (base pinned by digest, non-root,
    HEALTHCHECK on /healthz), .dockerignore, requirements.txt from uv.lock with hashes, wheels and
    the bundles at /models/NAME-VERSION.

    Example: rtserve containerize bundles/fraud-1 -o image/ && podman build --format docker -t
    fraud:1 image/
    """
    from rtserve.bundle.bundle import Bundle
    from rtserve.deploy.container import find_project, write_context
    from rtserve.deploy.plan import DeployPlan, resolve_models
    from rtserve.errors import DeployError

    if output.exists() and not output.is_dir():
        raise DeployError(f"--output {output} is a file; give a directory", field="--output")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DeployError(
            f"--output {output} already has files; choose an empty directory or pass --overwrite",
            field="--output",
        )
    refs = registry_ref or []
    for ref in refs:
        if Path(ref).exists():
            raise DeployError(
                f"--registry-ref {ref!r} is a path; give bundles as arguments and registry "
                "references as NAME:VERSION[@sha256:DIGEST]",
                field="--registry-ref",
            )
    models = resolve_models([*bundles, *refs])
    # Opened (an archive unpacked) and kept open until the context is written.
    opened = {
        model.name: Bundle.open(source, check=True)
        for source, model in zip(bundles, models, strict=False)
    }
    sources = {model_name: bundle.path for model_name, bundle in opened.items()}
    plan = DeployPlan(models=models, image="local", name=name or "", auth=auth)
    context = write_context(
        plan, sources, output, project=project or find_project(), wheelhouse=wheelhouse
    )
    for path in context.files:
        typer.echo(str(path))
    mode = "offline (--no-index)" if context.offline else "from the package index"
    print_note(
        f"{plan.name}: build context in {output}, dependencies installed {mode}; build with "
        f"`podman build --format docker -t IMAGE {output}` (or docker build)"
    )


def register(app: typer.Typer) -> None:
    """Add ``containerize`` to the CLI."""
    app.command("containerize")(containerize)
