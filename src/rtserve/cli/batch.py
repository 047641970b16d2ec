"""``rtserve batch``: score files of rows into a directory, on one machine or on a Dask cluster.

The work is ``rtserve.deploy.batch``'s, imported inside the command (with pandas, the runtimes
and rich's progress widgets) so that ``rtserve --help`` stays fast.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.options import PinDigest, StrictVersions, TrustPickle
from rtserve.cli.output import print_note, print_warning, stderr

# Equal to rtserve.deploy.batch.DEFAULT_BATCH_SIZE / DEFAULT_ROWS_PER_TASK (a test keeps them
# equal); repeated here so that building the command line imports nothing heavy.
DEFAULT_BATCH_SIZE = 1024
DEFAULT_ROWS_PER_TASK = 131_072


class BatchEngine(StrEnum):
    """Where ``rtserve batch`` scores: this process, or a Dask cluster's workers."""

    LOCAL = "local"
    DASK = "dask"


def batch(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory or .tar.gz.", show_default=False)
    ],
    source: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A table file (.parquet, .csv, .jsonl), a directory of them (recursively; names "
            "starting with '.' or '_' are skipped) or a glob pattern such as 'data/**/*.parquet' "
            "(quote it).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            file_okay=False,
            help="Directory for the outputs: one file per input file, at the same relative path "
            "and in the same format.",
            show_default=False,
        ),
    ],
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="An input column copied to the first column of each output (and of each "
            "rejected row), to join outputs back by key. It is not given to the model unless "
            "the schema has a field of that name.",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            dir_okay=False,
            help="JSON-lines file for rows that break the schema, with their file, row and "
            "reasons (default: OUTPUT/_rejects.jsonl).",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        BatchEngine,
        typer.Option(
            "--engine",
            help="`local` scores in this process; `dask` on the workers of the Dask cluster at "
            "--scheduler (needs rtserve[dask] there and here, and the bundle and files at the "
            "same paths on every worker). Both write the same outputs.",
            case_sensitive=False,
        ),
    ] = BatchEngine.LOCAL,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="tcp://HOST:PORT",
            help="The Dask scheduler's address (with --engine dask).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows validated and predicted at a time.")
    ] = DEFAULT_BATCH_SIZE,
    rows_per_task: Annotated[
        int,
        typer.Option(
            "--rows-per-task",
            min=1,
            help="Parquet rows per piece of work (whole row groups); CSV and JSONL files are "
            "one piece each.",
        ),
    ] = DEFAULT_ROWS_PER_TASK,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace output files left by an earlier run.")
    ] = False,
    trust_pickle: TrustPickle = False,
    pin_digest: PinDigest = None,
    strict_versions: StrictVersions = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show rows done, rows/s and (parquet) the ETA on stderr (default: when stderr "
            "is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score every row of many files with a bundle, offline, into a directory of outputs.

    Streams each input in batches (memory stays bounded, whatever the file size). Rows that break
    the schema are left out of the outputs and written with their file, row and reasons to the
    rejects file; the run still succeeds. Each output file appears complete or not at all.

    Example:

        rtserve batch bundles/fraud-1 --input 'data/day=*/*.parquet' --output scores/ --id-column tx_id --engine dask --scheduler tcp://127.0.0.1:8786
    """
    from rtserve.cli.scoring import progress_line
    from rtserve.deploy.batch import expected_rows, resolve_inputs, run_batch

    inputs = resolve_inputs(source, output, overwrite=overwrite)  # fail early, before loading
    show = progress if progress is not None else stderr().is_terminal
    with progress_line(show, expected_rows(inputs), "batch") as advance:
        summary = run_batch(
            bundle,
            source,
            output,
            id_column=id_column,
            rejects=rejects,
            engine="dask" if engine is BatchEngine.DASK else "local",
            scheduler=scheduler,
            batch_size=batch_size,
            rows_per_task=rows_per_task,
            overwrite=overwrite,
            trust_pickle=trust_pickle,
            pinned_digest=pin_digest,
            strict_versions=strict_versions,
            on_rows=advance,
        )
    if summary.rejected:
        print_warning(
            f"{summary.rejected} of {summary.rows} rows broke the schema and were left out; "
            f"written with their reasons to {summary.rejects_path}"
        )
        for reject in summary.first_rejects:
            reasons = "; ".join(v["error"] for v in reject["violations"])
            print_note(f"  {reject['file']} row {reject['row']}: {reasons}")
        if summary.rejected > len(summary.first_rejects):
            print_note(f"  … and {summary.rejected - len(summary.first_rejects)} more")
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    print_note(
        f"wrote {summary.predicted} predictions in {len(summary.outputs)} file(s) to {output} "
        f"({summary.rows} rows in {summary.seconds:.1f} s, {rate:,.0f} rows/s)"
    )


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the root command."""
    app.command("batch")(batch)
