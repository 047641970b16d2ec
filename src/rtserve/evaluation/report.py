"""The comparison written down: ``summary.json`` (every number) and ``report.html`` (one file).

The HTML page holds everything it shows: styles inline and plots as base64 PNG images drawn by
matplotlib with the Agg backend (no display, no pyplot state), so it can be attached to a CI run,
mailed or opened offline. Every value that came from the data (segment values, field names,
reasons) is HTML-escaped. matplotlib is the optional extra ``report``, imported only here and
only when a page is drawn; without it the page is refused with the command that installs it,
and ``summary.json`` alone can still be written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtserve.errors import ComparisonError
from rtserve.evaluation.compare import Check, Comparison, SegmentResult
from rtserve.evaluation.gates import GateResult
from rtserve.version import rtserve_version

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
#: How to install what the HTML report needs.
REPORT_HINT = "pip install 'rtserve[report]'"
#: Set-aside rows the page lists (all are counted; summary.json lists up to 100).
SHOWN_INVALID = 20
OLD_COLOUR, NEW_COLOUR, FLAG_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"


def require_matplotlib() -> None:
    """Refuse early, before any scoring, when the HTML report cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ComparisonError(
            f"the HTML report draws its plots with matplotlib, which is not installed: "
            f"{REPORT_HINT} (or pass --no-html to write summary.json alone)",
            field="report",
        ) from exc


def summary(comparison: Comparison, gates: Sequence[GateResult]) -> dict[str, Any]:
    """``summary.json``: the comparison, the gates applied and whether they all passed."""
    document = comparison.to_dict()
    document["gates"] = [g.to_dict() for g in gates]
    document["passed"] = not any(g.broken for g in gates)
    document["rtserve_version"] = rtserve_version(missing="unknown")
    return _jsonable(document)  # type: ignore[no-any-return]


def write(
    comparison: Comparison, gates: Sequence[GateResult], directory: Path, *, html_page: bool
) -> list[Path]:
    """Write ``summary.json`` (and ``report.html``) into ``directory``; returns their paths.

    Each file is written beside its target and renamed into place, so a reader never sees half
    a report.
    """
    directory.mkdir(parents=True, exist_ok=True)
    document = summary(comparison, gates)
    written = [
        _replace(
            directory / SUMMARY_FILE,
            json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        )
    ]
    if html_page:
        written.append(_replace(directory / REPORT_FILE, render(comparison, gates)))
    return written


def _replace(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- the page -------------------------------------------------------------------------------


def render(comparison: Comparison, gates: Sequence[GateResult]) -> str:
    """The whole HTML page."""
    require_matplotlib()
    paired = comparison.paired
    title = f"rtserve compare: {paired.old.describe()} → {paired.new.describe()}"
    parts = [
        _head(title),
        f"<h1>{_e(title)}</h1>",
        _verdict(comparison, gates),
        _about(comparison),
        "<h2>Overall</h2>",
        _checks_table(comparison.overall),
        _deltas(comparison),
        _flags(comparison),
        "<h2>Distributions</h2>",
        _figures(comparison),
        _segments(comparison),
        _invalid(comparison),
        f"<footer>rtserve {_e(rtserve_version(missing='unknown'))}, "
        f"{_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _head(title: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
td.text, th.text {{ text-align: left; }}
tr.flagged td, td.flagged {{ background: #fde2e2; color: #8b0000; font-weight: 600; }}
.verdict {{ font-size: 1.15em; padding: 0.6em 1em; border-radius: 4px; display: inline-block; }}
.pass {{ background: #e3f6e3; color: #155d15; }}
.fail {{ background: #fde2e2; color: #8b0000; }}
figure {{ margin: 1em 0; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption, .note {{ color: #555; font-size: 0.9em; }}
footer {{ margin-top: 3em; color: #777; font-size: 0.85em; }}
</style></head><body>"""


def _verdict(comparison: Comparison, gates: Sequence[GateResult]) -> str:
    flags = comparison.flags
    broken = [g for g in gates if g.broken]
    if gates:
        ok = not broken
        text = (
            f"{len(gates)} gate(s) passed"
            if ok
            else f"{len(broken)} of {len(gates)} gate(s) broken: "
            + ", ".join(g.gate.text for g in broken)
        )
    else:
        ok = not flags
        text = "no flags" if ok else f"{len(flags)} flag(s)"
    rows = [
        f"<tr><td class='text'>{_e(g.gate.text)}</td><td>{_n(g.value)}</td>"
        f"<td class='text{' flagged' if g.broken else ''}'>"
        f"{'broken' if g.broken else 'passed'}{_e(' (' + g.note + ')' if g.note else '')}</td></tr>"
        for g in gates
    ]
    table = (
        "<table><tr><th class='text'>gate</th><th>value</th><th class='text'>result</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else ""
    )
    return f"<p class='verdict {'pass' if ok else 'fail'}'>{_e(text)}</p>{table}"


def _about(comparison: Comparison) -> str:
    paired = comparison.paired
    options = comparison.options
    rows = [
        ("OLD", f"{paired.old.describe()} ({paired.old.digest}) from {paired.old.source}"),
        ("NEW", f"{paired.new.describe()} ({paired.new.digest}) from {paired.new.source}"),
        ("data", comparison.source),
        (
            "rows",
            f"{paired.rows_read:,} read, {paired.rows:,} compared, "
            f"{paired.invalid_count:,} set aside (invalid for a model or without a label)",
        ),
        ("labels", comparison.labels or "none (only the models' agreement is compared)"),
        ("task", paired.task.value + (f", classes {paired.classes}" if paired.classes else "")),
        (
            "intervals",
            f"{options.confidence:.0%} percentile intervals of {options.resamples} paired "
            f"bootstrap resamples of rows (seed {options.seed})",
        ),
        ("flag rule", options.rule()),
    ]
    if comparison.positive is not None:
        rows.append(("positive class", comparison.positive))
    for served, count in sorted(comparison.served.items()):
        rows.append(("served by", f"{served}: {count:,} records"))
    body = "".join(
        f"<tr><th class='text'>{_e(k)}</th><td class='text'>{_e(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _flags(comparison: Comparison) -> str:
    flags = comparison.flags
    if not flags:
        return (
            "<h2>Flags</h2><p>No difference is both beyond its tolerance and outside the noise.</p>"
        )
    rows = "".join(
        f"<tr class='flagged'><td class='text'>{_e(f.segment.name)}</td><td>{f.segment.rows:,}</td>"
        f"<td class='text'>{_e(f.check.metric.delta)}</td><td>{_n(f.check.old)}</td>"
        f"<td>{_n(f.check.new)}</td><td>{_n(f.check.value)}</td><td>{_ci(f.check.interval)}</td>"
        f"<td>{_n(f.check.tolerance)}</td></tr>"
        for f in flags
    )
    return (
        "<h2>Flags</h2><table><tr><th class='text'>segment</th><th>rows</th>"
        "<th class='text'>difference</th><th>OLD</th><th>NEW</th><th>value</th><th>interval</th>"
        f"<th>tolerance</th></tr>{rows}</table>"
    )


def _checks_table(result: SegmentResult) -> str:
    rows = []
    if result.agreement is not None:
        rows.append(
            f"<tr><td class='text'>label agreement</td><td></td><td></td><td>{_n(result.agreement)}"
            f"</td><td>{_ci(result.agreement_interval)}</td><td></td><td></td>"
            "<td class='text'></td></tr>"
        )
    rows.extend(_check_row(check) for check in result.checks)
    return (
        f"<p class='note'>{result.rows:,} rows. Differences: positive means NEW is worse; "
        "rmse_increase and mae_increase are relative to OLD.</p>"
        "<table><tr><th class='text'>metric</th><th>OLD</th><th>NEW</th><th>value</th>"
        "<th>interval</th><th>tolerance</th><th>flagged</th><th class='text'>note</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _check_row(check: Check) -> str:
    metric = check.metric
    label = metric.delta if metric.paired else f"{metric.title} → {metric.delta}"
    cls = " class='flagged'" if check.flagged else ""
    return (
        f"<tr{cls}><td class='text'>{_e(label)}</td><td>{_n(check.old)}</td><td>{_n(check.new)}"
        f"</td><td>{_n(check.value)}</td><td>{_ci(check.interval)}</td><td>{_n(check.tolerance)}"
        f"</td><td>{'yes' if check.flagged else 'no'}</td><td class='text'>{_e(check.note)}</td></tr>"
    )


def _deltas(comparison: Comparison) -> str:
    deltas = comparison.overall.deltas
    if not deltas:
        return ""
    classes = comparison.paired.classes or []
    rows: list[tuple[str, dict[str, float]]] = []
    if "value" in deltas:
        rows.append(("|Δ value|", deltas["value"]))
    elif comparison.positive is not None:
        rows.append((f"|Δ P({comparison.positive})|", deltas["headline"]))
    else:
        for name, moved in zip(classes, deltas.get("per_class", []), strict=False):
            rows.append((f"|Δ P({name})|", moved))
        if "max_over_classes" in deltas:
            rows.append(("max over classes", deltas["max_over_classes"]))
    body = "".join(
        f"<tr><td class='text'>{_e(name)}</td><td>{_n(q.get('p50'))}</td><td>{_n(q.get('p99'))}"
        f"</td><td>{_n(q.get('max'))}</td></tr>"
        for name, q in rows
    )
    extra = ""
    if "value" in deltas:
        extra = f"<p class='note'>mean NEW − OLD: {_n(deltas['value'].get('mean_signed'))}</p>"
    return (
        "<h3>How far the outputs moved, row by row</h3><table><tr><th class='text'>output</th>"
        f"<th>p50</th><th>p99</th><th>max</th></tr>{body}</table>{extra}"
    )


def _figures(comparison: Comparison) -> str:
    parts = []
    if comparison.distributions:
        parts.append(
            _figure(
                _distribution_plot(comparison),
                f"Score distributions of both models ({comparison.distributions['kind']})",
            )
        )
    if comparison.calibration is not None:
        parts.append(
            _figure(
                _calibration_plot(comparison),
                f"Reliability curves ({comparison.calibration['kind']}): mean predicted "
                "probability against the observed frequency, per bin",
            )
        )
    return "\n".join(parts)


def _segments(comparison: Comparison) -> str:
    if not comparison.segments:
        return "<h2>Segments</h2><p>No --segment-by fields were given.</p>"
    deltas = [c.metric.delta for c in comparison.overall.checks]
    parts = ["<h2>Segments</h2>"]
    for grouping in comparison.groupings:
        results = [s for s in comparison.segments if s.field == grouping.field]
        note = f"{grouping.distinct} distinct value(s)"
        if grouping.other_values:
            note += (
                f"; the {len(results) - 1} most frequent are shown, the other "
                f"{grouping.other_values} ({grouping.other_rows:,} rows) form '(other)'"
            )
        header = "".join(f"<th>{_e(d)}</th>" for d in deltas)
        rows = []
        for result in results:
            cells = []
            for delta in deltas:
                check = result.check(delta)
                if check is None:
                    cells.append("<td></td>")
                    continue
                cls = " class='flagged'" if check.flagged else ""
                cells.append(
                    f"<td{cls}>{_n(check.value)}<br><small>{_ci(check.interval)}</small></td>"
                )
            rows.append(
                f"<tr><td class='text'>{_e(result.value or '')}</td><td>{result.rows:,}</td>"
                f"<td>{_n(result.agreement)}</td>{''.join(cells)}</tr>"
            )
        parts.append(
            f"<h3>{_e(grouping.field)}</h3><p class='note'>{_e(note)}. Each cell: the "
            "difference (positive = NEW worse) and its interval.</p>"
            f"<table><tr><th class='text'>value</th><th>rows</th><th>agreement</th>{header}</tr>"
            + "".join(rows)
            + "</table>"
        )
        parts.append(
            _figure(
                _segment_plot(comparison, grouping.field, deltas),
                f"Differences by {grouping.field} (positive = NEW worse) with "
                f"{comparison.options.confidence:.0%} intervals; dashed: the tolerance; red: "
                "flagged",
            )
        )
    return "\n".join(parts)


def _invalid(comparison: Comparison) -> str:
    paired = comparison.paired
    if not paired.invalid_count:
        return "<h2>Rows set aside</h2><p>None: every row was valid for both models.</p>"
    reasons = "".join(
        f"<tr><td class='text'>{_e(by)}</td><td class='text'>{_e(name)}</td>"
        f"<td class='text'>{_e(rule)}</td><td>{count:,}</td></tr>"
        for (by, name, rule), count in paired.invalid_reasons.most_common()
    )
    listed = "".join(
        f"<tr><td>{row.row}</td><td class='text'>{_e(row.key or '')}</td><td class='text'>"
        + "<br>".join(_e(f"{r.by}: {r.error}") for r in row.reasons)
        + "</td></tr>"
        for row in paired.invalid[:SHOWN_INVALID]
    )
    return (
        f"<h2>Rows set aside</h2><p>{paired.invalid_count:,} of {paired.rows_read:,} rows were "
        "left out of every number: a model's schema refused them, or their label is missing or "
        "unknown.</p><table><tr><th class='text'>refused by</th><th class='text'>field</th>"
        f"<th class='text'>rule</th><th>rows</th></tr>{reasons}</table>"
        f"<p class='note'>The first {min(SHOWN_INVALID, len(paired.invalid))} (summary.json "
        "lists more):</p><table><tr><th>row</th><th class='text'>decision</th>"
        f"<th class='text'>reasons</th></tr>{listed}</table>"
    )


# --- plots ------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _figure(figure: Figure, caption: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _distribution_plot(comparison: Comparison) -> Figure:
    dist = comparison.distributions
    paired = comparison.paired
    figure = _new_figure(9, 3.6)
    axes = figure.subplots()
    axes.stairs(dist["old"], dist["edges"], label=f"OLD {paired.old.describe()}",
                color=OLD_COLOUR, linewidth=2)  # fmt: skip
    axes.stairs(dist["new"], dist["edges"], label=f"NEW {paired.new.describe()}",
                color=NEW_COLOUR, linewidth=2, linestyle="--")  # fmt: skip
    axes.set_xlabel(dist["kind"])
    axes.set_ylabel("rows")
    axes.legend()
    return figure


def _calibration_plot(comparison: Comparison) -> Figure:
    curves = comparison.calibration or {}
    paired = comparison.paired
    figure = _new_figure(5.5, 5)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="#999", linestyle=":", label="perfectly calibrated")
    for key, colour, side in (("old", OLD_COLOUR, paired.old), ("new", NEW_COLOUR, paired.new)):
        curve = curves.get(key) or {}
        axes.plot(curve.get("predicted", []), curve.get("observed", []), marker="o",
                  color=colour, label=f"{key.upper()} {side.describe()}")  # fmt: skip
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed frequency")
    axes.legend(loc="upper left")
    return figure


def _segment_plot(comparison: Comparison, field_name: str, deltas: list[str]) -> Figure:
    """Small multiples: one panel per difference, a row per segment (overall on top)."""
    results = [comparison.overall, *(s for s in comparison.segments if s.field == field_name)]
    columns = min(3, len(deltas))
    rows = math.ceil(len(deltas) / columns)
    figure = _new_figure(12, rows * (1.0 + 0.3 * len(results)))
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    names = [_short(r.name if r.field is None else r.value or "") for r in results]
    for panel, axes in enumerate(grid.flat):
        if panel >= len(deltas):
            axes.set_visible(False)
            continue
        delta = deltas[panel]
        tolerance = None
        for y, result in enumerate(reversed(results)):
            check = result.check(delta)
            _segment_point(axes, y, result, check)
            if check is not None:
                tolerance = check.tolerance
        axes.axvline(0, color="#999", linewidth=1)
        if tolerance is not None:
            axes.axvline(tolerance, color=FLAG_COLOUR, linestyle="--", linewidth=1)
        axes.set_yticks(range(len(results)), list(reversed(names)))
        axes.set_title(delta, fontsize=10)
    return figure


def _segment_point(axes: Any, y: int, result: SegmentResult, check: Check | None) -> None:
    if check is None or check.value is None:
        return
    colour = FLAG_COLOUR if check.flagged else ("#333" if result.field is None else OLD_COLOUR)
    if check.interval is not None:
        low, high = check.interval
        axes.errorbar([check.value], [y], xerr=[[max(check.value - low, 0.0)],
                      [max(high - check.value, 0.0)]], fmt="o", color=colour, capsize=3)  # fmt: skip
    else:
        axes.plot([check.value], [y], "o", color=colour)


# --- formatting -------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}"


def _ci(interval: Iterable[float] | None) -> str:
    if interval is None:
        return "–"
    low, high = interval
    return f"[{_n(low)}, {_n(high)}]"


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
