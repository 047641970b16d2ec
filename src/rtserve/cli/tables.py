"""Table files for the CLI: training samples and prediction inputs in, predictions out.

Inputs are read in batches so that a file larger than memory streams through ``rtserve predict``;
outputs are written beside their target and renamed into place only when every row succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import pandas as pd
import typer

from rtserve.cli.output import STDOUT
from rtserve.engine.predictions import Predictions
from rtserve.errors import MalformedRequestError
from rtserve.jsonlines import json_objects

Format = Literal["jsonl", "csv", "parquet"]
_FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def table_format(path: Path, allowed: tuple[Format, ...], option: str) -> Format:
    """The format a file's extension names; any other extension is a usage error (exit 2)."""
    found = _FORMATS.get(path.suffix.lower())
    if found is None or found not in allowed:
        names = ", ".join(s for s, f in _FORMATS.items() if f in allowed)
        raise typer.BadParameter(
            f"{path.name}: expected a file ending in {names}", param_hint=option
        )
    return found


def read_sample(path: Path) -> pd.DataFrame:
    """A whole training sample from parquet or csv."""
    fmt = table_format(path, ("parquet", "csv"), "--sample")
    try:
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a file they cannot parse
        raise MalformedRequestError(
            f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})"
        ) from exc


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
    if table_format(path, ("jsonl", "csv", "parquet"), "--input") != "parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None  # read_batches reports an unreadable file with a proper sentence


def read_batches(path: Path, batch_size: int, string_fields: list[str]) -> Iterator[Batch]:
    """Stream an input file in batches of at most ``batch_size`` rows.

    ``string_fields`` are read as text from csv, so that e.g. a zip code ``01234`` stays a string.
    """
    fmt = table_format(path, ("jsonl", "csv", "parquet"), "--input")
    try:
        if fmt == "jsonl":
            yield from _jsonl_batches(path, batch_size)
        elif fmt == "csv":
            start = 0
            dtypes = dict.fromkeys(string_fields, "str")
            with pd.read_csv(path, chunksize=batch_size, dtype=dtypes) as chunks:
                for chunk in chunks:
                    yield Batch(start, chunk)
                    start += len(chunk)
        else:
            import pyarrow.parquet as pq

            start = 0
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
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


class PredictionWriter(Protocol):
    """Writes the predictions of consecutive batches to one destination."""

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        """Append one batch's predictions, one output per row, each after its id if given."""


class _JsonlWriter:
    def __init__(self, stream: IO[str], id_column: str | None) -> None:
        self._stream = stream
        self._id_column = id_column

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
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


class _CsvWriter:
    def __init__(self, stream: IO[str], id_column: str | None) -> None:
        self._stream = stream
        self._id_column = id_column
        self._header = True

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        frame = _frame(predictions, self._id_column, ids)
        frame.to_csv(self._stream, header=self._header, index=False)
        self._header = False


class _ParquetWriter:
    def __init__(self, path: Path, id_column: str | None) -> None:
        self._path = path
        self._id_column = id_column
        self._writer: Any = None

    def write(self, predictions: Predictions, ids: list[Any] | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = _frame(predictions, self._id_column, ids)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema)
        else:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@contextmanager
def prediction_writer(target: str, *, id_column: str | None = None) -> Iterator[PredictionWriter]:
    """A writer to ``target`` (a path, or ``-`` for JSON lines on stdout).

    With ``id_column``, each output starts with that column, holding the ids given to ``write``.

    A file appears only when every batch was written: it is written beside the target under a
    temporary name and renamed at the end; on failure the partial file is removed.
    """
    if target == STDOUT:
        yield _JsonlWriter(sys.stdout, id_column)
        sys.stdout.flush()
        return
    path = Path(target)
    fmt = table_format(path, ("jsonl", "csv", "parquet"), "--output")
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
                parquet.close()
        else:
            with partial.open("w", encoding="utf-8", newline="") as stream:
                yield (
                    _JsonlWriter(stream, id_column)
                    if fmt == "jsonl"
                    else _CsvWriter(stream, id_column)
                )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
