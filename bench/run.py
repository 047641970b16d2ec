"""rtserve against mosec, MLServer, BentoML, LitServe and a plain FastAPI service, side by side.

Run it with ``bench/run.sh`` (sets up the peers' environments first); ``--help`` lists the
options. What it does, in order:

1. trains the models once (bench/models.py) and saves them with joblib (peers) and as rtserve
   bundles (rtserve) under bench/.work/;
2. measures the in-process floor: the fitted pipeline's own ``predict_proba`` on one row;
3. starts every target one at a time on a free loopback port, on the server CPUs (all of them
   unless ``--pinned`` or ``--server-cpus``), timing process start to ready, reading the RSS of its process tree and its idle CPU use; then
   suspends it (SIGSTOP on the whole tree): the targets stay up but only the one being measured
   runs, so an idle server that polls (LitServe's fast_queue does) cannot slow the others;
4. checks every target's answers on the validation rows against in-process predictions;
5. measures each (concurrency, model) point for every target in turn, rotating the order from
   point to point (interleaved, so drift on a shared machine hits every target alike), resuming
   only the measured target, with rtserve's load generator on the client CPUs; the CPU time of
   every thread of the server's process tree is read before and after (bench/cpu.py), giving
   µs of CPU per request per thread group;
6. writes bench/results/<time>-<mode>.json and .md (plus latest.md) and prints the goal checks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import models as bench_models  # noqa: E402
import report  # noqa: E402
from cpu import CpuProbe  # noqa: E402
from targets import OPT_IN, VENVS, Target, all_targets  # noqa: E402

from rtserve.loadgen import Endpoint, LoadSpec, Workload, encode_request, run_load  # noqa: E402
from rtserve.loadgen.launch import free_port, launch  # noqa: E402

WORK = HERE / ".work"
RESULTS = HERE / "results"
PEER_PACKAGES = {
    "fastapi": ["fastapi", "uvicorn", "pydantic"],
    "mlserver": ["mlserver", "mlserver-sklearn", "uvloop"],
    "bentoml": ["bentoml"],
    "litserve": ["litserve", "pyzmq"],
    "mosec": ["mosec"],
}
SHARED_PACKAGES = ["scikit-learn", "numpy", "pandas", "joblib"]
#: Seconds a resumed server gets before its warm-up starts.
SETTLE_S = 0.2


def main() -> None:
    args = _arguments()
    started = time.time()
    machine = describe_machine(args)
    print(
        f"bench: {machine['cpu_model']}, {machine['nproc']} CPUs, load average {machine['loadavg_start']}"
    )
    print(f"bench: server CPUs {args.server_cpus}, load generator CPUs {args.client_cpus}")
    names = [n for n in (*bench_models.NAMES, *bench_models.EXTRA_NAMES) if n in args.models]
    fitted = bench_models.prepare(WORK, tuple(names), retrain=args.retrain)
    targets = chosen_targets(
        args.targets, fitted, names, workers=len(args.server_cpus), rtserve_args=args.rtserve_arg
    )
    floors = {name: inprocess_floor(name, args.server_cpus) for name in names}
    for name, floor in floors.items():
        print(
            f"bench: in-process floor {name}: predict_proba on one row p50 {floor['p50_ms']:.3f} ms "
            f"(rtserve Predictor.predict p50 {floor['rtserve_predict']['p50_ms']:.3f} ms)"
        )
    runs: dict[str, TargetRun] = {}
    with contextlib.ExitStack() as stack:
        for target in targets:
            runs[target.name] = start_target(stack, target, args)
        # Runs first when the stack closes, even after an error: a stopped process ignores SIGTERM.
        stack.callback(lambda: [run.resume() for run in runs.values()])
        os.sched_setaffinity(0, set(args.client_cpus))
        for run in runs.values():
            if run.url is not None:
                with run.running():
                    run.checks = {name: check_answers(run, fitted[name], args) for name in names}
        points = measure(runs, fitted, names, args)
    document = {
        "mode": "quick" if args.quick else "full",
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
        "machine": {**machine, "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "server_cpus": args.server_cpus,
            "client_cpus": args.client_cpus,
            "shared_cpus": args.shared_cpus,
            "check_rows": args.check_rows,
            "atol": args.atol,
        },
        "floors": {"inprocess": floors},
        "targets": [run.summary() for run in runs.values()],
        "points": points,
    }
    document["ratios"] = report.ratios(document)
    document["goals"] = report.goals(document)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = RESULTS / f"{stamp}-{document['mode']}"
    base.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = report.markdown(document)
    base.with_suffix(".md").write_text(markdown)
    (RESULTS / "latest.md").write_text(markdown)
    print()
    print(report.goals_text(document))
    print(
        f"\nbench: wrote {base.with_suffix('.json').relative_to(HERE.parent)} and .md ({document['wall_s']:.0f} s)"
    )


def chosen_targets(
    wanted: list[str],
    fitted: dict[str, bench_models.BenchModel],
    names: list[str],
    *,
    workers: int,
    rtserve_args: list[str],
) -> list[Target]:
    """The targets named in ``wanted`` (in the benchmark's order), set up for the models."""
    return [
        target
        for target in all_targets(
            bundles=[fitted[n].bundle_path for n in names],
            models_dir=WORK / "models",
            names=names,
            fields=json.loads((WORK / "models" / "fields.json").read_text()),
            workers=workers,
            rtserve_args=rtserve_args,
        )
        if target.name in wanted
    ]


# --- arguments --------------------------------------------------------------------------------


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 s points after 0.5 s warm-up (default 5 s after 1 s)",
    )
    parser.add_argument("--duration", type=float, help="seconds measured per point")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each point this many times per target, interleaved, and keep the round "
        "with the median throughput (3 steadies the ratios on a noisy machine)",
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per point")
    parser.add_argument(
        "--concurrency", default="1,16,64", help="closed-loop concurrencies (default 1,16,64)"
    )
    parser.add_argument("--targets", help="comma-separated target names (default: all); see --list")
    parser.add_argument(
        "--models",
        default=",".join(bench_models.NAMES),
        help="card,dense_lr,dense_gb (default); dense_mlp (a large model) on request",
    )
    parser.add_argument(
        "--pinned",
        action="store_true",
        help="pin every server to the last CPU and the load generator to the others (default: "
        "unpinned, servers and load generator share every CPU, as deployed)",
    )
    parser.add_argument(
        "--server-cpus", help="CPUs every server may use, e.g. 1 or 0,1 (default: all)"
    )
    parser.add_argument("--client-cpus", help="CPUs the load generator may use (default: all)")
    parser.add_argument(
        "--rtserve-arg",
        action="append",
        default=[],
        help="extra `rtserve serve` argument (repeatable), e.g. --rtserve-arg=--workers=2",
    )
    parser.add_argument(
        "--check-rows",
        type=int,
        default=50,
        help="validation rows whose answers are checked per target and model",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest allowed |probability - in-process probability|",
    )
    parser.add_argument("--retrain", action="store_true", help="train the models again")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    if args.pinned and len(cpus) < 2:
        parser.error(f"--pinned needs two CPUs or more; this process may use {cpus}")
    default_server = cpus[-1:] if args.pinned else cpus
    default_client = cpus[:-1] if args.pinned else cpus
    args.server_cpus = (
        [int(c) for c in args.server_cpus.split(",")] if args.server_cpus else default_server
    )
    args.client_cpus = (
        [int(c) for c in args.client_cpus.split(",")] if args.client_cpus else default_client
    )
    args.shared_cpus = bool(set(args.server_cpus) & set(args.client_cpus))
    args.models = args.models.split(",")
    known = {*bench_models.NAMES, *bench_models.EXTRA_NAMES}
    if set(args.models) - known:
        parser.error(
            f"unknown models {sorted(set(args.models) - known)}; choose from {sorted(known)}"
        )
    everything = [
        t.name
        for t in all_targets(
            bundles=[], models_dir=WORK, names=[], fields={}, workers=1, rtserve_args=[]
        )
    ]
    if args.list:
        for target in all_targets(
            bundles=[],
            models_dir=WORK / "models",
            names=[],
            fields={},
            workers=len(args.server_cpus),
            rtserve_args=args.rtserve_arg,
        ):
            print(f"{target.name:16} {target.description}")
        sys.exit(0)
    args.targets = (
        args.targets.split(",") if args.targets else [t for t in everything if t not in OPT_IN]
    )
    unknown = sorted(set(args.targets) - set(everything))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {everything}")
    return args


# --- the machine ------------------------------------------------------------------------------


def describe_machine(args: argparse.Namespace) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    packages: dict[str, dict[str, str | None]] = {
        "rtserve": {
            d: version(d)
            for d in ["rtserve", "onnxruntime", "uvicorn", "starlette", "msgspec", *SHARED_PACKAGES]
        }
    }
    for venv, dists in PEER_PACKAGES.items():
        packages[venv] = _venv_versions(venv, [*dists, *SHARED_PACKAGES])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "packages": packages,
    }


def _venv_versions(venv: str, dists: list[str]) -> dict[str, str | None]:
    python = VENVS / venv / "bin" / "python"
    if not python.exists():
        return dict.fromkeys(dists)
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for d in sys.argv[1:]:\n    try: out[d] = metadata.version(d)\n    except metadata.PackageNotFoundError: out[d] = None\n"
        "print(json.dumps(out))"
    )
    answer = subprocess.run(
        [str(python), "-c", code, *dists], capture_output=True, text=True, check=True
    )
    return json.loads(answer.stdout)


# --- floors -----------------------------------------------------------------------------------


def inprocess_floor(name: str, cpus: list[int], seconds: float = 1.0) -> dict[str, Any]:
    """The pipeline's own predict_proba on one row, in a fresh process pinned to the server CPUs."""
    cpu_list = ",".join(map(str, cpus))
    command = [sys.executable, str(HERE / "floor.py"), cpu_list, str(WORK), name, str(seconds)]
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        raise SystemExit(f"bench: the in-process floor of {name} failed:\n{answer.stderr[-3000:]}")
    floor: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return floor


# --- targets ----------------------------------------------------------------------------------


@dataclass
class TargetRun:
    """A started (or failed) target and what was learnt about it."""

    target: Target
    url: str | None = None
    pid: int | None = None
    startup_s: float | None = None
    rss_ready_mb: float | None = None
    rss_peak_mb: float = 0.0
    idle_cpu_percent: float | None = None
    error: str | None = None
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.target.name,
            "kind": self.target.kind,
            "description": self.target.description,
            "startup_s": None if self.startup_s is None else round(self.startup_s, 3),
            "rss_ready_mb": self.rss_ready_mb,
            "rss_peak_mb": round(self.rss_peak_mb, 1) if self.rss_peak_mb else None,
            "idle_cpu_percent": self.idle_cpu_percent,
            "error": self.error,
            "checks": self.checks,
        }

    def _tree(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def suspend(self) -> None:
        """SIGSTOP the server's processes, parent first (it never sees a stopped child run)."""
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                process.suspend()

    def resume(self) -> None:
        """SIGCONT the server's processes, children first."""
        for process in reversed(self._tree()):
            with contextlib.suppress(psutil.Error):
                process.resume()

    @contextlib.contextmanager
    def running(self) -> Any:
        """Resume the server for the block, then suspend it again."""
        self.resume()
        time.sleep(SETTLE_S)
        try:
            yield
        finally:
            self.suspend()

    def idle_cpu(self, seconds: float = 1.0) -> float:
        """CPU use of the idle server tree, in percent of one CPU."""

        def used() -> float:
            total = 0.0
            for process in self._tree():
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            return total

        before = used()
        time.sleep(seconds)
        return round((used() - before) / seconds * 100, 1)


def start_target(
    stack: contextlib.ExitStack, target: Target, args: argparse.Namespace
) -> TargetRun:
    """Start one target and keep it running until the stack closes; failures are recorded."""
    run = TargetRun(target)
    if target.venv and not (VENVS / target.venv / "bin" / "python").exists():
        run.error = f"bench/.venvs/{target.venv} is missing: run bench/setup_peers.sh"
        print(f"bench: {target.name}: {run.error}")
        return run
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = target.command(port, WORK)
    try:
        launched = stack.enter_context(
            _tree_stopped(
                launch(
                    command,
                    url,
                    target.ready_path,
                    timeout_s=240,
                    env=target.env,
                    cpus=tuple(args.server_cpus),
                    cwd=target.cwd,
                )
            )
        )
    except Exception as exc:  # noqa: BLE001 (any failure to start is reported, the run goes on)
        run.error = f"did not start: {exc}"[:2000]
        print(f"bench: {target.name}: {run.error[:400]}")
        return run
    run.url, run.pid, run.startup_s = url, launched.process.pid, launched.startup_s
    time.sleep(0.5)  # let the ready process settle before reading its memory
    run.rss_ready_mb = _rss_mb(run.pid)
    run.idle_cpu_percent = run.idle_cpu()
    run.suspend()
    print(
        f"bench: {target.name:16} ready in {run.startup_s:6.2f} s, RSS {run.rss_ready_mb:7.1f} MB, "
        f"idle CPU {run.idle_cpu_percent:5.1f} %"
    )
    return run


@contextlib.contextmanager
def _tree_stopped(context: Any) -> Any:
    """Enter a ``launch`` context; on exit also end any process the server left behind."""
    with context as launched:
        try:
            descendants = psutil.Process(launched.process.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        try:
            yield launched
        finally:
            with contextlib.suppress(psutil.Error):
                descendants += psutil.Process(launched.process.pid).children(recursive=True)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _rss_mb(pid: int) -> float | None:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return round(total / 2**20, 1)
    except psutil.Error:
        return None


def check_answers(
    run: TargetRun, model: bench_models.BenchModel, args: argparse.Namespace
) -> dict[str, Any]:
    """Send the first ``check_rows`` validation rows one per request; compare with in-process."""
    target = run.target
    if target.decode is None:
        return {"checked": False, "passed": True, "note": "not a model server"}
    rows = model.rows[: args.check_rows]
    expected = model.reference(rows)
    got: list[float] = []
    try:
        for row in rows:
            path, body = target.encode(model.name, row)
            assert run.url is not None
            request = urllib.request.Request(  # noqa: S310 (http to a loopback server we started)
                run.url + path, data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
                got.append(target.decode(answer.read()))
    except Exception as exc:  # noqa: BLE001 (a failed check is reported, the run goes on)
        detail = exc.read().decode(errors="replace")[:300] if hasattr(exc, "read") else ""
        result = {
            "checked": True,
            "passed": False,
            "rows": len(got),
            "error": f"{exc} {detail}".strip(),
        }
        print(f"bench: {target.name}: answers for {model.name} FAILED: {result['error']}")
        return result
    diff = np.abs(np.asarray(got) - expected)
    passed = bool(np.all(diff <= args.atol))
    result = {
        "checked": True,
        "passed": passed,
        "rows": len(rows),
        "max_abs_diff": float(diff.max()),
        "rows_over_atol": int(np.sum(diff > args.atol)),
    }
    if not passed:
        print(
            f"bench: {target.name}: answers for {model.name} differ: max |diff| {result['max_abs_diff']:.3g} on {result['rows_over_atol']} row(s)"
        )
    return result


# --- measuring --------------------------------------------------------------------------------


def measure(
    runs: dict[str, TargetRun],
    fitted: dict[str, bench_models.BenchModel],
    names: list[str],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Every (concurrency, model, target) point, the targets rotated from point to point.

    With ``--rounds N`` each point measures every target N times in turn (a target's rounds are
    minutes apart at most) and keeps the round with the median throughput, so that one slow
    moment of a shared machine does not decide a ratio; every round's figures are kept too.
    """
    ready = [run for run in runs.values() if run.url is not None]
    plan = [(c, name) for c in args.concurrency for name in names]
    total = len(plan) * len(ready) * args.rounds
    points: list[dict[str, Any]] = []
    done = 0
    for k, (concurrency, name) in enumerate(plan):
        order = ready[k % len(ready) :] + ready[: k % len(ready)] if ready else []
        rounds: dict[str, list[dict[str, Any]]] = {run.target.name: [] for run in order}
        for round_ in range(args.rounds):
            shift = round_ % len(order) if order else 0
            for run in order[shift:] + order[:shift]:
                done += 1
                if run.checks.get(name, {}).get("error"):
                    continue
                result = _measure_one(run, fitted[name], concurrency, args)
                rounds[run.target.name].append(result)
                latency = result["latency_ms"]
                print(
                    f"[{done:3}/{total}] {name:8} c={concurrency:<3} {run.target.name:16} "
                    f"{result['throughput']:9.1f} req/s  p50 {latency['p50']:8.3f} ms  p99 {latency['p99']:8.3f} ms"
                    + _cpu_text(result.get("cpu"))
                    + (f"  errors {result['errors']}" if result["error_count"] else "")
                )
        for run in order:
            point: dict[str, Any] = {
                "target": run.target.name,
                "model": name,
                "concurrency": concurrency,
            }
            results = rounds[run.target.name]
            if not results:
                point["skipped"] = "it did not answer the check requests"
            else:
                ranked = sorted(results, key=lambda r: r["throughput"])
                point["result"] = ranked[(len(ranked) - 1) // 2]  # the median (lower middle)
                if len(results) > 1:
                    point["rounds"] = results
            points.append(point)
    return points


def _cpu_text(cpu: dict[str, Any] | None) -> str:
    if not cpu or cpu["total_us"] is None:
        return ""
    top = list(cpu["us_per_request"].items())[:3]
    return (
        f"  CPU {cpu['total_us']:6.0f} us/req (" + ", ".join(f"{g} {v:.0f}" for g, v in top) + ")"
    )


def _measure_one(
    run: TargetRun, model: bench_models.BenchModel, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One closed-loop measurement of ``run`` (resumed for it, suspended again after)."""
    spec = LoadSpec(
        concurrency=concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        timeout_s=30.0,
    )
    probe = CpuProbe(run.pid, run.target.kind) if run.pid else None
    with run.running():
        result: dict[str, Any] = run_load(
            _workload(run, model), spec, probe.progress if probe else None
        ).to_dict()
        if probe is not None:
            result["cpu"] = probe.finish(result["ok"] + result["error_count"])
        rss = _rss_mb(run.pid) if run.pid else None
    del result["histogram"]
    run.rss_peak_mb = max(run.rss_peak_mb, rss or 0.0)
    return result


def _workload(run: TargetRun, model: bench_models.BenchModel) -> Workload:
    assert run.url is not None
    endpoint = Endpoint.from_url(run.url)
    requests = []
    for row in model.rows:
        path, body = run.target.encode(model.name, row)
        requests.append(encode_request(endpoint, path, body))
    return Workload(endpoint, tuple(requests))


if __name__ == "__main__":
    main()
