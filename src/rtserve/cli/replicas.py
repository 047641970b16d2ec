"""``rtserve replicas``: N ``rtserve serve`` processes behind nginx, supervised (or nginx's
configuration written for people who run nginx themselves).

The deploy package and the settings are imported inside the command, so that ``rtserve --help``
stays fast.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.output import print_note

#: Where Debian installs nginx (root's PATH has /usr/sbin; other users' may not).
DEBIAN_NGINX = "/usr/sbin/nginx"


def replicas(
    bundles: Annotated[
        list[str],
        typer.Argument(
            help="Bundle directories or .tar.gz archives; every replica serves all of them.",
            metavar="BUNDLE...",
        ),
    ],
    count: Annotated[
        int, typer.Option("--replicas", "-n", min=1, max=64, help="Replica processes.")
    ] = 2,
    host: Annotated[str, typer.Option(help="Interface nginx listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port nginx listens on.")] = 8080,
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="YAML settings file for every replica (and the "
            "limits and timeouts nginx's configuration follows).",
        ),
    ] = None,
    replica_ports: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="First of N consecutive loopback ports for the replicas "
            "[default: free ports; with --write-config: PORT+1 ...].",
        ),
    ] = None,
    client_keepalive: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds nginx keeps an idle client connection open; 0: one request per "
            "connection, so that nginx's reloads never close a connection under a request.",
        ),
    ] = 0.0,
    nginx_workers: Annotated[
        int | None, typer.Option(min=1, help="nginx worker processes [default: one per CPU].")
    ] = None,
    nginx: Annotated[
        str | None,
        typer.Option(help=f"The nginx program [default: nginx on PATH, else {DEBIAN_NGINX}]."),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory for nginx.conf, logs (nginx's and each replica's), state.json and "
            "nginx's temporary files [default: a new directory under the system's temp dir].",
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between readiness polls of the replicas.")
    ] = 0.5,
    ready_timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds the replicas may take to be ready at the start."),
    ] = 300.0,
    write_config: Annotated[
        Path | None,
        typer.Option(
            help="Write nginx.conf for these replicas into this directory and exit (nginx and "
            "the replicas are yours to run).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run N replicas of `rtserve serve` behind nginx: restarted when they die, taken out of
    nginx's rotation while not ready, restarted one at a time on SIGHUP (a rolling restart);
    SIGTERM or Ctrl-C stops nginx, then the replicas.

    Example: rtserve replicas bundles/fraud-1 -n 3 --port 8080, then
    `kill -HUP $(jq .supervisor_pid RUN_DIR/state.json)` for a rolling restart.
    """
    from rtserve.deploy.nginx import Backend, Balancer
    from rtserve.deploy.replicas import (
        ReplicaPlan,
        Supervisor,
        admin_socket_path,
        free_ports,
        require_free,
    )
    from rtserve.deploy.replicas import (
        write_config as write_nginx_config,
    )
    from rtserve.errors import DeployError
    from rtserve.observability.logging import configure_logging
    from rtserve.settings import Settings

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"--log-level {log_level!r}: use debug, info, warning or error")
    missing = [bundle for bundle in bundles if not Path(bundle).exists()]
    if missing:
        raise typer.BadParameter(f"no such bundle: {', '.join(missing)}")
    settings = Settings.load(config, bundles=list(bundles))
    first = replica_ports or (port + 1 if write_config is not None else None)
    ports = tuple(range(first, first + count)) if first is not None else free_ports(count)
    if first is not None and ports[-1] > 65535:
        raise DeployError(
            f"--replica-ports {first}: {count} ports from there pass 65535", field="--replica-ports"
        )
    if port in ports:
        raise DeployError(
            f"--port {port} is also a replica's port ({ports[0]}-{ports[-1]}); choose another "
            "--port or --replica-ports",
            field="--replica-ports",
        )
    backends = [Backend(i, p) for i, p in enumerate(ports)]

    def balancer(admin_socket: str | None) -> Balancer:
        return Balancer.for_settings(
            settings, host=host, port=port, backends=backends,
            client_keepalive_s=client_keepalive, workers=nginx_workers, admin_socket=admin_socket,
        )  # fmt: skip

    if write_config is not None:
        conf = write_nginx_config(write_config, balancer(None))
        typer.echo(str(conf))
        env = "RTSERVE_SERVER__TRUSTED_PROXIES='[\"127.0.0.1\"]'"
        option = f" --config {config}" if config is not None else ""
        serve = "\n".join(
            f"  {env} rtserve serve {' '.join(bundles)} --port {p}{option}" for p in ports
        )
        print_note(
            f"nginx.conf for {count} replicas on ports {ports[0]}-{ports[-1]} written to "
            f"{write_config}. Start the replicas:\n{serve}\nthen nginx: nginx -p "
            f"{write_config.resolve()}/ -c {conf.resolve()} -e logs/error.log -g 'daemon off;'"
        )
        return
    program = nginx or shutil.which("nginx") or DEBIAN_NGINX
    if shutil.which(program) is None:
        raise DeployError(
            f"nginx: {program} is not an executable program; install nginx (Debian: apt-get "
            "install nginx-light) or pass --nginx PATH",
            field="--nginx",
        )
    require_free(host, [port], "--port")
    require_free("127.0.0.1", ports, "--replica-ports")
    directory = run_dir or Path(tempfile.mkdtemp(prefix="rtserve-replicas-"))
    configure_logging(log_level)
    plan = ReplicaPlan(
        bundles=tuple(bundles),
        ports=ports,
        balancer=balancer(str(admin_socket_path(directory))),
        run_dir=directory,
        settings=settings,
        config=config,
        nginx=program,
        poll_interval_s=poll_interval,
    )
    print_note(
        f"starting {count} replicas of {', '.join(bundles)} on ports {', '.join(map(str, ports))} "
        f"behind nginx on http://{host}:{port}; files in {directory}"
    )
    Supervisor(plan).run(ready_timeout_s=ready_timeout)


def register(app: typer.Typer) -> None:
    """Add ``replicas`` to the CLI."""
    app.command("replicas")(replicas)
