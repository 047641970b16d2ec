"""``rtserve k8s``: Kubernetes, KServe and ECS deployment files for bundles or registry references.

The deploy package (and the bundle reader it uses) is imported inside the command, so that
``rtserve --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.output import print_note


def k8s(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Bundle directories or .tar.gz archives (verified; their digests are pinned), "
            "or registry references NAME:VERSION[@sha256:DIGEST].",
            metavar="BUNDLE|REF...",
        ),
    ],
    image: Annotated[
        str,
        typer.Option(
            help="The container image that holds rtserve and the bundles at /models/NAME-VERSION "
            "(rtserve containerize); pin it by digest."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the files into.")
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Kubernetes name of the app [default: from the first model's name]."),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Replicas, and the autoscaler's minimum.")] = 2,
    max_replicas: Annotated[int, typer.Option(help="The autoscaler's maximum.")] = 10,
    workers: Annotated[int, typer.Option(help="Server worker processes per pod.")] = 1,
    cpu_request: Annotated[str, typer.Option(help="CPU request per pod.")] = "500m",
    memory_request: Annotated[str, typer.Option(help="Memory request per pod.")] = "512Mi",
    cpu_limit: Annotated[
        str | None,
        typer.Option(help="CPU limit per pod [default: none: throttling adds tail latency]."),
    ] = None,
    memory_limit: Annotated[str, typer.Option(help="Memory limit per pod.")] = "1Gi",
    target_cpu_percent: Annotated[
        int, typer.Option(help="Autoscale to keep CPU use at this share of the request.")
    ] = 70,
    target_in_flight: Annotated[
        int, typer.Option(help="Autoscale to keep this many requests in flight per pod.")
    ] = 16,
    pre_stop_s: Annotated[
        float,
        typer.Option(help="preStop sleep: seconds for endpoints to stop routing before SIGTERM."),
    ] = 5.0,
    drain_delay_s: Annotated[
        float,
        typer.Option(help="Seconds the server keeps serving, not ready, after SIGTERM."),
    ] = 5.0,
    graceful_timeout_s: Annotated[
        float, typer.Option(help="Seconds in-flight requests get to finish after the drain.")
    ] = 30.0,
    startup_s: Annotated[
        float, typer.Option(help="Seconds the models may take to load before the pod restarts.")
    ] = 300.0,
    auth: Annotated[
        bool,
        typer.Option(help="Require credentials (API keys from the Secret) on every API route."),
    ] = True,
    jwt_issuer: Annotated[
        str, typer.Option(help="Also accept HS256 bearer tokens from this issuer.")
    ] = "",
    jwt_audience: Annotated[str, typer.Option(help="The audience those tokens must name.")] = "",
    bundle_claim: Annotated[
        str | None,
        typer.Option(
            help="Read the bundles from this PersistentVolumeClaim (mounted read-only at "
            "/models) instead of the image."
        ),
    ] = None,
    ecs: Annotated[
        bool, typer.Option(help="Also write ecs/task-definition.json (Fargate).")
    ] = True,
    aws_region: Annotated[
        str, typer.Option(help="AWS region in the ECS file's ARNs and log settings.")
    ] = "REGION",
    aws_account_id: Annotated[
        str, typer.Option(help="AWS account id in the ECS file's ARNs.")
    ] = "ACCOUNT_ID",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Write into a directory that has files already.")
    ] = False,
) -> None:
    """Write Kubernetes manifests (Kustomize base + staging/production overlays), a KServe
    InferenceService and an ECS task definition that serve the given bundles.

    Example: rtserve k8s bundles/fraud-1 --image registry.example.com/fraud@sha256:... -o deploy/

    Probes use /healthz (startup, liveness) and /readyz (readiness); the preStop sleep, the
    server's drain and terminationGracePeriodSeconds are derived from one another. See the
    README.md written next to the files for the Secret to create.
    """
    from rtserve.deploy.ecs import task_definition, write_ecs
    from rtserve.deploy.kubernetes import write_kubernetes
    from rtserve.deploy.plan import DeployPlan, Resources, Timings, resolve_models
    from rtserve.errors import DeployError

    if output.exists() and not output.is_dir():
        raise DeployError(f"--output {output} is a file; give a directory", field="--output")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DeployError(
            f"--output {output} already has files; choose an empty directory or pass --overwrite",
            field="--output",
        )
    plan = DeployPlan(
        models=resolve_models(sources),
        image=image,
        name=name or "",
        replicas=replicas,
        max_replicas=max_replicas,
        workers=workers,
        target_cpu_percent=target_cpu_percent,
        target_in_flight=target_in_flight,
        timings=Timings(
            pre_stop_s=pre_stop_s,
            drain_delay_s=drain_delay_s,
            graceful_timeout_s=graceful_timeout_s,
            startup_s=startup_s,
        ),
        resources=Resources(
            cpu_request=cpu_request,
            memory_request=memory_request,
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
        ),
        auth=auth,
        jwt_issuer=jwt_issuer,
        jwt_audience=jwt_audience,
        bundle_claim=bundle_claim,
    )
    # The ECS file is made first: it may refuse the timings, and then nothing is written.
    task = task_definition(plan, region=aws_region, account_id=aws_account_id) if ecs else None
    written = write_kubernetes(plan, output)
    if task is not None:
        written.append(write_ecs(task, output))
    unpinned = [model.label for model in plan.models if model.digest is None]
    if unpinned:
        print_note(
            f"not pinned by digest: {', '.join(unpinned)} (give a bundle, or "
            "NAME:VERSION@sha256:DIGEST, so pods refuse any other bundle)"
        )
    for path in written:
        typer.echo(str(path))
    print_note(f"{plan.name}: {len(written)} files in {output}; next steps in {output}/README.md")


def register(app: typer.Typer) -> None:
    """Add ``k8s`` to the CLI."""
    app.command("k8s")(k8s)
