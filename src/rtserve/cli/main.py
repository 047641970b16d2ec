"""The ``rtserve`` command: the typer app, its command registry and the exit-code contract.

Exit codes: 0 success, 1 failure (any ``RtserveError``, printed as one red ``error:`` line without
a traceback), 2 usage error (typer/click). Each command group lives in its own module and adds its
commands with ``register(app)``; adding a group is one line in ``_register``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from rtserve.cli import (
    alerts,
    batch,
    bench,
    bundle_commands,
    compare,
    config,
    containerize,
    decisions,
    demo,
    deploy,
    predict,
    registry,
    replicas,
    rollout,
    serve,
    signing,
    stream,
)
from rtserve.cli.output import print_error, shown_warnings
from rtserve.errors import RtserveError
from rtserve.version import rtserve_version

FAILURE = 1
#: Set (to anything) to see the traceback of an unexpected failure instead of one line.
DEBUG_ENV = "RTSERVE_DEBUG"


class UnexpectedError(RtserveError):
    """A failure no rtserve error describes; shown as one line, with how to get the details."""

    code = "unexpected"

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            f"{type(cause).__name__}: {cause} (unexpected; run again with {DEBUG_ENV}=1 for the "
            "traceback, and please report it)"
        )


class RtserveGroup(TyperGroup):
    """The root command group: turns an ``RtserveError`` from any command into exit code 1."""

    # `ctx` is typer's vendored click Context, a private type; Any keeps the override compatible.
    def invoke(self, ctx: Any) -> Any:
        """Run the chosen command, showing warnings as lines and errors as one red line."""
        with shown_warnings():
            try:
                return super().invoke(ctx)
            except RtserveError as exc:
                print_error(exc)
                raise typer.Exit(FAILURE) from exc
            except (typer.Exit, typer.Abort, TyperException):
                raise  # usage errors (exit 2), Ctrl-C and deliberate exits keep their meaning
            except BrokenPipeError as exc:
                # The reader went away (`rtserve ... | head`): not an error worth a line. Point
                # stdout at /dev/null so that Python's flush at exit does not fail again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(FAILURE) from exc
            except Exception as exc:
                # A failure rtserve did not foresee (a bug, or a framework error not yet
                # translated): still one line for the user; the traceback on request.
                if os.environ.get(DEBUG_ENV):
                    raise
                print_error(UnexpectedError(exc))
                raise typer.Exit(FAILURE) from exc


app = typer.Typer(
    name="rtserve",
    cls=RtserveGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rtserve {rtserve_version(missing='unknown')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the rtserve version and exit.",
        ),
    ] = False,
) -> None:
    """Turn a trained model into a production real-time inference service.

    Start with `rtserve build model.skops --sample train.parquet --name fraud --version 1
    --output bundles/fraud-1`, then `rtserve verify bundles/fraud-1`.
    """


def _register(target: typer.Typer) -> None:
    """Every command group, in the order ``--help`` lists them."""
    demo.register(target)
    serve.register(target)
    config.register(target)
    bundle_commands.register(target)
    signing.register(target)
    predict.register(target)
    batch.register(target)
    bench.register(target)
    compare.register(target)
    decisions.register(target)
    alerts.register(target)
    registry.register(target)
    rollout.register(target)
    deploy.register(target)
    containerize.register(target)
    replicas.register(target)
    stream.register(target)


_register(app)


def main() -> None:
    """Console-script entry point (``rtserve``); exits 0 / 1 / 2."""
    try:
        app(prog_name="rtserve")
    except RtserveError as exc:  # raised outside a command (e.g. by a parameter callback)
        print_error(exc)
        sys.exit(FAILURE)


if __name__ == "__main__":
    main()
