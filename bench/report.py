"""Ratios, goal checks and the markdown report of one benchmark run (a pure function of its JSON).

Ratios are taken within one (model, concurrency) point of one run:
- ``rps_vs_fastapi``: requests/s over the FastAPI baseline's;
- ``rps_vs_best_peer``: requests/s over the highest requests/s of any peer (MLServer, BentoML,
  LitServe in either configuration, and the FastAPI baseline);
- ``p50_vs_best_peer`` / ``p99_vs_best_peer``: latency over the lowest p50 / p99 of any peer
  (below 1 is faster);
- ``rps_vs_mosec``, ``p50_vs_mosec``, ``p99_vs_mosec``: the same against mosec alone (a Rust
  HTTP front with Python workers and dynamic batching: the peer issue 15's goals are set
  against).
A peer point counts when the peer answered every check request and the point had no errors;
answers that differ from the in-process predictions on some rows are flagged in the targets
table, not excluded (the peer still did the same work). Goals are the issue's, checked from
these numbers.
"""

from __future__ import annotations

from typing import Any

PEER_KINDS = ("peer", "baseline")


def _points(document: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {
        (p["model"], p["concurrency"], p["target"]): p["result"]
        for p in document["points"]
        if "result" in p
    }


def _kinds(document: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["kind"] for t in document["targets"]}


def best_peers(document: dict[str, Any], model: str, concurrency: int) -> dict[str, Any] | None:
    """The best peer figures of one point: highest req/s, lowest p50 and p99, and who had them."""
    kinds = _kinds(document)
    candidates = [
        (target, result)
        for (m, c, target), result in _points(document).items()
        if m == model
        and c == concurrency
        and kinds.get(target) in PEER_KINDS
        and result["error_count"] == 0
        and result["ok"] > 0
    ]
    if not candidates:
        return None
    rps = max(candidates, key=lambda x: x[1]["throughput"])
    p50 = min(candidates, key=lambda x: x[1]["latency_ms"]["p50"])
    p99 = min(candidates, key=lambda x: x[1]["latency_ms"]["p99"])
    return {
        "rps": rps[1]["throughput"],
        "rps_by": rps[0],
        "p50": p50[1]["latency_ms"]["p50"],
        "p50_by": p50[0],
        "p99": p99[1]["latency_ms"]["p99"],
        "p99_by": p99[0],
    }


def ratios(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured point's ratios to the FastAPI baseline and to the best peer."""
    points = _points(document)
    out = []
    for (model, concurrency, target), result in points.items():
        best = best_peers(document, model, concurrency)
        fastapi = points.get((model, concurrency, "fastapi"))
        row: dict[str, Any] = {"model": model, "concurrency": concurrency, "target": target}
        if fastapi and fastapi["throughput"] > 0:
            row["rps_vs_fastapi"] = round(result["throughput"] / fastapi["throughput"], 3)
            row["p50_vs_fastapi"] = round(
                result["latency_ms"]["p50"] / fastapi["latency_ms"]["p50"], 4
            )
        mosec = points.get((model, concurrency, "mosec"))
        if mosec and mosec["throughput"] > 0 and mosec["error_count"] == 0:
            row["rps_vs_mosec"] = round(result["throughput"] / mosec["throughput"], 3)
            row["p50_vs_mosec"] = round(result["latency_ms"]["p50"] / mosec["latency_ms"]["p50"], 4)
            row["p99_vs_mosec"] = round(result["latency_ms"]["p99"] / mosec["latency_ms"]["p99"], 4)
        if best:
            row["rps_vs_best_peer"] = round(result["throughput"] / best["rps"], 3)
            row["p50_vs_best_peer"] = round(result["latency_ms"]["p50"] / best["p50"], 4)
            row["p99_vs_best_peer"] = round(result["latency_ms"]["p99"] / best["p99"], 4)
            row["best_peer"] = best
        out.append(row)
    return out


def goals(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's goals, each PASS / FAIL with its numbers (or not measured)."""
    points = _points(document)
    out: list[dict[str, Any]] = []

    def add(goal: str, passed: bool | None, numbers: str) -> None:
        out.append({"goal": goal, "passed": passed, "numbers": numbers})

    for model in ("card", "dense_lr"):
        rt, mosec = points.get((model, 64, "rtserve")), points.get((model, 64, "mosec"))
        if rt and mosec and mosec["throughput"] > 0:
            ratio = rt["throughput"] / mosec["throughput"]
            add(
                f"{model}, c=64: throughput >= 3x mosec's",
                ratio >= 3,
                f"rtserve {rt['throughput']:.0f} req/s vs mosec {mosec['throughput']:.0f} req/s = {ratio:.2f}x",
            )
            p99 = rt["latency_ms"]["p99"] / mosec["latency_ms"]["p99"]
            add(
                f"{model}, c=64: p99 <= 1/2 of mosec's",
                p99 <= 0.5,
                f"rtserve {rt['latency_ms']['p99']:.2f} ms vs mosec {mosec['latency_ms']['p99']:.2f} ms = {p99:.3f}x",
            )
        else:
            add(f"{model}, c=64: throughput >= 3x and p99 <= 1/2 of mosec's", None, "not measured")
        rt1, best1 = points.get((model, 1, "rtserve")), best_peers(document, model, 1)
        if rt1 and best1:
            p50 = rt1["latency_ms"]["p50"] / best1["p50"]
            add(
                f"{model}, c=1: p50 <= 1/2 of the best peer's",
                p50 <= 0.5,
                f"rtserve {rt1['latency_ms']['p50']:.3f} ms vs {best1['p50_by']} {best1['p50']:.3f} ms = {p50:.3f}x",
            )
        else:
            add(f"{model}, c=1: p50 <= 1/2 of the best peer's", None, "not measured")
    rt, bare = points.get(("dense_lr", 64, "rtserve")), points.get(("dense_lr", 64, "bare"))
    if rt and bare and bare["throughput"] > 0:
        share = rt["throughput"] / bare["throughput"]
        add(
            "dense_lr, c=64: throughput >= 30% of the bare HTTP server's",
            share >= 0.3,
            f"rtserve {rt['throughput']:.0f} req/s vs bare {bare['throughput']:.0f} req/s = {share:.0%}",
        )
    else:
        add("dense_lr, c=64: throughput >= 30% of the bare HTTP server's", None, "not measured")
    measured = [r for r in points.values() if r.get("ok")]
    with_cpu = [r for r in measured if (r.get("cpu") or {}).get("total_us") is not None]
    add(
        "CPU per request per thread group reported for every point",
        bool(measured) and len(with_cpu) == len(measured),
        f"{len(with_cpu)} of {len(measured)} measured points",
    )
    return out


def _rounds_text(rounds: int) -> str:
    if rounds <= 1:
        return ""
    return (
        f", {rounds} rounds per point (every target in turn, each time), the round with the "
        "median throughput reported"
    )


def floor_of(floor: dict[str, Any]) -> tuple[float, str]:
    """The lower (stricter) in-process floor: the framework's predict_proba or rtserve's predict.

    When rtserve serves an ONNX export, its in-process predict is far below the framework's, and
    subtracting the framework's floor would make the overhead negative; the lower floor keeps the
    overhead goal about the HTTP layer.
    """
    candidates = [(floor["p50_ms"], "predict_proba")]
    if "rtserve_predict" in floor:
        candidates.append((floor["rtserve_predict"]["p50_ms"], "rtserve in-process predict"))
    return min(candidates)


def goals_text(document: dict[str, Any]) -> str:
    """The goal checks as lines: PASS / FAIL / ---- goal: numbers."""
    marks = {True: "PASS", False: "FAIL", None: "----"}
    return "\n".join(
        f"{marks[g['passed']]}  {g['goal']}: {g['numbers']}" for g in document["goals"]
    )


# --- markdown ---------------------------------------------------------------------------------


def _cpus_text(settings: dict[str, Any]) -> str:
    server, client = settings["server_cpus"], settings["client_cpus"]
    if settings.get("shared_cpus", True) and server == client:
        return (
            f"Servers and the load generator (`rtserve bench`'s engine, closed loop) unpinned: "
            f"they share CPU(s) {server}, as deployed"
        )
    return (
        f"Servers on CPU(s) {server}, load generator (`rtserve bench`'s engine, closed loop) on "
        f"CPU(s) {client}"
    )


def cpu_text(cpu: dict[str, Any] | None, top: int = 4) -> str:
    """``total (group value · group value ...)`` in µs of CPU per request, largest groups first."""
    if not cpu or cpu.get("total_us") is None:
        return "—"
    groups = [(g, v) for g, v in cpu["us_per_request"].items() if v is not None and v >= 0.5]
    shown = " · ".join(f"{g} {v:,.0f}" for g, v in groups[:top])
    rest = sum(v for _, v in groups[top:])
    if rest >= 0.5:
        shown += f" · rest {rest:,.0f}"
    return f"{cpu['total_us']:,.0f} ({shown})"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _check_text(model: str, check: dict[str, Any]) -> str:
    if check.get("error"):
        return f"{model} FAILED ({check['error'][:80]})"
    if check["passed"]:
        return f"{model} ok (max Δ {check['max_abs_diff']:.0e})"
    return f"{model} DIFFER on {check['rows_over_atol']}/{check['rows']} rows (max Δ {check['max_abs_diff']:.1e})"


def markdown(document: dict[str, Any]) -> str:
    """The whole run as a markdown page: machine, goals, targets, then one table per point."""
    machine, settings = document["machine"], document["settings"]
    lines = [
        f"# rtserve benchmark — {document['mode']} run, {document['started']}",
        "",
        f"{machine['cpu_model']}, {machine['nproc']} CPUs, {machine['memory_gib']} GiB, Python {machine['python']}, "
        f"{machine['platform']}. Load average {machine['loadavg_start']} at the start, {machine['loadavg_end']} at the end "
        "(other work on the machine shows here).",
        "",
        _cpus_text(settings)
        + f"; {settings['warmup_s']} s warm-up + {settings['duration_s']} s per point"
        + _rounds_text(settings.get("rounds", 1))
        + "; "
        f"one row per request; answers checked on {settings['check_rows']} validation rows per model "
        f"(|Δp| ≤ {settings['atol']}) before timing. Wall time {document['wall_s']:.0f} s.",
        "",
        "## Goals",
        "",
        "```",
        goals_text(document),
        "```",
        "",
        "## Targets",
        "",
        "| target | what | start-up s | RSS ready MB | RSS peak MB | idle CPU % | answers (vs in-process) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for t in document["targets"]:
        checks = t["checks"]
        if t["error"]:
            answer = f"did not run: {t['error'][:120]}"
        elif not checks or all(not c.get("checked") for c in checks.values()):
            answer = "n/a"
        else:
            answer = ", ".join(_check_text(m, c) for m, c in checks.items())
        lines.append(
            f"| {t['name']} | {t['description']} | {_fmt(t['startup_s'])} | {_fmt(t['rss_ready_mb'], 0)} "
            f"| {_fmt(t['rss_peak_mb'], 0)} | {_fmt(t.get('idle_cpu_percent'), 1)} | {answer} |"
        )
    floors = document["floors"]["inprocess"]
    ratio_of = {(r["model"], r["concurrency"], r["target"]): r for r in document["ratios"]}
    models = list(dict.fromkeys(p["model"] for p in document["points"]))
    for model in models:
        floor = floors.get(model)
        lines += ["", f"## {model}", ""]
        if floor:
            lines += [
                f"In-process floors, one row: the pipeline's own `predict_proba` p50 {floor['p50_ms']:.3f} ms (p99 {floor['p99_ms']:.3f} ms)"
            ]
            if "rtserve_predict" in floor:
                rp = floor["rtserve_predict"]
                lines[-1] += (
                    f"; rtserve's in-process `Predictor.predict` (validation included) p50 {rp['p50_ms']:.3f} ms (p99 {rp['p99_ms']:.3f} ms)"
                )
            lines[-1] += "."
            lines.append("")
        for concurrency in settings["concurrency"]:
            lines += [
                f"**c = {concurrency}**",
                "",
                "| target | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | × best peer req/s | p50 ÷ best peer | p99 ÷ best peer | × mosec req/s | p99 ÷ mosec | CPU µs/request (by thread) |",
                "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
            ]
            for point in document["points"]:
                if point["model"] != model or point["concurrency"] != concurrency:
                    continue
                name = point["target"]
                if "result" not in point:
                    lines.append(
                        f"| {name} | — | — | — | — | — | skipped: {point['skipped']} | | | | | | |"
                    )
                    continue
                res, lat = point["result"], point["result"]["latency_ms"]
                r = ratio_of.get((model, concurrency, name), {})
                errors = ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "0"
                lines.append(
                    f"| {name} | {_fmt(res['throughput'], 0)} | {_fmt(lat['p50'], 3)} | {_fmt(lat['p90'], 3)} | {_fmt(lat['p99'], 3)} | {_fmt(lat['p99.9'], 3)} | {errors} "
                    f"| {_fmt(r.get('rps_vs_best_peer'))} | {_fmt(r.get('p50_vs_best_peer'), 3)} | {_fmt(r.get('p99_vs_best_peer'), 3)} "
                    f"| {_fmt(r.get('rps_vs_mosec'))} | {_fmt(r.get('p99_vs_mosec'), 3)} | {cpu_text(res.get('cpu'))} |"
                )
            lines.append("")
    lines += [
        "Peers are mosec, MLServer, BentoML and LitServe (default and tuned) and the FastAPI baseline; the best peer is "
        "taken per column (highest req/s, lowest p50, lowest p99) among peers with matching answers and no errors. "
        "`bare` is the floor of any Python HTTP server here and the load generator's ceiling. "
        "CPU µs/request: CPU time of the server's whole process tree over the measured window "
        "(`/proc/PID/task/*/stat`, 10 ms ticks) per request completed in it, by thread group: for "
        "rtserve `event loop` (each process's main thread), `runtime` (`rt-<model>`), `observers` "
        "(`rtserve-*`), `decision writer` (the decision log's child process), `other`; for the others `process/thread` as the OS names them.",
        "",
    ]
    return "\n".join(lines)
