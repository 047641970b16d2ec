"""rtserve against mosec and the bare floor under two load generators: rtserve's own and wrk.

``bench/run.py`` drives every target with rtserve's load generator (``rtserve.loadgen``: Python
on uvloop). On a two-CPU machine that generator takes CPU from the server it measures, and
more of it from a faster server (its cost is per request). wrk (C, one thread) takes less. The
issue's goals are ratios between targets; this script checks that they do not depend on which
generator drives the load: each target is measured under both, one right after the other, the
targets interleaved round by round, and the ratios are printed for each generator.

    bash bench/setup_peers.sh && uv run python bench/wrk_check.py --models card,dense_lr --rounds 3

wrk comes from Debian's packages (``apt-get install wrk``). Both generators run a closed loop at
the same concurrency over the same request bodies (the model's validation rows, in each
target's own API). Results: ``bench/results/<time>-wrk.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import models as bench_models  # noqa: E402
from run import RESULTS, WORK, TargetRun, chosen_targets, start_target  # noqa: E402

from rtserve.loadgen import Endpoint, LoadSpec, Workload, encode_request, run_load  # noqa: E402

#: wrk's latency units, in milliseconds.
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
#: Distinct request bodies each generator cycles through.
BODIES = 64


def main() -> None:
    args = _arguments()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (Debian: apt-get install wrk)")
    started = time.time()
    names = args.models.split(",")
    fitted = bench_models.prepare(WORK, tuple(names))
    cpus = sorted(os.sched_getaffinity(0))
    targets = chosen_targets(
        args.targets.split(","), fitted, names, workers=len(cpus), rtserve_args=[]
    )
    settings = argparse.Namespace(server_cpus=cpus)
    rounds: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        runs = [start_target(stack, target, settings) for target in targets]
        stack.callback(lambda: [run.resume() for run in runs])
        ready = [run for run in runs if run.url is not None]
        if not ready:
            sys.exit("bench: no target started (see above)")
        for name in names:
            for round_ in range(args.rounds):
                shift = round_ % len(ready)
                for run in ready[shift:] + ready[:shift]:
                    result = measure(run, fitted[name], args)
                    rounds.append({"model": name, "round": round_, **result})
                    print(_line(rounds[-1]), flush=True)
    document = {
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "settings": {"concurrency": args.concurrency, "duration_s": args.duration},
        "rounds": rounds,
        "medians": medians(rounds),
    }
    text = markdown(document)
    print("\n" + text)
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stamp}-wrk.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / f"{stamp}-wrk.md").write_text(text)
    print(f"bench: wrote bench/results/{stamp}-wrk.md and .json")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="card,dense_lr", help="models (default card,dense_lr)")
    parser.add_argument(
        "--targets", default="bare,rtserve,mosec", help="default bare,rtserve,mosec"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per model (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up (default 1)")
    return parser.parse_args()


def measure(
    run: TargetRun, model: bench_models.BenchModel, args: argparse.Namespace
) -> dict[str, Any]:
    """One target under both generators, back to back (each after its own warm-up)."""
    assert run.url is not None
    endpoint = Endpoint.from_url(run.url)
    requests = [run.target.encode(model.name, row) for row in model.rows[:BODIES]]
    workload = Workload(
        endpoint, tuple(encode_request(endpoint, path, body) for path, body in requests)
    )
    spec = LoadSpec(
        concurrency=args.concurrency, duration_s=args.duration, warmup_s=args.warmup, timeout_s=30.0
    )
    with tempfile.TemporaryDirectory() as scratch, run.running():
        own = run_load(workload, spec).to_dict()
        script = Path(scratch) / "bodies.lua"
        script.write_text(wrk_script(requests))
        wrk(run.url, script, args.concurrency, args.warmup)
        by_wrk = wrk(run.url, script, args.concurrency, args.duration)
    return {
        "target": run.target.name,
        "rtserve_loadgen": {
            "throughput": round(own["throughput"], 1),
            "p50_ms": own["latency_ms"]["p50"],
            "p99_ms": own["latency_ms"]["p99"],
            "errors": own["error_count"],
        },
        "wrk": by_wrk,
    }


def wrk_script(requests: list[tuple[str, bytes]]) -> str:
    """A wrk Lua script that POSTs the bodies in turn (each as a Lua long string)."""
    bodies = "\n".join(f"  [==[{body.decode()}]==]," for _, body in requests)
    paths = "\n".join(f"  [==[{path}]==]," for path, _ in requests)
    return (
        f"local bodies = {{\n{bodies}\n}}\nlocal paths = {{\n{paths}\n}}\n"
        "local headers = {['Content-Type'] = 'application/json'}\nlocal i = 0\n"
        "request = function()\n  i = i % #bodies + 1\n"
        "  return wrk.format('POST', paths[i], headers, bodies[i])\nend\n"
    )


def wrk(url: str, script: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """Run wrk (one thread, ``concurrency`` connections) and read its summary."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
               "-s", str(script), url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    latency = {
        m.group(1): round(float(m.group(2)) * _UNITS[m.group(3)], 3)
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "throughput": float(found.group(1)),
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and target, each generator's median throughput and p99 over the rounds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in rounds:
        out.setdefault(entry["model"], {}).setdefault(
            entry["target"], {"rtserve_loadgen": [], "wrk": []}
        )
        for generator in ("rtserve_loadgen", "wrk"):
            out[entry["model"]][entry["target"]][generator].append(entry[generator])
    for targets in out.values():
        for generators in targets.values():
            for generator, results in generators.items():
                generators[generator] = {
                    key: statistics.median(r[key] for r in results)
                    for key in ("throughput", "p99_ms")
                }
    return out


def markdown(document: dict[str, Any]) -> str:
    lines = [
        f"# rtserve's load generator against wrk, {document['started']}",
        "",
        f"Closed loop, {document['settings']['concurrency']} connections, "
        f"{document['settings']['duration_s']} s per measurement; medians of the rounds.",
        "",
        "| model | target | req/s (rtserve's generator) | p99 ms | req/s (wrk) | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, targets in document["medians"].items():
        for target, by in targets.items():
            own, other = by["rtserve_loadgen"], by["wrk"]
            lines.append(
                f"| {model} | {target} | {own['throughput']:,.0f} | {own['p99_ms']:.2f} | "
                f"{other['throughput']:,.0f} | {other['p99_ms']:.2f} |"
            )
    lines += ["", "| model | ratio | rtserve's generator | wrk |", "| --- | --- | --- | --- |"]
    for model, targets in document["medians"].items():
        for peer, label in (("mosec", "rtserve ÷ mosec req/s"), ("bare", "rtserve ÷ bare req/s")):
            if "rtserve" in targets and peer in targets:
                cells = [
                    targets["rtserve"][g]["throughput"] / targets[peer][g]["throughput"]
                    for g in ("rtserve_loadgen", "wrk")
                ]
                lines.append(f"| {model} | {label} | {cells[0]:.2f} | {cells[1]:.2f} |")
        if "rtserve" in targets and "mosec" in targets:
            cells = [
                targets["rtserve"][g]["p99_ms"] / targets["mosec"][g]["p99_ms"]
                for g in ("rtserve_loadgen", "wrk")
            ]
            lines.append(f"| {model} | rtserve ÷ mosec p99 | {cells[0]:.2f} | {cells[1]:.2f} |")
    return "\n".join(lines) + "\n"


def _line(entry: dict[str, Any]) -> str:
    own, other = entry["rtserve_loadgen"], entry["wrk"]
    errors = own["errors"] + other["errors"]
    return (
        f"{entry['model']:8} round {entry['round']} {entry['target']:8} "
        f"rtserve's generator {own['throughput']:8.0f} req/s p99 {own['p99_ms']:6.2f} ms | "
        f"wrk {other['throughput']:8.0f} req/s p99 {other['p99_ms']:6.2f} ms"
        + (f"  ERRORS {errors}" if errors else "")
        + (f"  socket errors: {other['socket_errors']}" if other["socket_errors"] else "")
    )


if __name__ == "__main__":
    main()
