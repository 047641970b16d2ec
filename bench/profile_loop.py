"""Where rtserve's event loop spends its CPU per request, step by step, under load over HTTP.

Starts ``rtserve serve`` on one benchmark model (in this file's ``--serve`` mode: the real CLI,
with two signal handlers added), drives it with rtserve's load generator and:

1. measures CPU per request per thread group unprofiled (``cpu.py``: /proc per-thread times);
2. profiles the event-loop thread with ``cProfile`` for the same load (SIGUSR1 enables the
   profiler in the server's main thread, which is the event loop; SIGUSR2 writes the stats);
3. groups the profile into the request path's steps (HTTP protocol, request front, guards, JSON
   decode, validation, batcher, inline prediction, encoding, access log, metrics, observers'
   hand-off, event loop machinery), a built-in or standard-library call counted in the step of
   whoever called it, and scales each step's share to the *unprofiled* event-loop CPU per
   request (cProfile slows small Python calls more than C calls, so the shares lean towards the
   Python-heavy steps; the split is a guide, the total is measured);
4. with ``--perf``, samples the event-loop thread with ``perf`` during a third load and prints its
   CPU by shared object (libpython, uvloop, httptools, numpy, msgspec, the kernel, ...).

Run: ``uv run --with psutil python bench/profile_loop.py --model dense_lr --concurrency 64``
(it trains the benchmark's models first if bench/.work/ has none).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"

#: (pattern on "file:function", step), first match wins; a call matching none is its caller's.
STEPS: list[tuple[str, str]] = [
    (
        r"uvicorn/protocols/http/|httptools|rtserve/server/http_protocol\.py",
        "HTTP protocol (uvicorn + httptools: parse, ASGI scope and messages, write)",
    ),
    (r"rtserve/observability/access\.py|rtserve/observability/logging", "access log"),
    (r"rtserve/observability/metrics\.py|prometheus_client", "request metrics"),
    (r"rtserve/observability/", "observers' hand-off (queues)"),
    (
        r"rtserve/server/request_guards\.py|rtserve/guard/",
        "guards (admission, deadline, limits, body)",
    ),
    (
        r"rtserve/protocol/records\.py:(decode|_decode)|msgspec\.json\.Decoder|check_json_depth",
        "JSON decode",
    ),
    (
        r"rtserve/protocol/records\.py|rtserve/engine/predictions\.py|msgspec\.json\.Encoder|msgspec\.json\.encode",
        "answer encoding",
    ),
    (r"rtserve/bundle/validat|rtserve/bundle/schema", "validation (records -> columns)"),
    (
        r"rtserve/engine/batcher\.py|rtserve/engine/batch_cost\.py|rtserve/engine/long_wait\.py",
        "batcher",
    ),
    (r"rtserve/runtimes/|onnxruntime", "prediction on the loop (inline batches)"),
    (r"rtserve/engine/rollout|rtserve/rollout/", "rollout routing"),
    (
        r"rtserve/engine/dataplane\.py|rtserve/engine/manager\.py|rtserve/engine/cache",
        "data plane (route, answer, report)",
    ),
    (r"rtserve/server/lane\.py", "records lane (take, admit, group, reply, write)"),
    (
        r"rtserve/server/|rtserve/events\.py|starlette",
        "request front (match, headers, trace, reply)",
    ),
    (r"uvloop|asyncio/", "event loop machinery (uvloop, tasks, futures, callbacks)"),
]
_COMPILED = [(re.compile(p), step) for p, step in STEPS]
OTHER = "other"


# --- the server side --------------------------------------------------------------------------


def serve(argv: list[str]) -> None:
    """``rtserve serve ARGV`` with SIGUSR1 (profile the event loop) and SIGUSR2 (write it)."""
    out = Path(os.environ["RTSERVE_PROFILE_OUT"])
    # the thread's CPU clock: a C call that releases the GIL (a write, ONNX Runtime) is charged
    # its own CPU, not the time other threads held the GIL meanwhile
    profiler = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: Any) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: Any) -> None:
        profiler.disable()
        profiler.dump_stats(str(out) + ".tmp")
        os.replace(str(out) + ".tmp", out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from rtserve.cli.main import main

    sys.argv = ["rtserve", "serve", *argv]
    main()


# --- the driver -------------------------------------------------------------------------------


def _label(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    return f"{filename}:{name}"


def steps_of(stats: pstats.Stats) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """Seconds of own time per step, and each step's largest functions."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}

    def share(func: Any, depth: int = 0) -> dict[str, float]:
        """The steps ``func``'s own time belongs to, as fractions."""
        if func in memo:
            return memo[func]
        label = _label(func)
        for pattern, step in _COMPILED:
            if pattern.search(label):
                memo[func] = {step: 1.0}
                return memo[func]
        callers = table[func][4]
        weights = {c: v[3] for c, v in callers.items() if c in table}  # cumulative time via c
        total = sum(weights.values())
        if depth > 20 or not total:
            memo[func] = {OTHER: 1.0}
            return memo[func]
        memo[func] = {OTHER: 1.0}  # a cycle resolves to "other"
        out: dict[str, float] = defaultdict(float)
        for caller, weight in weights.items():
            for step, fraction in share(caller, depth + 1).items():
                out[step] += fraction * weight / total
        memo[func] = dict(out)
        return memo[func]

    seconds: dict[str, float] = defaultdict(float)
    tops: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for func, (_cc, _nc, tottime, _ct, _callers) in table.items():
        for step, fraction in share(func).items():
            seconds[step] += tottime * fraction
            tops[step].append((_label(func), tottime * fraction))
    for step in tops:
        tops[step].sort(key=lambda item: -item[1])
    return dict(seconds), dict(tops)


def _short(label: str) -> str:
    label = re.sub(r"^.*/site-packages/", "", label)
    label = re.sub(r"^.*/src/rtserve/", "rtserve/", label)
    return re.sub(r"^.*/lib/python3\.\d+/", "", label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dense_lr")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--perf", action="store_true", help="also sample the loop with perf")
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    sys.path.insert(0, str(HERE))
    import models as bench_models
    from cpu import CpuProbe
    from targets import _rtserve_encode

    from rtserve.loadgen import Endpoint, LoadSpec, Workload, encode_request, run_load
    from rtserve.loadgen.launch import free_port, launch

    model = bench_models.prepare(WORK, (args.model,))[args.model]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    endpoint = Endpoint.from_url(url)
    workload = Workload(
        endpoint,
        tuple(encode_request(endpoint, *_rtserve_encode(model.name, row)) for row in model.rows),
    )
    profile_out = Path(tempfile.mkdtemp(prefix="rtserve-profile-")) / "loop.prof"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--serve", str(model.bundle_path),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    spec = LoadSpec(concurrency=args.concurrency, duration_s=args.seconds, warmup_s=1.0)
    report: dict[str, Any] = {"model": args.model, "concurrency": args.concurrency}
    with launch(
        command,
        url,
        "/v2/health/ready",
        timeout_s=120,
        env={"RTSERVE_PROFILE_OUT": str(profile_out)},
    ) as server:
        pid = server.process.pid
        probe = CpuProbe(pid, "rtserve")
        plain = run_load(workload, spec, probe.progress)
        cpu = probe.finish(plain.ok + plain.error_count)
        assert cpu is not None
        report["unprofiled"] = {"throughput": round(plain.throughput, 1), "cpu": cpu}
        loop_us = cpu["us_per_request"].get("event loop") or 0.0
        print(
            f"unprofiled: {plain.throughput:,.0f} req/s, p99 {plain.latency_ms.p99:.2f} ms; CPU "
            f"per request {cpu['total_us']:.0f} µs: "
            + ", ".join(f"{g} {v:.0f}" for g, v in cpu["us_per_request"].items())
            + "; cores busy: "
            + ", ".join(f"{g} {v:.2f}" for g, v in cpu["cores"].items())
        )
        os.kill(pid, signal.SIGUSR1)
        profiled = run_load(
            workload, LoadSpec(concurrency=args.concurrency, duration_s=args.seconds, warmup_s=0.0)
        )
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not profile_out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        requests = profiled.ok + profiled.error_count
        if args.perf and shutil.which("perf"):
            report["perf"] = _perf(pid, workload, args, run_load, LoadSpec)
    stats = pstats.Stats(str(profile_out))
    seconds, tops = steps_of(stats)
    total = sum(seconds.values())
    print(
        f"profiled: {profiled.throughput:,.0f} req/s, event loop {total / requests * 1e6:.0f} µs "
        f"per request under cProfile; shares scaled to the unprofiled {loop_us:.0f} µs:"
    )
    rows = []
    for step, secs in sorted(seconds.items(), key=lambda item: -item[1]):
        fraction = secs / total
        top = ", ".join(f"{_short(name)} {s / requests * 1e6:.1f}" for name, s in tops[step][:3])
        rows.append(
            {
                "step": step,
                "share": round(fraction, 4),
                "us": round(fraction * loop_us, 1),
                "top": top,
            }
        )
        print(f"  {fraction * loop_us:6.1f} µs {fraction:6.1%}  {step}   [{top}]")
    report["steps"] = rows
    if "perf" in report:
        print("perf, the event-loop thread's samples by shared object:")
        for dso, percent in report["perf"]:
            print(f"  {percent:5.1f}%  {dso}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _perf(
    pid: int, workload: Any, args: argparse.Namespace, run_load: Any, spec_type: Any
) -> list[tuple[str, float]]:
    """``perf record`` of the event-loop thread during one more load; samples by shared object."""
    data = Path(tempfile.mkdtemp(prefix="rtserve-perf-")) / "perf.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-q", "-F", "1999", "-t", str(pid), "-o", str(data), "--", "sleep", str(args.seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run_load(
        workload, spec_type(concurrency=args.concurrency, duration_s=args.seconds, warmup_s=0.0)
    )
    recorder.wait(timeout=60)
    answer = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    out = []
    for line in answer.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            out.append((" ".join(parts[1:]), float(parts[0].rstrip("%"))))
    return out


if __name__ == "__main__":
    main()
