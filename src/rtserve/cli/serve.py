"""``rtserve serve``: serve one or more bundles over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtserve.settings import Settings


def serve(
    bundles: Annotated[
        list[Path] | None,
        typer.Argument(help="Bundle directories or .tar.gz archives (default: RTSERVE_BUNDLES)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8080].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes, each with its own models [default: 1].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file (RTSERVE_* variables override it).")
    ] = None,
    trust_pickle: Annotated[
        bool | None,
        typer.Option("--trust-pickle", help="Allow pickle bundles whose digest is pinned."),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Serve bundles with the Open Inference Protocol (/v2) and the records API (/v1).

    Example: rtserve serve bundles/fraud-1 bundles/churn-3.tar.gz --port 8080 --workers 2

    Health: /v2/health/live, /v2/health/ready (also /healthz, /readyz); docs at /docs.
    """
    from rtserve.observability.logging import configure_logging
    from rtserve.server.runner import run

    settings = Settings.load(
        config,
        bundles=[str(b) for b in bundles] if bundles else None,
        host=host,
        port=port,
        workers=workers,
        trust_pickle=trust_pickle,
        log_level=log_level,
    )
    if not settings.bundles:
        raise typer.BadParameter("give at least one bundle (or set RTSERVE_BUNDLES)")
    missing = [b for b in settings.bundles if not Path(b).exists()]
    if missing:
        raise typer.BadParameter(f"no such bundle: {', '.join(missing)}")
    configure_logging(settings.log_level)
    typer.echo(
        f"rtserve: serving {len(settings.bundles)} bundle(s) on http://{settings.host}:"
        f"{settings.port} with {settings.workers} worker(s); docs at /docs",
        err=True,
    )
    run(settings)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)
