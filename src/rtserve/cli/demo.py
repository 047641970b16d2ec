"""``rtserve demo``: train the card-fraud demo model, bundle it and serve it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.serve import decision_log_destination, require_free_port

DEFAULT_DIR = Path(".rtserve-demo")


def demo(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo bundle is written (and reused).")
    ] = DEFAULT_DIR,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Only build (or verify) the bundle, then exit.")
    ] = False,
) -> None:
    """Generate card transactions, train a fraud pipeline, bundle it and serve it.

    The bundle is reused on later runs. Stop the server with Ctrl-C.
    """
    from rtserve.demo import DEMO_NAME, DEMO_VERSION, build_demo_bundle, example_record
    from rtserve.observability.logging import configure_logging
    from rtserve.server.runner import run
    from rtserve.settings import Settings

    target = directory / f"{DEMO_NAME}-{DEMO_VERSION}"
    typer.echo(f"rtserve demo: building the {DEMO_NAME} bundle in {target} ...", err=True)
    build_demo_bundle(target)
    base = f"http://{host}:{port}"
    body = json.dumps({"instances": [example_record()]})
    typer.echo(
        f"""
  model     {DEMO_NAME} (version {DEMO_VERSION}) from {target}
  URL       {base}
  docs      {base}/docs
  ready     curl -s {base}/v2/health/ready
  predict   curl -s -X POST {base}/v1/models/{DEMO_NAME}:predict \\
              -H 'Content-Type: application/json' -d '{body}'
"""
    )
    if no_serve:
        return
    # The demo keeps everything it writes in its own directory, decision log included.
    settings = Settings.load(
        bundles=[str(target)],
        server={"host": host, "port": port},
        decision_log={"directory": str(directory / "decisions")},
    )
    require_free_port(settings.server.host, settings.server.port)
    configure_logging("info")
    typer.echo(f"rtserve: {decision_log_destination(settings)}", err=True)
    run(settings)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the CLI."""
    app.command("demo")(demo)
