"""Batch scoring of table files, on one machine or on a Dask cluster (``rtserve batch``).

One code path reads and scores, for ``rtserve predict`` and ``rtserve batch`` alike: input files
(parquet, CSV, JSON Lines) are streamed in batches (``read_batches``), each batch validated and
predicted with its invalid rows set aside with their reasons (``Scorer``), ids passed through,
and outputs written under a temporary name and renamed into place only when complete
(``table_writer``).

``run_batch`` splits the inputs into pieces (a run of parquet row groups, or a whole CSV/JSONL
file), scores each piece in batches of ``batch_size`` rows and writes one output file per input
file, at the same relative path under the output directory. With ``engine="dask"`` the pieces
are scored on the cluster's workers (each loads the bundle once, pinned to the digest the client
verified) and come back to the client, which writes them in input order with the same writers:
the same pieces in the same batches give the same bytes as the one-machine run. Memory stays
bounded by the batch size (reading), by one row group (writing parquet) and by a window of pieces
in flight (Dask); nothing holds a whole file, and nothing grows with it.

Dask is an optional extra, imported inside ``run_batch`` only when asked for.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import pandas as pd

from rtserve.bundle.schema import FieldType
from rtserve.engine.loader import load
from rtserve.engine.predictions import Predictions
from rtserve.engine.predictor import Predictor
from rtserve.errors import BatchError, FieldViolation, MalformedRequestError, ValidationError
from rtserve.jsonlines import json_objects

Format = Literal["jsonl", "csv", "parquet"]
#: File extensions rtserve reads and writes tables in, and the format each names.
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Rows validated and predicted at a time (``--batch-size``).
DEFAULT_BATCH_SIZE = 1024
#: Parquet rows one piece (a Dask task) covers at most, unless one row group alone is larger.
DEFAULT_ROWS_PER_TASK = 131_072
#: ``--engine dask``: pieces in flight per worker thread; bounds the client's memory.
IN_FLIGHT_PER_THREAD = 2
#: Seconds to wait for the Dask scheduler to answer before giving up.
SCHEDULER_TIMEOUT_S = 30.0
#: The rejects file written into the output directory unless ``rejects`` names another. Its
#: leading underscore makes parquet readers (pyarrow, Spark) skip it when reading the directory.
DEFAULT_REJECTS_NAME = "_rejects.jsonl"
#: Rejected rows kept in memory for the closing summary.
SUMMARY_REJECTS = 5
#: Rows per row group of a parquet output, whatever the batch size: few enough row groups that
#: the footer the writer keeps in memory stays small, and a common size for readers.
OUTPUT_ROW_GROUP_ROWS = 65_536
#: Where ``pip`` finds Dask for ``--engine dask``.
DASK_HINT = 'pip install "rtserve[dask]"'

Engine = Literal["local", "dask"]


def format_of(path: Path) -> Format | None:
    """The table format a file's extension names, or None for any other file."""
    return FORMATS.get(path.suffix.lower())


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Consecutive input rows; ``start`` is the position of the first one in the file (0-based)."""

    start: int
    rows: list[dict[str, Any]] | pd.DataFrame

    @property
    def size(self) -> int:
        """Rows in this batch."""
        return len(self.rows)


def total_rows(path: Path) -> int | None:
    """Rows in an input file when its metadata says so (parquet), without reading the data."""
    if format_of(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None  # read_batches reports an unreadable file with a proper sentence


def read_batches(
    path: Path,
    batch_size: int,
    string_fields: list[str],
    *,
    row_groups: tuple[int, ...] | None = None,
    start: int = 0,
) -> Iterator[Batch]:
    """Stream an input file in batches of at most ``batch_size`` rows.

    ``string_fields`` are read as text from csv, so that e.g. a zip code ``01234`` stays a string.
    ``row_groups`` (parquet) reads only those row groups, whose first row is row ``start`` of the
    file, so that rows keep their position in the whole file.
    """
    fmt = format_of(path)
    if fmt is None:
        raise MalformedRequestError(
            f"{path}: not a table file; expected a name ending in {', '.join(FORMATS)}"
        )
    try:
        if fmt == "jsonl":
            yield from _jsonl_batches(path, batch_size)
        elif fmt == "csv":
            dtypes = dict.fromkeys(string_fields, "str")
            with pd.read_csv(path, chunksize=batch_size, dtype=dtypes) as chunks:
                for chunk in chunks:
                    yield Batch(start, chunk)
                    start += len(chunk)
        else:
            import pyarrow.parquet as pq

            groups = list(row_groups) if row_groups is not None else None
            with pq.ParquetFile(path) as parquet:
                for record_batch in parquet.iter_batches(batch_size=batch_size, row_groups=groups):
                    frame = record_batch.to_pandas()
                    yield Batch(start, frame)
                    start += len(frame)
    except MalformedRequestError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas/pyarrow parse errors
        raise MalformedRequestError(
            f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})"
        ) from exc


def _jsonl_batches(path: Path, batch_size: int) -> Iterator[Batch]:
    rows: list[dict[str, Any]] = []
    start = 0
    with path.open(encoding="utf-8") as handle:
        for record in json_objects(handle, str(path), MalformedRequestError):
            rows.append(record)
            if len(rows) == batch_size:
                yield Batch(start, rows)
                start += len(rows)
                rows = []
    if rows:
        yield Batch(start, rows)


def string_fields(predictor: Predictor, id_column: str | None) -> list[str]:
    """Fields read as text from csv: the schema's strings, and the id (keys like ``00123``)."""
    names = [s.name for s in predictor.schema.inputs if s.type is FieldType.STRING]
    if id_column is not None:
        names.append(id_column)
    return names


# --- scoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One batch's outcome: predictions of its valid rows, their ids, and its rejected rows."""

    predictions: Predictions | None
    ids: list[Any] | None
    rejects: list[dict[str, Any]]

    @property
    def rows(self) -> int:
        """Input rows of the batch: each was either predicted or rejected."""
        return (0 if self.predictions is None else len(self.predictions)) + len(self.rejects)


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
        self.rejected.extend(rejects[: SUMMARY_REJECTS - len(self.rejected)])
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


def empty_output(predictor: Predictor) -> pd.DataFrame:
    """The output columns with no rows, so a file whose rows were all rejected is still a valid
    table with the usual header (csv) or schema (parquet); taken from the validation sample."""
    sample = predictor.bundle.read_validation()
    frame: pd.DataFrame = predictor.predict_columns(
        predictor.validator.columns(sample.inputs)
    ).to_frame()
    return frame.iloc[:0]


# --- writing --------------------------------------------------------------------------------


class PredictionWriter(Protocol):
    """Writes the predictions of consecutive batches to one destination."""

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        """Append one batch's predictions, one output per row, each after its id if given."""


class JsonlWriter:
    """Predictions as JSON lines: ``{"label", "probabilities"}`` or ``{"value"}``, id first."""

    def __init__(self, stream: IO[str], id_column: str | None) -> None:
        self._stream = stream
        self._id_column = id_column

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        """Append one line per row."""
        records = predictions.to_records()
        if self._id_column is not None and ids is not None:
            records = [{self._id_column: key, **r} for key, r in zip(ids, records, strict=True)]
        for record in records:
            self._stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _frame(predictions: Predictions, id_column: str | None, ids: list[Any] | None) -> pd.DataFrame:
    frame: pd.DataFrame = predictions.to_frame()
    if id_column is not None and ids is not None:
        frame.insert(0, id_column, ids)
    return frame


def _with_id(empty: pd.DataFrame, id_column: str | None, id_dtype: Any) -> pd.DataFrame:
    if id_column is None or id_column in empty.columns:
        return empty
    frame = empty.copy()
    frame.insert(0, id_column, pd.Series([], dtype=id_dtype))
    return frame


class _CsvWriter:
    def __init__(self, stream: IO[str], id_column: str | None) -> None:
        self._stream = stream
        self._id_column = id_column
        self._header = True

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        self.write_frame(_frame(predictions, self._id_column, ids))

    def write_frame(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self._stream, header=self._header, index=False)
        self._header = False

    def close(self, empty: pd.DataFrame | None) -> None:
        if self._header and empty is not None:  # nothing written: the header alone
            self.write_frame(empty)


class _ParquetWriter:
    """Batches gathered into row groups of ``OUTPUT_ROW_GROUP_ROWS`` rows.

    Writing each batch as its own row group would make the writer's footer (kept in memory
    until ``close``) grow with every batch: about 7 MiB per million rows at 1024 rows a batch.
    """

    def __init__(self, path: Path, id_column: str | None) -> None:
        self._path = path
        self._id_column = id_column
        self._writer: Any = None
        self._pending: list[Any] = []  # pyarrow tables not yet written, in the writer's schema
        self._pending_rows = 0

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        self.write_frame(_frame(predictions, self._id_column, ids))

    def write_frame(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema)
        else:
            table = table.cast(self._writer.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= OUTPUT_ROW_GROUP_ROWS:
            self._flush(whole_groups_only=True)

    def _flush(self, *, whole_groups_only: bool) -> None:
        """Write the pending rows (only whole row groups, keeping the rest, if asked)."""
        import pyarrow as pa

        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        ready = table.num_rows
        if whole_groups_only:
            ready -= ready % OUTPUT_ROW_GROUP_ROWS
        self._writer.write_table(table.slice(0, ready), row_group_size=OUTPUT_ROW_GROUP_ROWS)
        # A copy of the rest, so that the batches written so far are freed, not kept alive by it.
        rest = table.slice(ready).combine_chunks()
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self, empty: pd.DataFrame | None) -> None:
        if self._writer is None and empty is not None:  # nothing written: the schema alone
            self.write_frame(empty)
        if self._writer is not None:
            self._flush(whole_groups_only=False)
            self._writer.close()


@contextmanager
def table_writer(
    path: Path,
    *,
    id_column: str | None = None,
    empty: pd.DataFrame | None = None,
    id_dtype: Any = "object",
) -> Iterator[PredictionWriter]:
    """A writer of predictions to ``path`` (.jsonl, .csv or .parquet, by its extension).

    With ``id_column``, each output starts with that column, holding the ids given to ``write``.
    ``empty`` (``empty_output``) gives the columns a file gets when no row was written: a csv
    header, a parquet schema (its id column of ``id_dtype``).

    A file appears only when every batch was written: it is written beside the target under a
    temporary name and renamed at the end; on failure the partial file is removed.
    """
    fmt = format_of(path)
    if fmt is None:
        raise MalformedRequestError(
            f"{path}: not a table file; expected a name ending in {', '.join(FORMATS)}"
        )
    template = None if empty is None else _with_id(empty, id_column, id_dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        if fmt == "parquet":
            parquet = _ParquetWriter(partial, id_column)
            try:
                yield parquet
            finally:
                parquet.close(template)
        else:
            with partial.open("w", encoding="utf-8", newline="") as stream:
                if fmt == "jsonl":
                    yield JsonlWriter(stream, id_column)
                else:
                    csv = _CsvWriter(stream, id_column)
                    yield csv
                    csv.close(template)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


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


# --- the batch job --------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One input file and where its output goes (the same relative path under the output)."""

    path: Path
    relative: str
    target: Path


@dataclass(frozen=True)
class Piece:
    """A unit of work: parquet row groups ``row_groups`` of a file (its rows from ``start``), or
    a whole CSV/JSONL file (``row_groups`` None)."""

    file: int  # index into the job's files
    path: Path
    start: int = 0
    row_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Loading:
    """How a worker loads the bundle: the path and the digest the client verified."""

    bundle: str
    digest: str
    trust_pickle: bool
    strict_versions: bool


@dataclass
class BatchSummary:
    """What a run did: files written, rows read, predicted and rejected (the first few kept)."""

    outputs: list[Path] = field(default_factory=list)
    rejects_path: Path | None = None
    rows: int = 0
    predicted: int = 0
    rejected: int = 0
    first_rejects: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, relative: str, scored: Scored) -> list[dict[str, Any]]:
        """Count one scored batch; its rejects, each naming the input file."""
        self.rows += scored.rows
        self.predicted += 0 if scored.predictions is None else len(scored.predictions)
        rejects = [{"file": relative, **r} for r in scored.rejects]
        self.rejected += len(rejects)
        self.first_rejects.extend(rejects[: SUMMARY_REJECTS - len(self.first_rejects)])
        return rejects


def resolve_inputs(source: str, output_dir: Path, *, overwrite: bool = False) -> list[InputFile]:
    """The table files ``source`` names and their outputs under ``output_dir``.

    ``source`` is a file, a directory (its table files, recursively; names starting with ``.`` or
    ``_``, such as ``_SUCCESS``, are skipped) or a glob pattern (``**`` recurses). Outputs keep
    the path relative to the directory (or the pattern's fixed leading directories), so a
    partitioned layout such as ``day=2024-01-01/part-0.parquet`` is reproduced.
    """
    path = Path(source)
    if glob.has_magic(source):
        root = _fixed_prefix(source)
        matched = sorted(Path(p) for p in glob.glob(source, recursive=True))
        files = [p for p in matched if p.is_file()]
        odd = [p for p in files if format_of(p) is None]
        if odd:
            raise BatchError(
                f"--input {source!r} matches {odd[0]}, which is not a table file; narrow the "
                f"pattern to names ending in {', '.join(FORMATS)}",
                field="input",
            )
    elif path.is_dir():
        root = path
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and format_of(p) is not None
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
    elif path.is_file():
        if format_of(path) is None:
            raise BatchError(
                f"--input {source!r} is not a table file; expected a name ending in "
                f"{', '.join(FORMATS)}",
                field="input",
            )
        root, files = path.parent, [path]
    else:
        raise BatchError(
            f"--input {source!r}: no such file or directory, and not a glob pattern",
            field="input",
        )
    if not files:
        raise BatchError(
            f"--input {source!r} names no table file (ending in {', '.join(FORMATS)})",
            field="input",
        )
    inputs = [
        InputFile(p, p.relative_to(root).as_posix(), output_dir / p.relative_to(root))
        for p in files
    ]
    _check_targets(inputs, overwrite)
    return inputs


def _fixed_prefix(pattern: str) -> Path:
    """The leading directories of a glob pattern that hold no wildcard."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def _check_targets(inputs: list[InputFile], overwrite: bool) -> None:
    sources = {i.path.resolve() for i in inputs}
    for item in inputs:
        if item.target.resolve() in sources:
            raise BatchError(
                f"--output would write {item.target} over an input file; choose an output "
                "directory outside the inputs",
                field="output",
            )
        if item.target.exists() and not overwrite:
            raise BatchError(
                f"{item.target} exists (from an earlier run?); remove it, choose another "
                "--output directory, or pass --overwrite",
                field="output",
            )


def expected_rows(inputs: list[InputFile]) -> int | None:
    """Rows of all inputs when every file's metadata tells it (parquet only), else None."""
    total = 0
    for item in inputs:
        rows = total_rows(item.path)
        if rows is None:
            return None
        total += rows
    return total


def plan_pieces(inputs: list[InputFile], rows_per_task: int) -> list[Piece]:
    """Pieces in input order: parquet row groups gathered up to ``rows_per_task`` rows each (a
    row group is never split), one piece per CSV/JSONL file."""
    import pyarrow.parquet as pq

    pieces: list[Piece] = []
    for index, item in enumerate(inputs):
        if format_of(item.path) != "parquet":
            pieces.append(Piece(index, item.path))
            continue
        try:
            metadata = pq.read_metadata(item.path)
        except (OSError, ValueError) as exc:
            raise MalformedRequestError(
                f"{item.path}: cannot read it as parquet ({type(exc).__name__}: {exc})"
            ) from exc
        start, groups, rows = 0, [], 0
        for group in range(metadata.num_row_groups):
            groups.append(group)
            rows += metadata.row_group(group).num_rows
            if rows >= rows_per_task:
                pieces.append(Piece(index, item.path, start, tuple(groups)))
                start, groups, rows = start + rows, [], 0
        if groups or start == 0:  # an empty file still gets its (empty) output
            pieces.append(Piece(index, item.path, start, tuple(groups)))
    return pieces


def score_piece(
    predictor: Predictor, piece: Piece, *, batch_size: int, id_column: str | None
) -> Iterator[Scored]:
    """Score one piece in batches of ``batch_size`` rows, invalid rows set aside."""
    scorer = Scorer(predictor, fail=False, id_column=id_column)
    fields = string_fields(predictor, id_column)
    for batch in read_batches(
        piece.path, batch_size, fields, row_groups=piece.row_groups, start=piece.start
    ):
        yield scorer.score(batch)


# A worker's loaded bundles, by how they were loaded: each Dask worker process loads a bundle
# once, however many pieces it scores.
_PREDICTORS: dict[Loading, Predictor] = {}
_PREDICTORS_LOCK = threading.Lock()


def cached_predictor(loading: Loading) -> Predictor:
    """The bundle loaded once per process, pinned to the digest the client verified."""
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(loading)
        if predictor is None:
            predictor = load(
                loading.bundle,
                trust_pickle=loading.trust_pickle,
                pinned_digest=loading.digest,
                strict_versions=loading.strict_versions,
            )
            _PREDICTORS[loading] = predictor
        return predictor


def loaded_bundles() -> int:
    """Bundles loaded in this process (a test asks each Dask worker)."""
    return len(_PREDICTORS)


def _score_piece_task(
    loading: Loading, piece: Piece, batch_size: int, id_column: str | None
) -> list[Scored]:
    """A Dask task: one piece scored on a worker, its outcomes sent back to the client."""
    predictor = cached_predictor(loading)
    return list(score_piece(predictor, piece, batch_size=batch_size, id_column=id_column))


def run_batch(
    bundle: Path,
    source: str,
    output_dir: Path,
    *,
    id_column: str | None = None,
    rejects: Path | None = None,
    engine: Engine = "local",
    scheduler: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rows_per_task: int = DEFAULT_ROWS_PER_TASK,
    overwrite: bool = False,
    trust_pickle: bool = False,
    pinned_digest: str | None = None,
    strict_versions: bool = False,
    on_rows: Callable[[int], None] = lambda rows: None,
) -> BatchSummary:
    """Score every row of the input files into ``output_dir``; see the module docstring.

    ``on_rows`` is called with each batch's row count as its output is written.

    Raises:
        BatchError: the inputs, the output directory, the engine or the scheduler are unusable.
        MalformedRequestError: an input cannot be read, or a row lacks the id column.
    """
    if batch_size < 1 or rows_per_task < 1:
        raise BatchError(
            f"batch size {batch_size} and rows per task {rows_per_task} must be at least 1",
            field="batch_size",
        )
    if engine == "dask" and not scheduler:
        raise BatchError(
            "--engine dask needs --scheduler tcp://HOST:PORT, the address of a running Dask "
            "scheduler (for one machine, use --engine local)",
            field="scheduler",
        )
    if engine == "local" and scheduler:
        raise BatchError("--scheduler is only used with --engine dask", field="scheduler")
    started = time.perf_counter()
    inputs = resolve_inputs(source, output_dir, overwrite=overwrite)
    predictor = load(
        bundle,
        trust_pickle=trust_pickle,
        pinned_digest=pinned_digest,
        strict_versions=strict_versions,
    )
    pieces = plan_pieces(inputs, rows_per_task)
    rejects_path = rejects if rejects is not None else output_dir / DEFAULT_REJECTS_NAME
    summary = BatchSummary(rejects_path=rejects_path)
    outputs = _Outputs(inputs, id_column, empty_output(predictor))
    with ExitStack() as stack:
        write_rejects = stack.enter_context(rejects_writer(rejects_path))
        stack.enter_context(outputs)
        if engine == "dask":
            assert scheduler is not None  # checked above  # noqa: S101
            loading = Loading(
                str(Path(bundle).resolve()), predictor.digest, trust_pickle, strict_versions
            )
            results: Iterable[tuple[Piece, Iterable[Scored]]] = _on_dask(
                scheduler, loading, pieces, batch_size, id_column
            )
        else:
            results = (
                (p, score_piece(predictor, p, batch_size=batch_size, id_column=id_column))
                for p in pieces
            )
        for piece, scored_batches in results:
            writer = outputs.writer(piece.file)
            for scored in scored_batches:
                if scored.predictions is not None:
                    writer.write(scored.predictions, scored.ids)
                write_rejects(summary.add(inputs[piece.file].relative, scored))
                on_rows(scored.rows)
        outputs.finish()
    summary.outputs = [i.target for i in inputs]
    summary.seconds = time.perf_counter() - started
    return summary


class _Outputs:
    """One output file per input file, opened in input order; each appears complete or not at
    all (a failed run removes its partial file)."""

    def __init__(self, inputs: list[InputFile], id_column: str | None, empty: pd.DataFrame) -> None:
        self._inputs = inputs
        self._id_column = id_column
        self._empty = empty
        self._current = -1
        self._writer: PredictionWriter | None = None
        self._stack = ExitStack()

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)  # on an error, the partial file is removed

    def writer(self, file: int) -> PredictionWriter:
        """The writer of input ``file``'s output; files before it are completed (even empty)."""
        while self._current < file:
            self._stack.close()
            self._current += 1
            item = self._inputs[self._current]
            self._writer = self._stack.enter_context(
                table_writer(
                    item.target,
                    id_column=self._id_column,
                    empty=self._empty,
                    id_dtype=_id_dtype(item.path, self._id_column),
                )
            )
        assert self._writer is not None  # noqa: S101
        return self._writer

    def finish(self) -> None:
        """Complete every remaining output file."""
        if self._inputs:
            self.writer(len(self._inputs) - 1)
        self._stack.close()


def _id_dtype(path: Path, id_column: str | None) -> Any:
    """The id column's type in a parquet input, for an output with no rows; object otherwise."""
    if id_column is None or format_of(path) != "parquet":
        return "object"
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).field(id_column).type.to_pandas_dtype()
    except (KeyError, NotImplementedError, OSError, ValueError):
        return "object"


def _on_dask(
    scheduler: str,
    loading: Loading,
    pieces: list[Piece],
    batch_size: int,
    id_column: str | None,
) -> Iterator[tuple[Piece, list[Scored]]]:
    """Pieces scored on a Dask cluster, yielded in input order with a bounded window in flight."""
    try:
        import distributed
    except ImportError as exc:
        raise BatchError(
            f"--engine dask needs Dask distributed, which is not installed: {DASK_HINT}",
            field="engine",
        ) from exc
    try:
        # distributed's Client is untyped; it is used through Any here.
        client_type: Any = distributed.Client
        client: Any = client_type(scheduler, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BatchError(
            f"--scheduler {scheduler}: cannot reach a Dask scheduler there within "
            f"{SCHEDULER_TIMEOUT_S:g} s ({type(exc).__name__}: {exc}); start one (`dask "
            "scheduler`) or check the address",
            field="scheduler",
        ) from exc
    with client:
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise BatchError(
                f"--scheduler {scheduler}: the Dask cluster has no workers; start some (`dask "
                f"worker {scheduler}`)",
                field="scheduler",
            )
        window = max(2, threads * IN_FLIGHT_PER_THREAD)
        queue: deque[tuple[Piece, Any]] = deque()
        todo = iter(pieces)
        try:
            for piece in todo:
                queue.append((piece, _submit(client, loading, piece, batch_size, id_column)))
                if len(queue) >= window:
                    break
            while queue:
                piece, future = queue.popleft()
                result: list[Scored] = future.result()
                following = next(todo, None)
                if following is not None:
                    queue.append(
                        (following, _submit(client, loading, following, batch_size, id_column))
                    )
                yield piece, result
        finally:
            for _, future in queue:
                future.cancel()


def _submit(
    client: Any, loading: Loading, piece: Piece, batch_size: int, id_column: str | None
) -> Any:
    # pure=False: a rerun after the input changed must not reuse a cached result.
    return client.submit(_score_piece_task, loading, piece, batch_size, id_column, pure=False)
