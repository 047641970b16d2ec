"""``rtserve predict``: offline predictions for a file of rows, streamed in batches."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
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

from rtserve.bundle.schema import FieldType
from rtserve.cli.output import print_note, print_warning, stderr
from rtserve.cli.tables import STDOUT, Batch, prediction_writer, read_batches, total_rows
from rtserve.engine.loader import load
from rtserve.engine.predictions import Predictions
from rtserve.engine.predictor import Predictor
from rtserve.errors import FieldViolation, MalformedRequestError, ValidationError

DEFAULT_BATCH_SIZE = 1024


class OnInvalid(StrEnum):
    """What ``rtserve predict`` does with a row that breaks the schema."""

    FAIL = "fail"
    SKIP = "skip"
    REJECT_FILE = "reject-file"


def predict(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory or .tar.gz.", show_default=False)
    ],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Rows to predict: .jsonl (one JSON object per line), .csv or .parquet.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: .jsonl, .csv or .parquet; '-' for JSON lines on stdout.",
        ),
    ] = STDOUT,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows validated and predicted at a time.")
    ] = DEFAULT_BATCH_SIZE,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", help="Allow a pickle bundle to load (runs code from the bundle)."
        ),
    ] = False,
    pin_digest: Annotated[
        str | None,
        typer.Option(
            "--pin-digest",
            metavar="sha256:HEX",
            help="The bundle digest you expect; required with --trust-pickle.",
        ),
    ] = None,
    strict_versions: Annotated[
        bool,
        typer.Option(
            "--strict-versions", help="Refuse, rather than warn, on framework version mismatch."
        ),
    ] = False,
    on_invalid: Annotated[
        OnInvalid,
        typer.Option(
            "--on-invalid",
            help="A row that breaks the schema: `fail` stops the run (nothing is written), "
            "`skip` leaves it out of the output, `reject-file` leaves it out and writes it with "
            "its row number and reasons to --rejects.",
            case_sensitive=False,
        ),
    ] = OnInvalid.FAIL,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            dir_okay=False,
            help="JSON-lines file for rejected rows with --on-invalid reject-file "
            "(default: OUTPUT.rejects.jsonl).",
            show_default=False,
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="An input column copied to the first column of the output (and of each "
            "rejected row), so outputs can be joined back by key rather than by position. It is "
            "not given to the model unless the schema has a field of that name.",
            show_default=False,
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show rows done and rows/s on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict every row of a file with a bundle, offline (no server).

    Writes one output per valid input row, in input order: JSON lines {"label", "probabilities"}
    for a classifier or {"value"} for a regressor; csv/parquet get `label` + `proba_<class>` (or
    `value`) columns; `--id-column` puts an input column first. With the default `--on-invalid
    fail`, a row that breaks the schema stops the run with exit code 1, naming its row (0-based)
    and field(s), and no output file is written.

    Example:

        rtserve predict bundles/fraud-1 --input rows.parquet --output scores.parquet --id-column tx_id --on-invalid reject-file
    """
    if on_invalid is OnInvalid.REJECT_FILE and rejects is None:
        if output == STDOUT:
            raise typer.BadParameter(
                "with --output '-' (stdout), name the rejects file", param_hint="--rejects"
            )
        rejects = Path(f"{output}.rejects.jsonl")
    predictor = load(
        bundle, trust_pickle=trust_pickle, pinned_digest=pin_digest, strict_versions=strict_versions
    )
    string_fields = [s.name for s in predictor.schema.inputs if s.type is FieldType.STRING]
    if id_column is not None:
        string_fields.append(id_column)  # keys such as "00123" stay text when read from csv
    scorer = _Scorer(predictor, on_invalid, id_column)
    show = progress if progress is not None else stderr().is_terminal
    with (
        prediction_writer(output, id_column=id_column) as writer,
        _rejects_writer(rejects) as write_rejects,
        _progress(show, total_rows(input_file)) as advance,
    ):
        for batch in read_batches(input_file, batch_size, string_fields):
            scored = scorer.score(batch)
            if scored.predictions is not None:
                writer.write(scored.predictions, scored.ids)
            write_rejects(scored.rejects)
            advance(batch.size)
        if scorer.rows == 0:
            raise MalformedRequestError(f"{input_file}: the file holds no rows to predict")
    _summarize(scorer, output, rejects)


@dataclass(frozen=True)
class Scored:
    """One batch's outcome: predictions of its valid rows, their ids, and its rejected rows."""

    predictions: Predictions | None
    ids: list[Any] | None
    rejects: list[dict[str, Any]]


class _Scorer:
    """Validates and predicts batches, setting invalid rows aside unless told to fail."""

    def __init__(self, predictor: Predictor, on_invalid: OnInvalid, id_column: str | None) -> None:
        self._predictor = predictor
        self._on_invalid = on_invalid
        self._id_column = id_column
        self._id_is_input = id_column in predictor.schema.field_names
        self.rows = 0
        self.predicted = 0
        self.rejected: list[dict[str, Any]] = []  # the first few, for the summary
        self.rejected_count = 0

    def score(self, batch: Batch) -> Scored:
        rows, ids = self._split_ids(batch)
        self.rows += batch.size
        try:
            predictions = self._predictor.predict(rows)
        except ValidationError as exc:
            violations = _shifted(exc, batch.start)
            if self._on_invalid is OnInvalid.FAIL:
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
def _rejects_writer(path: Path | None) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
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
def _progress(show: bool, total: int | None) -> Iterator[Callable[[int], None]]:
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


def _summarize(scorer: _Scorer, output: str, rejects: Path | None) -> None:
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


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root command."""
    app.command("predict")(predict)
