"""CPU an observer's background thread spends per prediction request, measured in-process.

Feeds an observer synthetic ``dense_lr``-like traffic (32 float fields, binary classifier with
probabilities) exactly as its ``BackgroundQueue`` thread would: drained batches of 256 events
handed to the observer's handler, plus its periodic tick once per second of traffic at
6,000 requests/s. Prints µs of CPU (``time.thread_time``) per request and per row, for events of
1 row and of 16 rows (a group of requests predicted together).

    uv run python bench/observer_cost.py drift              # 1-row and 16-row events
    uv run python bench/observer_cost.py drift --profile    # + cProfile of the 1-row run
    uv run python bench/observer_cost.py decisions          # the decision log (JSON lines)

Modes are keyed by ``argv[1]`` (see ``MODES``); each takes its own options after it.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rtserve.bundle.profile import build_profile
from rtserve.bundle.schema import FieldSpec, FieldType, OutputSpec, Schema
from rtserve.runtimes.base import ModelOutput
from rtserve.types import Columns, Task

FIELDS = [f"f{i}" for i in range(32)]
BATCH = 256  # BackgroundQueue's default batch
REQUESTS_PER_SECOND = 6_000  # the dense_lr load the tick rate is scaled to


def dense_lr_like(rows: int, seed: int) -> tuple[Columns, ModelOutput]:
    """Columns of 32 standard-normal floats and a logistic classifier's outputs on them."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, len(FIELDS)))
    columns = {name: np.ascontiguousarray(matrix[:, i]) for i, name in enumerate(FIELDS)}
    p1 = 1 / (1 + np.exp(-(matrix @ rng.normal(size=len(FIELDS)) / 4)))
    probabilities = np.column_stack([1 - p1, p1])
    return columns, ModelOutput(label=(p1 > 0.5).astype(np.int64), probabilities=probabilities)


def dense_lr_schema() -> Schema:
    """32 float inputs, classes [0, 1] with probabilities."""
    return Schema(
        inputs=[FieldSpec(name=name, type=FieldType.FLOAT) for name in FIELDS],
        outputs=OutputSpec(task=Task.CLASSIFICATION, classes=[0, 1]),
    )


def split_events(columns: Columns, output: ModelOutput, rows_per_event: int) -> list[Any]:
    """(columns, output) per event, each its own arrays as a decoded request's would be."""
    total = len(output)
    return [
        (
            {name: column[i : i + rows_per_event].copy() for name, column in columns.items()},
            output.rows(i, i + rows_per_event),
        )
        for i in range(0, total - rows_per_event + 1, rows_per_event)
    ]


def feed(
    handle: Callable[[list[Any]], None],
    tick: Callable[[], None],
    make_items: Callable[[int, int], list[Any]],
    n_events: int,
) -> float:
    """CPU seconds of this thread in ``handle`` and ``tick`` for ``n_events`` events.

    Events are made one drain at a time (what arrives in the queue's 0.25 s interval at
    ``REQUESTS_PER_SECOND``), outside the timed calls, so that, as in the server, the observer
    reads recently created arrays rather than a whole run's worth out of cache.
    """
    per_drain = REQUESTS_PER_SECOND // 4
    spent = 0.0
    for drain_start in range(0, n_events, per_drain):
        items = make_items(drain_start, min(drain_start + per_drain, n_events))
        started = time.thread_time()
        for start in range(0, len(items), BATCH):
            handle(items[start : start + BATCH])
        if (drain_start // per_drain) % 4 == 3:  # once per second of traffic
            tick()
        spent += time.thread_time() - started
    return spent


def drift_events(rows_per_event: int, n_events: int, seed: int) -> Callable[[int, int], list[Any]]:
    """Makes the drift queue's items for events ``first:stop`` of a run (times at 6,000/s)."""
    columns, output = dense_lr_like(n_events * rows_per_event, seed=seed)

    def make(first: int, stop: int) -> list[Any]:
        rows = slice(first * rows_per_event, stop * rows_per_event)
        part = {name: column[rows] for name, column in columns.items()}
        pairs = split_events(part, output.rows(rows.start, rows.stop), rows_per_event)
        return [
            ("dense_lr", "1", 1_000_000.0 + (first + i) / REQUESTS_PER_SECOND, cols, out)
            for i, (cols, out) in enumerate(pairs)
        ]

    return make


def drift(argv: list[str]) -> None:
    """The drift observer: window summaries per model version and the gauge refresh."""
    from rtserve.observability.drift import DriftObserver, Reference
    from rtserve.observability.metrics import Metrics
    from rtserve.settings import DriftSettings

    parser = argparse.ArgumentParser(prog="observer_cost.py drift")
    parser.add_argument("--events", type=int, default=30_000, help="1-row events to time")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest is reported")
    parser.add_argument("--profile", action="store_true", help="cProfile the 1-row run")
    args = parser.parse_args(argv)

    schema = dense_lr_schema()
    train_columns, train_output = dense_lr_like(20_000, seed=0)
    profile = build_profile(
        schema, train_columns, train_output.label, train_output.probabilities, None
    )
    reference = Reference(schema, profile, "sha256:bench")

    for rows_per_event in (1, 16):
        n_events = args.events if rows_per_event == 1 else max(args.events // 4, BATCH)
        warm_up = drift_events(rows_per_event, n_events, seed=1)
        traffic = drift_events(rows_per_event, n_events, seed=2)
        best = float("inf")
        for _ in range(args.repeat):
            observer = DriftObserver(lambda name, version: reference, DriftSettings(), Metrics())
            # the window (5,000 rows) is full and evicting before the timed run
            feed(observer._add, observer.refresh_gauges, warm_up, n_events)
            if args.profile and rows_per_event == 1:  # the observer's calls, not the feeding
                profiler = cProfile.Profile()
                add = functools.partial(profiler.runcall, observer._add)
                refresh = functools.partial(profiler.runcall, observer.refresh_gauges)
                feed(add, refresh, traffic, n_events)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
                args.profile = False
                continue
            best = min(best, feed(observer._add, observer.refresh_gauges, traffic, n_events))
        rows = n_events * rows_per_event
        print(
            f"drift {rows_per_event:>2}-row events: {best / rows * 1e6:7.2f} µs CPU per row, "
            f"{best / n_events * 1e6:7.2f} µs per event ({n_events} events, best of "
            f"{args.repeat})"
        )


def decision_events(columns: Columns, output: ModelOutput, rows: int, first: int, stop: int
                    ) -> list[Any]:  # fmt: skip
    """Prediction events ``first`` to ``stop`` of ``rows`` rows each, every other one traced."""
    from rtserve.events import BatchInfo, PredictionEvent

    part = {name: column[first * rows : stop * rows] for name, column in columns.items()}
    pairs = split_events(part, output.rows(first * rows, stop * rows), rows)
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    return [
        PredictionEvent(
            request_id=f"req-{first + i}",
            time=1_700_000_000.0 + (first + i) / REQUESTS_PER_SECOND,
            model="dense_lr",
            version="1",
            digest="sha256:" + "d" * 64,
            protocol="records",
            columns=cols,
            output=out,
            rows=rows,
            latency_seconds=0.0004,
            batch=BatchInfo(0.0001, 0.0002, rows, 1),
            traceparent=trace if (first + i) % 2 else None,
        )
        for i, (cols, out) in enumerate(pairs)
    ]


def decisions(argv: list[str]) -> None:
    """The decision log: ``_write`` with the default JSON-lines sink into a temp dir, in the
    batches its thread drains (64 events, not ``BATCH``)."""
    import tempfile

    from rtserve.observability.decisions import DecisionLogObserver, JsonlSink
    from rtserve.observability.redaction import Redactor

    parser = argparse.ArgumentParser(prog="observer_cost.py decisions")
    parser.add_argument("--events", type=int, default=30_000, help="1-row events to time")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest is reported")
    parser.add_argument("--inputs", action="store_true", help="record the inputs too")
    parser.add_argument("--profile", action="store_true", help="cProfile the 1-row run")
    args = parser.parse_args(argv)

    schema = dense_lr_schema()
    for rows_per_event in (1, 16):
        n_events = args.events if rows_per_event == 1 else max(args.events // 16, BATCH)
        columns, output = dense_lr_like(n_events * rows_per_event, seed=1)
        make_items = functools.partial(decision_events, columns, output, rows_per_event)
        best = float("inf")
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as directory:
                observer = DecisionLogObserver(
                    JsonlSink(directory),
                    lambda name, version: schema,
                    Redactor(b"bench"),
                    include_inputs=args.inputs,
                )
                observer.sink.open()
                size = observer.queue._batch

                def write(items: list[Any], write: Any = observer._write, size: int = size) -> None:
                    for start in range(0, len(items), size):
                        write(items[start : start + size])

                profiler = cProfile.Profile() if args.profile and rows_per_event == 1 else None
                if profiler is not None:
                    profiler.enable()
                best = min(best, feed(write, lambda: None, make_items, n_events))
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
                    args.profile = False
                observer.sink.close()
        rows = n_events * rows_per_event
        print(
            f"decisions {rows_per_event:>2}-row events: {best / rows * 1e6:7.2f} µs CPU per row, "
            f"{best / n_events * 1e6:7.2f} µs per event ({n_events} events, best of "
            f"{args.repeat})"
        )


MODES: dict[str, Callable[[list[str]], None]] = {"drift": drift, "decisions": decisions}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: observer_cost.py {{{','.join(MODES)}}} [options]")
    MODES[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
