"""nginx in front of rtserve replicas: the configuration ``rtserve replicas`` generates.

The file is complete and standalone (``nginx -p PREFIX -c nginx.conf``): pid, logs and temporary
files are relative to the prefix, so nginx needs no root and no paths outside it. What each part
is for:

- ``upstream``: the replicas, with ``max_fails``/``fail_timeout`` (passive health: a replica that
  refuses or fails is skipped for a while) and ``keepalive`` (a pool of idle HTTP/1.1 connections
  per worker, so a request does not pay for a connect; closed after ``UPSTREAM_IDLE_S``, before
  uvicorn closes them itself after 5 s). A replica out of rotation is listed ``down``.
- ``proxy_next_upstream error timeout http_502 http_503 non_idempotent``: a request whose
  replica refused it, failed, died or shed it (503) is sent to the next replica, also after it
  was sent (``non_idempotent``): predictions are idempotent (same input, same answer, no side
  effect but a decision-log record), so a retry is safe. ``proxy_next_upstream_tries`` bounds it.
- Limits and timeouts follow the replicas' settings: ``client_max_body_size`` is
  ``limits.max_body_bytes``, header and body timeouts are rtserve's, ``proxy_read_timeout`` is
  longer than the longest deadline a client may ask for (``shedding.max_timeout_s``), so the
  replica answers 504 itself before nginx would give up.
- ``X-Request-ID`` passes through (nginx makes one when the client sent none), and every request
  is logged as one JSON line with the replica(s) that answered (``upstream``: several when a
  request was retried).
- Client keep-alive is off by default: a reload (which the supervisor does whenever a replica
  leaves or rejoins) closes idle keep-alive connections, and a client that had just sent a
  request on one sees the connection close without an answer. ``client_keepalive_s`` turns it on
  for clients that retry that case themselves, or when replicas rarely change.

Open-source nginx has no active health checks; ``rtserve.deploy.replicas`` polls ``/readyz`` and
rewrites this file (the ``down`` marks) when a replica's readiness changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rtserve.settings import Settings
from rtserve.version import rtserve_version

#: Idle keep-alive connections to the replicas that each nginx worker keeps.
UPSTREAM_KEEPALIVE = 32
#: nginx closes an idle upstream connection first: uvicorn closes them after 5 s.
UPSTREAM_IDLE_S = 4
#: Passive health: this many failures within FAIL_TIMEOUT_S take a replica out for that long.
MAX_FAILS = 2
FAIL_TIMEOUT_S = 5
#: Connecting to a replica on the same machine either works at once or not at all.
CONNECT_TIMEOUT_S = 2
#: nginx waits this much longer than the longest deadline a client may ask the replica for.
READ_TIMEOUT_MARGIN_S = 5
#: The log format name, and what each access-log line holds (one JSON object).
LOG_FORMAT = (
    '{"time":"$time_iso8601","msec":$msec,"client":"$remote_addr","request":"$request","status":$status,'
    '"bytes":$body_bytes_sent,"request_time":$request_time,"upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_time":"$upstream_response_time",'
    '"request_id":"$rtserve_request_id"}'
)


@dataclass(frozen=True)
class Backend:
    """One replica as nginx sees it."""

    index: int
    port: int
    in_rotation: bool = True
    note: str = "ready"  # why it is in or out, for the comment in the file
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Balancer:
    """Everything the generated file depends on."""

    host: str
    port: int
    backends: tuple[Backend, ...]
    max_body_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    read_timeout_s: float
    client_keepalive_s: float = 0.0
    workers: int | None = None  # None: one per CPU ("auto")
    #: A unix socket answering ``GET /generation`` (the supervisor's reload check); None: none.
    admin_socket: str | None = None
    generation: int = 0

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        host: str,
        port: int,
        backends: Sequence[Backend],
        client_keepalive_s: float = 0.0,
        workers: int | None = None,
        admin_socket: str | None = None,
    ) -> Balancer:
        """Limits and timeouts from the replicas' settings (see the module docstring)."""
        return cls(
            host=host,
            port=port,
            backends=tuple(backends),
            max_body_bytes=settings.limits.max_body_bytes,
            header_timeout_s=settings.limits.header_timeout_s,
            body_timeout_s=settings.limits.body_timeout_s,
            read_timeout_s=settings.shedding.max_timeout_s + READ_TIMEOUT_MARGIN_S,
            client_keepalive_s=client_keepalive_s,
            workers=workers,
            admin_socket=admin_socket,
        )

    def with_backends(self, backends: Sequence[Backend], generation: int) -> Balancer:
        """The same balancer with another rotation (a new generation of the file)."""
        return dataclasses.replace(self, backends=tuple(backends), generation=generation)


def render(balancer: Balancer) -> str:
    """The nginx.conf text for ``balancer``."""
    b = balancer
    listen = f"[{b.host}]:{b.port}" if ":" in b.host else f"{b.host}:{b.port}"
    # nginx needs at least one usable server: with none ready, every replica stays listed (a
    # 503 from one that is not ready yet beats nginx's own 502 "no live upstreams").
    none_ready = not any(backend.in_rotation for backend in b.backends)
    servers = "\n".join(_server_line(backend, force_in=none_ready) for backend in b.backends)
    admin = "" if b.admin_socket is None else _ADMIN.format(socket=b.admin_socket, gen=b.generation)
    return _TEMPLATE.format(
        version=rtserve_version(missing="unknown"),
        generation=b.generation,
        workers=b.workers if b.workers is not None else "auto",
        log_format=LOG_FORMAT,
        servers=servers,
        keepalive=UPSTREAM_KEEPALIVE,
        upstream_idle=UPSTREAM_IDLE_S,
        listen=listen,
        client_keepalive=_seconds(b.client_keepalive_s),
        max_body=b.max_body_bytes,
        header_timeout=_seconds(b.header_timeout_s),
        body_timeout=_seconds(b.body_timeout_s),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=_seconds(b.read_timeout_s),
        tries=max(2, len(b.backends)),
        admin=admin,
    )


def _server_line(backend: Backend, *, force_in: bool) -> str:
    address = f"{backend.host}:{backend.port}"
    if backend.in_rotation or force_in:
        return (
            f"        server {address} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT_S}s;"
            f"  # replica {backend.index}: {backend.note}"
        )
    return f"        server {address} down;  # replica {backend.index}: {backend.note}"


def _seconds(value: float) -> str:
    """nginx time: ``10s``, ``1500ms``, or ``0`` for off."""
    milliseconds = math.ceil(value * 1000)
    if milliseconds % 1000 == 0:
        return f"{milliseconds // 1000}s" if milliseconds else "0"
    return f"{milliseconds}ms"


_ADMIN = """
    # The supervisor's reload check: which generation of this file the workers run.
    server {{
        listen unix:{socket};
        access_log off;
        location = /generation {{
            default_type text/plain;
            return 200 "{gen}\\n";
        }}
        location / {{
            return 404;
        }}
    }}
"""

_TEMPLATE = """\
# Generated by rtserve replicas {version} (generation {generation}); regenerated and reloaded
# when a replica leaves or rejoins. Change the command's options, not this file.
# Run: nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/logs/error.log -g 'daemon off;'
worker_processes {workers};
pid nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    server_tokens off;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    # The client's X-Request-ID, or one made here; sent to the replica and logged.
    map $http_x_request_id $rtserve_request_id {{
        default $http_x_request_id;
        "" $request_id;
    }}
    log_format rtserve escape=json '{log_format}';
    access_log logs/access.log rtserve;

    upstream rtserve_replicas {{
{servers}
        keepalive {keepalive};
        keepalive_timeout {upstream_idle}s;
    }}

    server {{
        listen {listen};
        # Off: a reload closes idle keep-alive connections under a client's next request.
        keepalive_timeout {client_keepalive};
        client_max_body_size {max_body};
        client_header_timeout {header_timeout};
        client_body_timeout {body_timeout};

        location / {{
            proxy_pass http://rtserve_replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $rtserve_request_id;
            # The replicas trust this proxy (server.trusted_proxies) for the client's address.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Predictions are idempotent: a request a replica refused, failed, dropped or shed
            # goes to the next one, even after it was sent.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries {tries};
            proxy_next_upstream_timeout {read_timeout};
            proxy_connect_timeout {connect_timeout}s;
            proxy_send_timeout {body_timeout};
            proxy_read_timeout {read_timeout};
        }}
    }}
{admin}}}
"""
