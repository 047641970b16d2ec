"""``rtserve predict``: offline predictions for a file of rows, streamed in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtserve.bundle.schema import FieldType
from rtserve.cli.output import print_note
from rtserve.cli.tables import STDOUT, Batch, prediction_writer, read_batches
from rtserve.engine.loader import load
from rtserve.engine.predictions import Predictions
from rtserve.engine.predictor import Predictor
from rtserve.errors import FieldViolation, MalformedRequestError, ValidationError

DEFAULT_BATCH_SIZE = 1024


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
) -> None:
    """Predict every row of a file with a bundle, offline (no server).

    Writes one output per input row, in order: JSON lines {"label", "probabilities"} for a
    classifier or {"value"} for a regressor; csv/parquet get `label` + `proba_<class>` (or `value`)
    columns. A row that breaks the schema stops the run with exit code 1, naming its row
    (0-based) and field(s); an output file is only written when every row succeeded.

    Example:

        rtserve predict bundles/fraud-1 --input rows.csv --output scores.parquet
    """
    predictor = load(
        bundle, trust_pickle=trust_pickle, pinned_digest=pin_digest, strict_versions=strict_versions
    )
    string_fields = [s.name for s in predictor.schema.inputs if s.type is FieldType.STRING]
    rows = 0
    with prediction_writer(output) as writer:
        for batch in read_batches(input_file, batch_size, string_fields):
            writer.write(_predict_batch(predictor, batch))
            rows += len(batch.rows)
        if rows == 0:
            raise MalformedRequestError(f"{input_file}: the file holds no rows to predict")
    if output != STDOUT:
        print_note(f"wrote {rows} predictions to {output}")


def _predict_batch(predictor: Predictor, batch: Batch) -> Predictions:
    """Predict one batch; violations name rows by their position in the whole file."""
    try:
        return predictor.predict(batch.rows)
    except ValidationError as exc:
        if batch.start == 0:
            raise
        shifted = [
            FieldViolation(
                v.field, v.rule, v.message, None if v.row is None else v.row + batch.start
            )
            for v in exc.violations
        ]
        raise ValidationError(shifted) from exc


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root command."""
    app.command("predict")(predict)
