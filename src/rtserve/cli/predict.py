"""``rtserve predict``: offline predictions for a file of rows, streamed in batches."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.options import PinDigest, StrictVersions, TrustPickle
from rtserve.cli.output import STDOUT, stderr
from rtserve.errors import MalformedRequestError

# pandas, the runtimes and rich's progress widgets are imported when the command runs
# (rtserve.cli.scoring), so that `rtserve --help` stays fast.

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
    trust_pickle: TrustPickle = False,
    pin_digest: PinDigest = None,
    strict_versions: StrictVersions = False,
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
    from rtserve.bundle.schema import FieldType
    from rtserve.cli.scoring import Scorer, progress_line, rejects_writer, summarize
    from rtserve.cli.tables import prediction_writer, read_batches, total_rows
    from rtserve.deploy.batch import empty_output
    from rtserve.engine.loader import load

    predictor = load(
        bundle, trust_pickle=trust_pickle, pinned_digest=pin_digest, strict_versions=strict_versions
    )
    string_fields = [s.name for s in predictor.schema.inputs if s.type is FieldType.STRING]
    if id_column is not None:
        string_fields.append(id_column)  # keys such as "00123" stay text when read from csv
    scorer = Scorer(predictor, fail=on_invalid is OnInvalid.FAIL, id_column=id_column)
    show = progress if progress is not None else stderr().is_terminal
    with (
        prediction_writer(output, id_column=id_column, empty=empty_output(predictor)) as writer,
        rejects_writer(rejects) as write_rejects,
        progress_line(show, total_rows(input_file)) as advance,
    ):
        for batch in read_batches(input_file, batch_size, string_fields):
            scored = scorer.score(batch)
            if scored.predictions is not None:
                writer.write(scored.predictions, scored.ids)
            write_rejects(scored.rejects)
            advance(batch.size)
        if scorer.rows == 0:
            raise MalformedRequestError(f"{input_file}: the file holds no rows to predict")
    summarize(scorer, output, rejects)


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the root command."""
    app.command("predict")(predict)
