"""``rtserve replicas``: N ``rtserve serve`` processes behind nginx, supervised from one process.

The supervisor starts the replicas on loopback ports, waits until every one is ready, then runs
Debian's nginx as a foreground child (``-g 'daemon off;'``, everything under the run directory)
with the configuration ``rtserve.deploy.nginx`` generates. Then, every ``poll_interval_s``:

- **A replica that exits is restarted** (after 1, 2, 4 ... 30 s when it keeps dying within 10 s
  of its start). Until it is ready again it is ``down`` in nginx's upstream list.
- **Readiness is polled** (``GET /readyz``): open-source nginx has no active health checks, so
  the supervisor rewrites the upstream list and reloads nginx (SIGHUP, then waits until nginx's
  workers run the new generation of the file) when a replica turns unready (two failed polls)
  or ready again. Meanwhile nginx's passive checks and ``proxy_next_upstream`` cover the gap:
  a request to a dead replica goes to the next one.
- **SIGHUP to the supervisor restarts the replicas one at a time** (a rolling restart): when
  every replica is ready, take one out of the upstream list (reload), SIGTERM it (it drains and
  exits 0), start it again, wait until ``/readyz`` says 200, put it back (reload), next.
- **SIGTERM or SIGINT stops everything**: nginx first (SIGQUIT: it stops accepting and finishes
  the requests it has), then every replica (SIGTERM: each drains), then exits 0.

Children run in their own process groups (a Ctrl-C in the terminal reaches the supervisor only,
which stops them in order) and get SIGTERM should the supervisor die. ``state.json`` in the run
directory says what runs where (pids, ports, states, restarts), for operators and tests.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rtserve.deploy.nginx import Backend, Balancer, render
from rtserve.errors import DeployError
from rtserve.settings import Settings

logger = logging.getLogger("rtserve.replicas")

#: A replica that dies within this many seconds of its start is restarted after a back-off.
CRASH_WINDOW_S = 10.0
MAX_BACKOFF_S = 30.0
#: Failed readiness polls in a row that take a ready replica out of rotation.
UNREADY_AFTER = 2
#: How long nginx may take to start, or to run a new generation of its file after SIGHUP.
NGINX_TIMEOUT_S = 15.0
#: After a reload is confirmed, nginx's old workers stop accepting within about 100 ms.
RELOAD_SETTLE_S = 0.3
#: The longest unix socket path (``sun_path``) Linux accepts.
MAX_SOCKET_PATH = 107


class State(enum.StrEnum):
    """Where a replica is in its life; only ``ready`` replicas are in nginx's rotation."""

    STARTING = "starting"
    READY = "ready"
    UNREADY = "unready"
    DRAINING = "draining"  # taken out for a rolling restart, SIGTERM sent
    STOPPED = "stopped"


@dataclass
class Replica:
    """One ``rtserve serve`` process and what the supervisor knows of it."""

    index: int
    port: int
    state: State = State.STARTING
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the current process's start
    restarts: int = 0
    failed_polls: int = 0
    crashes_in_a_row: int = 0
    not_before: float = 0.0  # no new process before this (crash back-off)
    kill_at: float | None = None  # draining: SIGKILL if it has not exited by then


@dataclass(frozen=True)
class ReplicaPlan:
    """What to run: the ``rtserve serve`` arguments, the ports, nginx and where files go."""

    bundles: tuple[str, ...]
    ports: tuple[int, ...]
    balancer: Balancer
    run_dir: Path
    settings: Settings
    config: Path | None = None
    nginx: str = "nginx"
    poll_interval_s: float = 0.5
    #: Extra environment for the replicas (the CLI passes none; tests may).
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def stop_timeout_s(self) -> float:
        """How long a replica may take to drain and exit after SIGTERM before it is killed."""
        server = self.settings.server
        return server.drain_delay_s + server.graceful_timeout_s + 5.0

    def replica_command(self, port: int) -> list[str]:
        """``python -m rtserve serve BUNDLES --host 127.0.0.1 --port PORT [--config FILE]``."""
        config = ["--config", str(self.config)] if self.config is not None else []
        return [
            sys.executable, "-m", "rtserve", "serve", *self.bundles,
            "--host", "127.0.0.1", "--port", str(port), *config,
        ]  # fmt: skip

    def replica_environment(self) -> dict[str, str]:
        """The replicas trust nginx (on loopback) for the client's address (X-Forwarded-For)."""
        trusted = [*self.settings.server.trusted_proxies, "127.0.0.1"]
        return {
            **os.environ,
            "RTSERVE_SERVER__TRUSTED_PROXIES": json.dumps(sorted(set(trusted))),
            "PYTHONUNBUFFERED": "1",
            **self.environment,
        }


def prepare_run_dir(run_dir: Path) -> None:
    """The nginx prefix: ``logs/`` and ``temp/`` inside, traversable by nginx's workers (which
    run as ``nobody`` when the master runs as root)."""
    for directory in (run_dir, run_dir / "logs", run_dir / "temp"):
        directory.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)


def admin_socket_path(run_dir: Path) -> Path:
    """Where nginx answers the supervisor's ``GET /generation`` (a unix socket)."""
    path = run_dir.resolve() / "admin.sock"
    if len(str(path)) > MAX_SOCKET_PATH:
        raise DeployError(
            f"--run-dir {run_dir}: the socket path {path} is {len(str(path))} characters, more "
            f"than the {MAX_SOCKET_PATH} a unix socket allows; choose a shorter directory",
            field="--run-dir",
        )
    return path


def write_config(directory: Path, balancer: Balancer) -> Path:
    """Write ``nginx.conf`` (and the ``logs/``, ``temp/`` it expects) for nginx run by hand."""
    prepare_run_dir(directory)
    path = directory / "nginx.conf"
    path.write_text(render(balancer), encoding="utf-8")
    return path


def check_config(nginx: str, prefix: Path, conf: Path) -> None:
    """``nginx -t``: a configuration nginx refuses is a ``DeployError`` with nginx's words."""
    done = subprocess.run(  # noqa: S603 - our own command line, no shell
        [nginx, "-t", "-q", *_nginx_paths(prefix, conf)],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    if done.returncode != 0:
        raise DeployError(
            f"nginx refuses the generated {conf}: {(done.stderr or done.stdout).strip()}",
            field="nginx",
        )


def _nginx_paths(prefix: Path, conf: Path) -> list[str]:
    return ["-p", f"{prefix.resolve()}/", "-c", str(conf.resolve()), "-e", "logs/error.log"]


class Supervisor:
    """Runs the plan until SIGTERM/SIGINT (see the module docstring)."""

    def __init__(self, plan: ReplicaPlan) -> None:
        self.plan = plan
        self.replicas = [Replica(i, port) for i, port in enumerate(plan.ports)]
        self.conf = plan.run_dir / "nginx.conf"
        self.socket = admin_socket_path(plan.run_dir)
        self.balancer = plan.balancer
        self.nginx: subprocess.Popen[bytes] | None = None
        self.nginx_restarts = 0
        self.generation = 0
        self._applied: tuple[Backend, ...] | None = None
        self._stop = False
        self._roll_requested = False
        self._rolling: deque[int] = deque()
        self._rolling_current: int | None = None
        self._rolling_started: float | None = None
        self.rolling_restarts = 0
        self.last_rolling_restart_s: float | None = None
        self._state_text = ""

    # --- the whole run ---------------------------------------------------------------------

    def run(self, *, ready_timeout_s: float = 300.0) -> None:
        """Start, supervise until a stop signal, stop everything; returns when all is down."""
        prepare_run_dir(self.plan.run_dir)
        previous = self._install_signal_handlers()
        try:
            self._start_all(ready_timeout_s)
            while not self._stop:
                self._tick()
                self._sleep(self.plan.poll_interval_s)
        finally:
            self._shutdown()
            self._write_state()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _start_all(self, ready_timeout_s: float) -> None:
        """Every replica ready, then nginx; a replica that dies before its first ready fails."""
        for replica in self.replicas:
            self._start_replica(replica)
        deadline = time.monotonic() + ready_timeout_s
        while not all(r.state is State.READY for r in self.replicas):
            if self._stop:
                return
            for replica in self.replicas:
                if replica.process is not None and replica.process.poll() is not None:
                    raise DeployError(
                        f"replica {replica.index} (rtserve serve on port {replica.port}) exited "
                        f"with code {replica.process.returncode} before it was ready:\n"
                        + _tail(self._replica_log(replica)),
                        field="bundles",
                    )
                if replica.state is State.STARTING and self._ready(replica):
                    self._mark_ready(replica)
            if time.monotonic() > deadline:
                waiting = [r for r in self.replicas if r.state is not State.READY]
                raise DeployError(
                    f"replica(s) {', '.join(str(r.index) for r in waiting)} not ready after "
                    f"{ready_timeout_s:.0f} s (--ready-timeout); the errors replica "
                    f"{waiting[0].index} logged:\n" + _errors(self._replica_log(waiting[0])),
                    field="bundles",
                )
            time.sleep(0.1)
        self._start_nginx()
        self._write_state()
        logger.info(
            "%d replicas ready behind nginx on http://%s:%d (run directory %s; SIGHUP to the "
            "supervisor, pid %d: rolling restart; SIGTERM: stop)",
            len(self.replicas), self.balancer.host, self.balancer.port, self.plan.run_dir,
            os.getpid(),
        )  # fmt: skip

    # --- one supervision step ----------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        self._watch_nginx()
        for replica in self.replicas:
            self._watch_process(replica, now)
        for replica in self.replicas:
            if replica.state in (State.STARTING, State.READY, State.UNREADY) and self._alive(
                replica
            ):
                self._poll(replica)
        if self._roll_requested:
            self._roll_requested = False
            self._begin_rolling_restart()
        self._advance_rolling_restart()
        self._reconcile()
        self._write_state()

    def _watch_process(self, replica: Replica, now: float) -> None:
        process = replica.process
        if process is not None and process.poll() is not None:
            code = process.returncode
            replica.process = None
            if replica.state is State.DRAINING:
                logger.info(
                    "replica %d stopped (exit code %d); starting it again", replica.index, code
                )
                replica.state = State.STARTING
                replica.kill_at = None
            else:
                uptime = now - replica.started_at
                replica.crashes_in_a_row = (
                    replica.crashes_in_a_row + 1 if uptime < CRASH_WINDOW_S else 0
                )
                backoff = (
                    min(MAX_BACKOFF_S, 2.0 ** (replica.crashes_in_a_row - 1))
                    if replica.crashes_in_a_row
                    else 0.0
                )
                replica.not_before = now + backoff
                replica.state = State.STARTING
                logger.warning(
                    "replica %d (port %d) exited with code %d after %.1f s; restarting it%s",
                    replica.index, replica.port, code, uptime,
                    f" in {backoff:.0f} s" if backoff else "",
                )  # fmt: skip
            replica.restarts += 1
            self._reconcile()  # out of rotation at once, before it is started again
        if (
            replica.process is None
            and replica.state is State.STARTING
            and now >= replica.not_before
        ):
            self._start_replica(replica)
        if replica.kill_at is not None and now > replica.kill_at and replica.process is not None:
            logger.error("replica %d did not exit after SIGTERM; killing it", replica.index)
            replica.process.kill()
            replica.kill_at = None

    def _poll(self, replica: Replica) -> None:
        if self._ready(replica):
            replica.failed_polls = 0
            if replica.state is not State.READY:
                self._mark_ready(replica)
            return
        replica.failed_polls += 1
        if replica.state is State.READY and replica.failed_polls >= UNREADY_AFTER:
            replica.state = State.UNREADY
            logger.warning(
                "replica %d (port %d) is not ready; out of rotation", replica.index, replica.port
            )

    def _mark_ready(self, replica: Replica) -> None:
        replica.state = State.READY
        replica.failed_polls = 0
        logger.info(
            "replica %d ready on port %d (pid %d) after %.1f s",
            replica.index, replica.port, replica.process.pid if replica.process else -1,
            time.monotonic() - replica.started_at,
        )  # fmt: skip

    # --- rolling restart ---------------------------------------------------------------------

    def request_rolling_restart(self) -> None:
        """Restart every replica, one at a time (what SIGHUP does)."""
        self._roll_requested = True

    def request_stop(self) -> None:
        """Stop nginx, then the replicas, and return from ``run`` (what SIGTERM/SIGINT do)."""
        self._stop = True

    def _begin_rolling_restart(self) -> None:
        if self._rolling or self._rolling_current is not None:
            logger.info("a rolling restart is already under way")
            return
        self._rolling.extend(replica.index for replica in self.replicas)
        self._rolling_started = time.monotonic()
        logger.info("rolling restart of %d replicas", len(self.replicas))

    def _advance_rolling_restart(self) -> None:
        if self._rolling_current is not None:
            current = self.replicas[self._rolling_current]
            if current.state is not State.READY:
                return  # draining, or starting again
            self._reconcile()  # back in rotation before the next one goes out
            self._rolling_current = None
        if self._rolling:
            if not all(replica.state is State.READY for replica in self.replicas):
                return  # only ever one replica short
            replica = self.replicas[self._rolling.popleft()]
            replica.state = State.DRAINING
            self._reconcile()  # out of nginx's rotation (the reload is confirmed) ...
            time.sleep(RELOAD_SETTLE_S)  # ... and nginx's old workers stopped accepting
            if replica.process is not None:
                replica.process.send_signal(signal.SIGTERM)
            replica.kill_at = time.monotonic() + self.plan.stop_timeout_s
            self._rolling_current = replica.index
            logger.info("rolling restart: replica %d out of rotation, draining", replica.index)
            return
        if self._rolling_started is not None:
            self.last_rolling_restart_s = time.monotonic() - self._rolling_started
            self._rolling_started = None
            self.rolling_restarts += 1
            logger.info("rolling restart done in %.1f s", self.last_rolling_restart_s)

    # --- nginx -------------------------------------------------------------------------------

    def _backends(self) -> tuple[Backend, ...]:
        return tuple(
            Backend(r.index, r.port, in_rotation=r.state is State.READY, note=r.state.value)
            for r in self.replicas
        )

    def _reconcile(self) -> None:
        """Rewrite the upstream list and reload nginx when the rotation changed."""
        if self.nginx is None:
            return
        backends = self._backends()
        rotation = [b.in_rotation for b in backends]
        if self._applied is not None and rotation == [b.in_rotation for b in self._applied]:
            return
        self.generation += 1
        self._write_conf(backends)
        self.nginx.send_signal(signal.SIGHUP)
        if not self._wait_generation(self.generation):
            logger.error("nginx did not load generation %d of %s", self.generation, self.conf)
        self._applied = backends
        logger.info(
            "nginx reloaded (generation %d): in rotation %s",
            self.generation, [b.index for b in backends if b.in_rotation],
        )  # fmt: skip

    def _write_conf(self, backends: tuple[Backend, ...]) -> None:
        self.balancer = self.balancer.with_backends(backends, self.generation)
        partial = self.conf.with_suffix(".partial")
        partial.write_text(render(self.balancer), encoding="utf-8")
        partial.replace(self.conf)

    def _start_nginx(self) -> None:
        backends = self._backends()
        self._write_conf(backends)
        check_config(self.plan.nginx, self.plan.run_dir, self.conf)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # left by an nginx that was killed
        with (self.plan.run_dir / "logs" / "nginx.out").open("ab") as out:
            self.nginx = _spawn(
                [self.plan.nginx, *_nginx_paths(self.plan.run_dir, self.conf), "-g", "daemon off;"],
                out,
                dict(os.environ),
            )
        self._applied = backends
        if not self._wait_generation(self.generation):
            code = self.nginx.poll()
            raise DeployError(
                f"nginx did not start (exit code {code}):\n"
                + _tail(self.plan.run_dir / "logs" / "error.log"),
                field="nginx",
            )

    def _watch_nginx(self) -> None:
        if self.nginx is None or self.nginx.poll() is None:
            return
        logger.error("nginx exited with code %d; starting it again", self.nginx.returncode)
        self.nginx_restarts += 1
        self._start_nginx()

    def _wait_generation(self, generation: int) -> bool:
        """Until nginx's workers answer with ``generation`` (False after NGINX_TIMEOUT_S)."""
        deadline = time.monotonic() + NGINX_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.nginx is not None and self.nginx.poll() is not None:
                return False
            if _ask_generation(self.socket) == generation:
                return True
            time.sleep(0.02)
        return False

    # --- processes ---------------------------------------------------------------------------

    def _start_replica(self, replica: Replica) -> None:
        with self._replica_log(replica).open("ab") as log:
            replica.process = _spawn(
                self.plan.replica_command(replica.port), log, self.plan.replica_environment()
            )
        replica.started_at = time.monotonic()
        replica.state = State.STARTING
        replica.failed_polls = 0

    def _replica_log(self, replica: Replica) -> Path:
        return self.plan.run_dir / "logs" / f"replica-{replica.index}.log"

    @staticmethod
    def _alive(replica: Replica) -> bool:
        return replica.process is not None and replica.process.poll() is None

    @staticmethod
    def _ready(replica: Replica) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=2.0)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _shutdown(self) -> None:
        """nginx first (it finishes its requests, which needs the replicas), then the replicas."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            _wait_or_kill(self.nginx, self.plan.stop_timeout_s)
        live = [r for r in self.replicas if r.process is not None and r.process.poll() is None]
        for replica in live:
            replica.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.plan.stop_timeout_s
        for replica in live:
            _wait_or_kill(replica.process, max(0.0, deadline - time.monotonic()))  # type: ignore[arg-type]
        for replica in self.replicas:
            replica.state = State.STOPPED
        logger.info("stopped nginx and %d replicas", len(self.replicas))

    # --- signals and state -------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def roll(signum: int, frame: FrameType | None) -> None:
            self.request_rolling_restart()

        handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: roll}
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by a stop or rolling-restart signal."""
        deadline = time.monotonic() + seconds
        while not (self._stop or self._roll_requested) and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def state(self) -> dict[str, Any]:
        """What runs where, as ``state.json`` holds it."""
        return {
            "supervisor_pid": os.getpid(),
            "url": f"http://{self.balancer.host}:{self.balancer.port}",
            "nginx_pid": self.nginx.pid if self.nginx is not None else None,
            "nginx_restarts": self.nginx_restarts,
            "generation": self.generation,
            "rolling_restarts": self.rolling_restarts,
            "rolling_restart_under_way": self._rolling_started is not None,
            "last_rolling_restart_s": self.last_rolling_restart_s,
            "replicas": [
                {
                    "index": r.index,
                    "port": r.port,
                    "pid": r.process.pid if r.process is not None else None,
                    "state": r.state.value,
                    "restarts": r.restarts,
                }
                for r in self.replicas
            ],
        }

    def _write_state(self) -> None:
        text = json.dumps(self.state(), indent=1)
        if text == self._state_text:
            return
        partial = self.plan.run_dir / "state.json.partial"
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.plan.run_dir / "state.json")
        self._state_text = text


def free_ports(count: int, host: str = "127.0.0.1") -> tuple[int, ...]:
    """``count`` distinct TCP ports nobody listens on right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return tuple(sock.getsockname()[1] for sock in sockets)


def require_free(host: str, ports: Sequence[int], option: str) -> None:
    """Refuse ports another process listens on, before anything starts."""
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise DeployError(
                    f"{option}: cannot listen on {host}:{port} ({exc.strerror}); stop that "
                    "process or choose another port",
                    field=option,
                ) from exc


def _spawn(command: list[str], output: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own process group (a terminal's Ctrl-C reaches the supervisor only) that
    gets SIGTERM if the supervisor dies."""
    return subprocess.Popen(  # noqa: S603 - our own command lines, no shell
        command,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        process_group=0,
        preexec_fn=_terminate_with_parent(),  # noqa: PLW1509 - the supervisor forks from one thread
    )


def _terminate_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec: ask Linux for SIGTERM when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); looked up here, in the parent, so the child only calls it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the children outlive a killed supervisor
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ask_generation(path: Path) -> int | None:
    """nginx's answer to ``GET /generation`` on its admin socket; None when it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"GET /generation HTTP/1.0\r\nHost: rtserve\r\n\r\n")
            answer = b"".join(iter(lambda: sock.recv(4096), b""))
    except OSError:
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    with contextlib.suppress(ValueError):
        return int(body.strip())
    return None


def _errors(path: Path, count: int = 3) -> str:
    """The last ``count`` error lines of a replica's log (its JSON lines), else its tail."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    errors = [line for line in lines if '"level":"error"' in line]
    return "\n".join(errors[-count:]) if errors else _tail(path)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return f"(no {path})"
