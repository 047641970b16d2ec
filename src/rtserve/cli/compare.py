"""``rtserve compare``: two bundles on the same rows, offline; a report, flags and CI gates.

Exit codes follow the CLI's contract: 0 when every ``--fail-on`` gate passed (or none was
given), 1 when a gate broke or the comparison could not run, 2 for a usage error (a gate,
tolerance or segment list that does not parse, a gate the models or data cannot answer).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rtserve.cli.options import JsonFlag
from rtserve.cli.output import print_error, print_json, print_note, print_warning, stdout
from rtserve.errors import ComparisonError

if TYPE_CHECKING:
    from rtserve.bundle.schema import OutputSpec
    from rtserve.evaluation.compare import Comparison, Options
    from rtserve.evaluation.gates import Gate, GateResult

# numpy, pandas, the runtimes, scikit-learn's metrics and matplotlib are imported when the
# command runs (rtserve.evaluation), so that `rtserve --help` stays fast.

DEFAULT_OUTPUT = Path("compare-report")
#: Flagged segments listed on the terminal (the report lists all).
SHOWN_FLAGGED = 15


def compare(
    old: Annotated[
        str,
        typer.Argument(
            help="The current bundle: a directory or .tar.gz (or NAME@REF with --registry).",
            show_default=False,
        ),
    ],
    new: Annotated[
        str,
        typer.Argument(help="The candidate bundle (same forms as OLD).", show_default=False),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="Rows to score: .parquet, .csv or .jsonl; or decisions:PATH[?model=M&version=V"
            "&since=T&until=T&limit=N] for traffic in the decision log (needs "
            "decision_log.include_inputs).",
            show_default=False,
        ),
    ],
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels", help="Column of true labels (or targets): adds AUC, log-loss, RMSE ..."
        ),
    ] = None,
    segment_by: Annotated[
        str | None,
        typer.Option(
            "--segment-by",
            help="Fields to cut segments by, comma-separated; a+b crosses two fields.",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Gates that make the command exit 1, e.g. "
            "'agreement<0.98,auc_drop>0.01,any_flag' (see docs/compare.md).",
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Directory for report.html and summary.json."),
    ] = DEFAULT_OUTPUT,
    registry: Annotated[
        Path | None,
        typer.Option("--registry", help="Registry directory that NAME@REF arguments resolve in."),
    ] = None,
    tolerance: Annotated[
        str | None,
        typer.Option(
            "--tolerance",
            help="Tolerances of differences, e.g. 'auc_drop=0.02,disagreement=0.05'.",
        ),
    ] = None,
    resamples: Annotated[
        int, typer.Option(min=50, max=10_000, help="Bootstrap resamples per segment.")
    ] = 500,
    confidence: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals.")
    ] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap's random draws.")] = 0,
    max_segments: Annotated[
        int,
        typer.Option(min=1, max=200, help="Segments per field; the rest form '(other)'."),
    ] = 20,
    min_rows: Annotated[
        int, typer.Option(min=1, help="Segments with fewer rows are shown but not flagged.")
    ] = 30,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows validated and predicted at a time.")
    ] = 1024,
    no_html: Annotated[
        bool, typer.Option("--no-html", help="Write summary.json only (no matplotlib needed).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare two bundles on the same rows: agreement, metrics, segments, flags, gates.

    Writes report.html (plots embedded) and summary.json to --output, prints the overall
    table, and exits 1 when a --fail-on gate breaks, so it can guard a CI step.

    Examples:

        rtserve compare bundles/fraud-1 bundles/fraud-2 --data holdout.parquet --labels is_fraud
        --segment-by country --fail-on 'auc_drop>0.01,any_flag'

        rtserve compare fraud@production fraud@staging --registry ./registry
        --data 'decisions:/var/lib/rtserve/decisions?model=fraud'
    """
    from rtserve.evaluation import gates as gate_module
    from rtserve.evaluation import report, segments
    from rtserve.evaluation.compare import Options

    try:
        gates = gate_module.parse_gates(fail_on)
    except gate_module.GateSyntaxError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fail-on") from exc
    try:
        specs = segments.parse_spec(segment_by)
    except segments.SegmentSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--segment-by") from exc
    options = Options(
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        tolerances=_tolerances(tolerance),
        max_segments=max_segments,
        min_rows=min_rows,
    )
    if labels is None:
        needing = [g.text for g in gates if g.needs_labels]
        if needing:
            raise typer.BadParameter(
                f"gate(s) {', '.join(needing)} compare metrics against true labels; "
                "name the label column with --labels",
                param_hint="--fail-on",
            )
    if not no_html:
        report.require_matplotlib()
    started = time.perf_counter()
    comparison = _run(old, new, data, labels, specs, options, registry, batch_size, gates)
    results = gate_module.evaluate_gates(gates, comparison.to_dict())
    written = report.write(comparison, results, output, html_page=not no_html)
    if as_json:
        print_json(report.summary(comparison, results))
    else:
        _print(comparison, results)
    _warn_set_aside(comparison)
    print_note(
        f"compared {comparison.paired.rows:,} rows in {time.perf_counter() - started:.1f}s; "
        f"wrote {', '.join(str(p) for p in written)}"
    )
    broken = [r for r in results if r.broken]
    if broken:
        print_error(
            ComparisonError(
                f"{len(broken)} of {len(results)} gate(s) broken: "
                + "; ".join(_gate_line(r) for r in broken)
            )
        )
        raise typer.Exit(1)


def _run(
    old: str,
    new: str,
    data: str,
    labels: str | None,
    specs: list[tuple[str, ...]],
    options: Options,
    registry: Path | None,
    batch_size: int,
    gates: list[Gate],
) -> Comparison:
    from rtserve.engine.loader import load
    from rtserve.evaluation.compare import compare
    from rtserve.evaluation.data import parse_source
    from rtserve.evaluation.pairing import Side, pair, string_fields
    from rtserve.evaluation.segments import fields_of

    source = parse_source(data)
    sides = []
    predictors = []
    for role, spec in (("OLD", old), ("NEW", new)):
        path = _bundle_path(role, spec, registry)
        predictor = load(path)
        predictors.append(predictor)
        sides.append(Side(predictor.name, predictor.version, predictor.digest, spec))
    _check_gates(gates, predictors[0].schema.outputs, predictors[1].schema.outputs)
    fields = fields_of(specs)
    chunks = source.chunks(batch_size, string_fields(*predictors, extra=fields))
    paired = pair(
        predictors[0],
        predictors[1],
        chunks,
        sides=(sides[0], sides[1]),
        labels=labels,
        fields=fields,
    )
    return compare(
        paired,
        source=source.describe(),
        labels=labels,
        specs=specs,
        options=options,
        served=source.served,
    )


def _bundle_path(role: str, spec: str, registry: Path | None) -> Path:
    """A bundle path as given, or the registry's copy of ``NAME@REF``."""
    path = Path(spec)
    if path.exists() or registry is None:
        if not path.exists():
            hint = " (for a registry version NAME@REF, add --registry DIR)" if "@" in spec else ""
            raise ComparisonError(f"{role} {spec}: no such bundle{hint}", field=role.lower())
        return path
    if not registry.is_dir():
        raise ComparisonError(
            f"--registry {registry}: no registry there (create one with "
            f"`rtserve registry --registry {registry} init`)",
            field="registry",
        )
    from rtserve.registry import Registry

    opened = Registry.open(registry)
    try:
        return opened.bundle_path(spec)
    finally:
        opened.close()


def _check_gates(gates: list[Gate], old: OutputSpec, new: OutputSpec) -> None:
    """Refuse gates these models cannot answer (usage error): AUC of a regressor, ..."""
    for gate in gates:
        why = gate.task_mismatch(old.task, old.probabilities and new.probabilities)
        if why is not None:
            raise typer.BadParameter(f"gate {gate.text}: {why}", param_hint="--fail-on")


def _tolerances(text: str | None) -> dict[str, float]:
    """``auc_drop=0.02,disagreement=0.05`` -> a dict; anything else is a usage error."""
    from rtserve.evaluation.metrics import BY_DELTA

    if text is None or not text.strip():
        return {}
    found: dict[str, float] = {}
    for part in text.split(","):
        name, sep, number = (s.strip() for s in part.partition("="))
        if not sep or name not in BY_DELTA:
            raise typer.BadParameter(
                f"{part.strip()!r}: expected NAME=NUMBER with NAME one of {', '.join(BY_DELTA)}",
                param_hint="--tolerance",
            )
        try:
            value = float(number)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise typer.BadParameter(
                f"{part.strip()!r}: a tolerance is a finite number, at least 0",
                param_hint="--tolerance",
            )
        found[name] = value
    return found


def _print(comparison: Comparison, results: list[GateResult]) -> None:
    """The overall table, the flagged segments and the gates, on stdout."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    paired = comparison.paired
    console = stdout()
    console.print(
        f"[bold]OLD[/] {escape(paired.old.describe())} → [bold]NEW[/] "
        f"{escape(paired.new.describe())}: {paired.rows:,} rows compared, "
        f"{paired.invalid_count:,} set aside"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric", no_wrap=True)
    for header in ("OLD", "NEW", "diff"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column(f"{comparison.options.confidence:.0%} CI", justify="right", no_wrap=True)
    table.add_column("tol", justify="right", no_wrap=True)
    table.add_column("flag", no_wrap=True)
    overall = comparison.overall
    if overall.agreement is not None:
        table.add_row("agreement", "", "", _n(overall.agreement), _ci(overall.agreement_interval))
    for check in overall.checks:
        table.add_row(
            check.metric.delta,
            _n(check.old),
            _n(check.new),
            _n(check.value),
            _ci(check.interval),
            _n(check.tolerance),
            "[bold red]FLAG[/]" if check.flagged else "",
        )
    console.print(table)
    by_segment: dict[str, list[str]] = {}
    for flag in comparison.flags:
        by_segment.setdefault(f"{flag.segment.name} ({flag.segment.rows:,} rows)", []).append(
            f"{flag.check.metric.delta} {_n(flag.check.value)}"
        )
    if by_segment:
        console.print(f"[bold red]flagged[/] ({len(comparison.flags)} checks):")
        for segment, found in list(by_segment.items())[:SHOWN_FLAGGED]:
            console.print(f"  {escape(segment)}: {escape(', '.join(found))}", soft_wrap=True)
        if len(by_segment) > SHOWN_FLAGGED:
            console.print(f"  … and {len(by_segment) - SHOWN_FLAGGED} more (see the report)")
    else:
        console.print("flagged: none")
    for result in results:
        verdict = "[bold red]broken[/]" if result.broken else "[green]passed[/]"
        console.print(f"gate {escape(_gate_line(result))}: {verdict}")


def _warn_set_aside(comparison: Comparison) -> None:
    """How many rows were left out and the commonest reasons, on stderr."""
    paired = comparison.paired
    if not paired.invalid_count:
        return
    reasons = "; ".join(
        f"{count:,} × {by} {name} {rule}"
        for (by, name, rule), count in paired.invalid_reasons.most_common(3)
    )
    print_warning(
        f"{paired.invalid_count:,} of {paired.rows_read:,} rows were set aside for both models "
        f"({reasons}); the report lists them with their reasons"
    )


def _gate_line(result: GateResult) -> str:
    value = "not computed" if result.value is None else _n(result.value)
    return f"{result.gate.text} (value {value})"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _ci(interval: tuple[float, float] | None) -> str:
    return "-" if interval is None else f"[{_n(interval[0])}, {_n(interval[1])}]"


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the CLI."""
    app.command("compare")(compare)
