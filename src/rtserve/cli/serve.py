"""``rtserve serve``: serve one or more bundles over HTTP."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rtserve.settings import Settings

# Settings (pydantic) and the server are imported inside the command, so that `rtserve --help`
# stays fast.


def serve(
    bundles: Annotated[
        list[str] | None,
        typer.Argument(
            help="Bundle directories or .tar.gz archives (default: RTSERVE_BUNDLES); with "
            "--registry, NAME@STAGE specs to serve and follow (e.g. fraud@production).",
            show_default=False,
        ),
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
    registry: Annotated[
        str | None,
        typer.Option(
            help="Serve from this registry (a directory, or a database URL with "
            "RTSERVE_REGISTRY__STORE) and follow its stage pointers [default: none].",
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(help="Seconds between reads of the followed pointers [default: 2]."),
    ] = None,
    rollout: Annotated[
        Path | None,
        typer.Option(
            help="A rollout spec (YAML: canary, A/B split, shadows, gate) for the bundles given; "
            "see docs/rollout.md [default: none].",
        ),
    ] = None,
) -> None:
    """Serve bundles with the Open Inference Protocol (/v2) and the records API (/v1).

    Example: rtserve serve bundles/fraud-1 bundles/churn-3.tar.gz --port 8080 --workers 2

    From a registry: rtserve serve --registry ./registry fraud@production churn@production
    (a new production version is loaded, warmed up and switched to without dropping a request).

    Health: /v2/health/live, /v2/health/ready (also /healthz, /readyz); docs at /docs.
    """
    from rtserve.observability.logging import configure_logging
    from rtserve.server.runner import run
    from rtserve.settings import Settings

    specs = registry is not None and bundles
    settings = Settings.load(
        config,
        bundles=None if specs or not bundles else [str(b) for b in bundles],
        registry__url=registry,
        registry__follow=list(bundles) if specs and bundles else None,
        registry__poll_interval_s=poll_interval,
        server__host=host,
        server__port=port,
        server__workers=workers,
        loading__trust_pickle=trust_pickle,
        logging__level=log_level,
        rollout__file=str(rollout) if rollout is not None else None,
    )
    if not settings.bundles and not settings.registry.follow:
        raise typer.BadParameter(
            "give at least one bundle (or set RTSERVE_BUNDLES), or --registry DIR NAME@STAGE ..."
        )
    url = settings.registry.url
    if settings.registry.follow and url and "://" not in url and not Path(url).is_dir():
        raise typer.BadParameter(
            f"no registry at {url}: create one with `rtserve registry --registry {url} init`"
        )
    from rtserve.bundle.signature import load_public_keys

    load_public_keys(settings.loading.trusted_keys)  # a bad key file: one error line, no start
    if settings.rollout.file:
        from rtserve.rollout.spec import read_spec_file

        read_spec_file(settings.rollout.file)  # a bad spec: one error line naming the key
    missing = [b for b in settings.bundles if not Path(b).exists()]
    if missing:
        raise typer.BadParameter(f"no such bundle: {', '.join(missing)}")
    server = settings.server
    require_free_port(server.host, server.port)
    configure_logging(settings.logging.level)
    typer.echo(
        f"rtserve: serving {len(settings.bundles) + len(settings.registry.follow)} model(s) on "
        f"http://{server.host}:"
        f"{server.port} with {server.workers} worker(s); docs at /docs\n"
        f"rtserve: {decision_log_destination(settings)}",
        err=True,
    )
    run(settings)


def require_free_port(host: str, port: int) -> None:
    """Refuse a port another process listens on before any model is loaded.

    uvicorn would find out only after the models loaded, and exit 3 with a log line; a person
    wants one sentence at once. (A process could still take the port in between: uvicorn's own
    error remains the last word.)
    """
    if port == 0:
        return
    from rtserve.settings import SettingsError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (
                "is in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror
            )
            raise SettingsError(
                f"cannot listen on {host}:{port}: the port {reason}; stop that process or choose "
                "another port with --port (or RTSERVE_SERVER__PORT)",
                field="server.port",
            ) from exc


def decision_log_destination(settings: Settings) -> str:
    """Where this server records which model version decided what, for the start-up banner."""
    log = settings.decision_log
    if not log.enabled:
        return "decision log off"
    if log.sink == "sql":
        return f"decision log in {_without_password(log.database_url or '')}"
    return f"decision log in {log.directory} (RTSERVE_DECISION_LOG__ENABLED=false turns it off)"


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported by the sink itself
        return "the configured database"


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)
