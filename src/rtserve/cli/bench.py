"""``rtserve bench``: load-test a server (or a bundle it starts) and report HDR percentiles."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rtserve.cli.output import print_json, print_note, stderr, stdout
from rtserve.loadgen.bodies import Protocol

if TYPE_CHECKING:
    from rich.table import Table

    from rtserve.loadgen import LoadResult, LoadSpec
    from rtserve.loadgen.launch import Launched

# The load generator, numpy and rich's widgets are imported inside the functions that use them,
# so that `rtserve --help` stays fast.

READY_PATH = "/v2/health/ready"


def bench(
    target: Annotated[
        str,
        typer.Argument(
            help="A server's base URL (http://127.0.0.1:8080), or a bundle to serve and test.",
            show_default=False,
        ),
    ],
    bundle: Annotated[
        Path | None,
        typer.Option(help="Bundle whose validation sample gives the bodies (with a URL target)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Bodies from a .jsonl file, one row object per line."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name [default: the bundle's name].")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="Model version [default: any].")
    ] = None,
    protocol: Annotated[
        Protocol, typer.Option(help="records (/v1 ...:predict) or v2 (/v2/.../infer).")
    ] = Protocol.RECORDS,
    rows: Annotated[int, typer.Option(min=1, help="Rows per request.")] = 1,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, help="Workers (closed loop) or the connection cap (open)."
        ),
    ] = 16,
    rate: Annotated[
        float | None,
        typer.Option(help="Requests/s for an open loop (latency from the scheduled send time)."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", "-d", help="Seconds to measure [default: 10 unless -n]."),
    ] = None,
    requests: Annotated[
        int | None, typer.Option("--requests", "-n", min=1, help="Requests to measure.")
    ] = None,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds of unmeasured warm-up.")] = 1.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a request counts as timed out.")
    ] = 30.0,
    processes: Annotated[int, typer.Option(min=1, help="Client processes sharing the load.")] = 1,
    cpus: Annotated[
        str | None, typer.Option(help="Pin the load generator to these CPUs, e.g. 0 or 0,1.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Extra request header 'Name: value' (repeatable).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server worker processes (bundle target only).")
    ] = None,
    self_test: Annotated[
        bool,
        typer.Option(
            "--self-test",
            help="First measure a bare constant server with the same load: the generator's ceiling.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Load-test a model server: closed loop (-c) or open loop (--rate), HDR percentiles.

    Examples:
    `rtserve bench bundles/fraud-1 -c 16 -d 10` (serves the bundle itself, reports its start-up);
    `rtserve bench http://127.0.0.1:8080 --bundle bundles/fraud-1 --protocol v2 --rate 500`;
    `rtserve bench http://127.0.0.1:8080 --model fraud --data rows.jsonl --json`.
    """
    from rtserve.loadgen import (
        LoadSpec,
        encode_bodies,
        request_path,
        rows_from_bundle,
        rows_from_jsonl,
    )
    from rtserve.loadgen.launch import bare_command, free_port, launch

    spec = LoadSpec(
        concurrency=concurrency,
        rate=rate,
        duration_s=duration if duration is not None or requests is not None else 10.0,
        requests=requests,
        warmup_s=warmup,
        timeout_s=timeout,
        processes=processes,
        cpus=_cpus(cpus),
    )
    is_url = target.startswith(("http://", "https://"))
    source = rows_from_jsonl(data) if data else None
    if source is None:
        bundle_path = bundle if is_url else Path(target)
        if bundle_path is None:
            raise typer.BadParameter("give --bundle or --data for the request bodies")
        source = rows_from_bundle(bundle_path)
    name = model or source.model or (rows_from_bundle(target).model if not is_url else None)
    if name is None:
        raise typer.BadParameter("give --model: the rows of --data do not name their model")
    bodies = encode_bodies(source, protocol, rows_per_request=rows)
    path = request_path(protocol, name, model_version)
    headers = _headers(header or [])
    report: dict[str, Any] = {
        "target": target,
        "model": name,
        "protocol": protocol.value,
        "rows_per_request": rows,
        "path": path,
    }
    ceiling: LoadResult | None = None
    if self_test:
        port = free_port()
        with launch(bare_command(port), f"http://127.0.0.1:{port}", READY_PATH) as bare:
            ceiling = _measure(bare.url, path, bodies, headers, spec, "bare server", as_json)
        report["self_test"] = ceiling.to_dict()
    with _server(target, is_url, workers) as served:
        if served is not None:
            report["startup_s"] = round(served.startup_s, 4)
        url = served.url if served is not None else target
        result = _measure(url, path, bodies, headers, spec, name, as_json)
    report["result"] = result.to_dict()
    if as_json:
        print_json(report)
        return
    stdout().print(_table(report, result, ceiling))
    if result.error_count:
        print_note(f"{result.error_count} request(s) failed: {result.errors}")


def _measure(
    url: str,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    spec: LoadSpec,
    label: str,
    quiet: bool,
) -> LoadResult:
    from rtserve.loadgen import Endpoint, Workload, encode_request, run_load

    endpoint = Endpoint.from_url(url)
    workload = Workload(
        endpoint, tuple(encode_request(endpoint, path, body, headers=headers) for body in bodies)
    )
    with _progress(label, spec, quiet) as update:
        return run_load(workload, spec, update)


@contextlib.contextmanager
def _server(target: str, is_url: bool, workers: int | None) -> Iterator[Launched | None]:
    if is_url:
        yield None
        return
    if not Path(target).exists():
        raise typer.BadParameter(f"{target}: neither an http:// URL nor an existing bundle")
    from rtserve.loadgen.launch import free_port, launch, rtserve_command

    port = free_port()
    extra = ["--workers", str(workers)] if workers else []
    print_note(f"starting rtserve serve {target} on 127.0.0.1:{port} ...")
    with launch(
        rtserve_command([target], port, extra), f"http://127.0.0.1:{port}", READY_PATH
    ) as served:
        print_note(f"ready after {served.startup_s:.2f} s")
        yield served


@contextlib.contextmanager
def _progress(label: str, spec: LoadSpec, quiet: bool) -> Iterator[Any]:
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    total = spec.requests if spec.requests is not None else spec.duration_s
    unit = "requests" if spec.requests is not None else "s"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]:>9,} answers"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr(), transient=True, refresh_per_second=4) as bar:
        warm = bar.add_task(f"{label}: warm-up", total=spec.warmup_s or 1, done=0)
        task = bar.add_task(f"{label}: {spec.mode} loop ({unit})", total=total, done=0, start=False)

        def update(phase: str, done: int, elapsed: float) -> None:
            if phase == "warmup":
                bar.update(warm, completed=elapsed, done=done)
                return
            bar.update(warm, completed=spec.warmup_s or 1)
            bar.start_task(task)
            bar.update(task, completed=done if spec.requests is not None else elapsed, done=done)

        yield update


def _table(report: dict[str, Any], result: LoadResult, ceiling: LoadResult | None) -> Table:
    from rich.table import Table

    table = Table(
        title=f"rtserve bench {report['target']}: model {report['model']}, "
        f"{report['protocol']}, {report['rows_per_request']} row(s)/request",
        caption="latency in ms of 2xx answers; req/s counts 2xx answers",
    )
    for column in ("", "load", "2xx", "req/s", "p50", "p90", "p99", "p99.9", "max", "errors"):
        table.add_column(column, justify="left" if column in ("", "load") else "right")
    rows = [("bare", ceiling)] if ceiling is not None else []
    rows.append(("target", result))
    for label, res in rows:
        load = f"c={res.concurrency}" if res.rate is None else f"{res.rate:g}/s"
        ms = res.latency_ms
        table.add_row(
            label,
            load,
            f"{res.ok:,}",
            f"{res.throughput:,.0f}",
            *(f"{v:.2f}" for v in (ms.p50, ms.p90, ms.p99, ms.p999, ms.max)),
            ", ".join(f"{k}: {v}" for k, v in res.errors.items()) or "0",
        )
    if "startup_s" in report:
        table.caption = f"{table.caption}; server start-up to ready {report['startup_s']:.2f} s"
    return table


def _cpus(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r}: give CPU numbers like 0 or 0,1", param_hint="--cpus"
        ) from exc


def _headers(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{value!r}: write 'Name: value'", param_hint="--header")
        out[name.strip()] = content.strip()
    return out


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the CLI."""
    app.command("bench")(bench)
