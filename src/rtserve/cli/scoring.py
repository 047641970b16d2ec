"""How ``rtserve predict`` scores a file: batches validated and predicted, invalid rows set aside,
ids carried through, progress and the closing summary. Imported when the command runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
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
from rtserve.cli.tables import Batch
from rtserve.engine.predictions import Predictions
from rtserve.engine.predictor import Predictor
from rtserve.errors import FieldViolation, MalformedRequestError, ValidationError


@dataclass(frozen=True)
class Scored:
    """One batch's outcome: predictions of its valid rows, their ids, and its rejected rows."""

    predictions: Predictions | None
    ids: list[Any] | None
    rejects: list[dict[str, Any]]


class Scorer:
    """Validates and predicts batches, setting invalid rows aside unless told to fail."""

    def __init__(self, predictor: Predictor, *, fail: bool, id_column: str | None) -> None:
        self._predictor = predictor
        self._fail = fail
        self._id_column = id_column
        self._id_is_input = id_column in predictor.schema.field_names
        self.rows = 0
        self.predicted = 0
        self.rejected: list[dict[str, Any]] = []  # the first few, for the summary
        self.rejected_count = 0

    def score(self, batch: Batch) -> Scored:
        """Predict one batch; its invalid rows raise (``fail``) or come back as rejects."""
        rows, ids = self._split_ids(batch)
        self.rows += batch.size
        try:
            predictions = self._predictor.predict(rows)
        except ValidationError as exc:
            violations = _shifted(exc, batch.start)
            if self._fail:
                raise ValidationError(violations) from exc
            return self._score_valid_rows(batch, rows, ids, violations)
        self.predicted += len(predictions)
        return Scored(predictions, ids, [])

    def _score_valid_rows(
        self,
        batch: Batch,
        rows: list[dict[str, Any]] | pd.DataFrame,
        ids: list[Any] | None,
        violations: list[FieldViolation],
    ) -> Scored:
        by_row: dict[int, list[FieldViolation]] = {}
        for violation in violations:
            # A violation without a row (e.g. a column missing from a csv) concerns every row.
            positions = (
                range(batch.size) if violation.row is None else [violation.row - batch.start]
            )
            for position in positions:
                by_row.setdefault(position, []).append(violation)
        keep = [i for i in range(batch.size) if i not in by_row]
        rejects = [
            {
                **({self._id_column: ids[i]} if ids is not None and self._id_column else {}),
                "row": batch.start + i,
                "violations": [
                    {"field": v.field, "rule": v.rule, "error": v.message} for v in found
                ],
            }
            for i, found in sorted(by_row.items())
        ]
        self.rejected_count += len(rejects)
        self.rejected.extend(rejects[: _SUMMARY_REJECTS - len(self.rejected)])
        if not keep:
            return Scored(None, None, rejects)
        predictions = self._predictor.predict(_take(rows, keep))
        self.predicted += len(predictions)
        return Scored(predictions, None if ids is None else [ids[i] for i in keep], rejects)

    def _split_ids(
        self, batch: Batch
    ) -> tuple[list[dict[str, Any]] | pd.DataFrame, list[Any] | None]:
        """The rows for the model and the id column's values (None without ``--id-column``)."""
        name = self._id_column
        if name is None:
            return batch.rows, None
        if isinstance(batch.rows, pd.DataFrame):
            if name not in batch.rows.columns:
                raise _missing_id(name, batch.start)
            ids = batch.rows[name].tolist()
            return (batch.rows if self._id_is_input else batch.rows.drop(columns=[name])), ids
        ids = []
        rows = []
        for offset, record in enumerate(batch.rows):
            if name not in record:
                raise _missing_id(name, batch.start + offset)
            ids.append(record[name])
            rows.append(
                record if self._id_is_input else {k: v for k, v in record.items() if k != name}
            )
        return rows, ids


#: Rejected rows shown in the summary line(s) after a run.
_SUMMARY_REJECTS = 5


def _missing_id(name: str, row: int) -> MalformedRequestError:
    return MalformedRequestError(
        f"row {row} has no {name!r} column, which --id-column names; every input row needs it",
        field=name,
    )


def _take(
    rows: list[dict[str, Any]] | pd.DataFrame, keep: list[int]
) -> list[dict[str, Any]] | pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows.iloc[keep]
    return [rows[i] for i in keep]


def _shifted(exc: ValidationError, start: int) -> list[FieldViolation]:
    """Violations with rows numbered by their position in the whole file."""
    return [
        FieldViolation(v.field, v.rule, v.message, None if v.row is None else v.row + start)
        for v in exc.violations
    ]


@contextmanager
def rejects_writer(path: Path | None) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """A function that appends rejected rows to ``path`` as JSON lines (a no-op without one)."""
    if path is None:
        yield lambda rows: None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:

        def write(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

        yield write


@contextmanager
def progress_line(show: bool, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress line on stderr (rows, rows/s, and a bar with ETA when the total is known)."""
    if not show:
        yield lambda rows: None
        return
    columns: list[Any] = [TextColumn("{task.completed:,.0f} rows"), _RateColumn()]
    if total is not None:
        columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=stderr(), transient=False) as bar:
        task = bar.add_task("predict", total=total)
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
