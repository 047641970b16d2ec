"""How ``rtserve predict`` and ``rtserve batch`` show their work: the progress line and the
closing summary. The scoring itself (batches validated and predicted, invalid rows set aside,
ids carried through) is ``rtserve.deploy.batch``'s. Imported when a command runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rtserve.cli.output import STDOUT, print_note, print_warning, stderr
from rtserve.deploy.batch import Scored, Scorer, rejects_writer

__all__ = ["Scored", "Scorer", "progress_line", "rejects_writer", "summarize"]


@contextmanager
def progress_line(
    show: bool, total: int | None, label: str = "predict"
) -> Iterator[Callable[[int], None]]:
    """A progress line on stderr (rows, rows/s, and a bar with ETA when the total is known)."""
    if not show:
        yield lambda rows: None
        return
    columns: list[Any] = [TextColumn("{task.completed:,.0f} rows"), _RateColumn()]
    if total is not None:
        columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=stderr(), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda rows: bar.advance(task, rows)


class _RateColumn(ProgressColumn):
    """Rows per second since the start."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")


def summarize(scorer: Scorer, output: str, rejects: Path | None) -> None:
    """The closing lines on stderr: rows left out (the first few with reasons), rows written."""
    if scorer.rejected_count:
        where = f"; written with their reasons to {rejects}" if rejects is not None else ""
        print_warning(
            f"{scorer.rejected_count} of {scorer.rows} rows broke the schema and were left out{where}"
        )
        for reject in scorer.rejected:
            reasons = "; ".join(v["error"] for v in reject["violations"])
            print_note(f"  row {reject['row']}: {reasons}")
        if scorer.rejected_count > len(scorer.rejected):
            print_note(f"  … and {scorer.rejected_count - len(scorer.rejected)} more")
    if output != STDOUT:
        print_note(f"wrote {scorer.predicted} predictions to {output}")
