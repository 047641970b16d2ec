"""Table files for the CLI: training samples and prediction inputs in, predictions out.

Inputs are read in batches so that a file larger than memory streams through ``rtserve predict``;
outputs are written beside their target and renamed into place only when every row succeeded.
The reading and writing live in ``rtserve.deploy.batch`` (shared with ``rtserve batch``); this
module adds what a command line needs: a wrong extension is a usage error (exit 2) naming the
option, and ``-`` means stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import typer

from rtserve.cli.output import STDOUT
from rtserve.deploy import batch
from rtserve.deploy.batch import Batch, Format, PredictionWriter
from rtserve.errors import MalformedRequestError

__all__ = [
    "Batch",
    "PredictionWriter",
    "prediction_writer",
    "read_batches",
    "read_sample",
    "table_format",
    "total_rows",
]

_FORMATS = batch.FORMATS


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


def total_rows(path: Path) -> int | None:
    """Rows in an input file when its metadata says so (parquet), without reading the data."""
    table_format(path, ("jsonl", "csv", "parquet"), "--input")
    return batch.total_rows(path)


def read_batches(path: Path, batch_size: int, string_fields: list[str]) -> Iterator[Batch]:
    """Stream an input file in batches of at most ``batch_size`` rows (``rtserve.deploy.batch``).

    ``string_fields`` are read as text from csv, so that e.g. a zip code ``01234`` stays a string.
    """
    table_format(path, ("jsonl", "csv", "parquet"), "--input")
    return batch.read_batches(path, batch_size, string_fields)


@contextmanager
def prediction_writer(
    target: str, *, id_column: str | None = None, empty: pd.DataFrame | None = None
) -> Iterator[PredictionWriter]:
    """A writer to ``target`` (a path, or ``-`` for JSON lines on stdout).

    With ``id_column``, each output starts with that column, holding the ids given to ``write``;
    ``empty`` gives the columns of a csv or parquet file no row reaches (all rejected).

    A file appears only when every batch was written: it is written beside the target under a
    temporary name and renamed at the end; on failure the partial file is removed.
    """
    if target == STDOUT:
        yield batch.JsonlWriter(sys.stdout, id_column)
        sys.stdout.flush()
        return
    path = Path(target)
    table_format(path, ("jsonl", "csv", "parquet"), "--output")
    with batch.table_writer(path, id_column=id_column, empty=empty) as writer:
        yield writer
