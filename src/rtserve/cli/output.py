"""How the CLI talks to a person: rich consoles, one-line errors and warnings, JSON documents.

Results go to stdout (so they can be piped); errors, warnings and progress go to stderr. Rich
honours ``NO_COLOR`` and drops colour when the stream is not a terminal.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from rtserve.errors import RtserveError, ValidationError

#: ``--output -`` (or no ``--output``) writes results to stdout.
STDOUT = "-"
#: Violations listed under a validation error; the rest are counted.
SHOWN_VIOLATIONS = 20


def stdout() -> Console:
    """A console on stdout (created per use, so it follows the current stream and NO_COLOR)."""
    return Console(highlight=False)


def stderr() -> Console:
    """A console on stderr for errors, warnings and progress."""
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """Write one JSON document to stdout, uncoloured, so that scripts can parse it."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def print_error(error: RtserveError) -> None:
    """``error: <message>`` in red on one line; a validation error lists its violations below."""
    console = stderr()
    if not isinstance(error, ValidationError) or len(error.violations) == 1:
        console.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True)
    else:  # the message lists them inline; one per line reads better in a terminal
        console.print(f"[bold red]error:[/] {len(error.violations)} violations of the schema:")
        for violation in error.violations[:SHOWN_VIOLATIONS]:
            where = f"row {violation.row}: " if violation.row is not None else ""
            console.print(f"  {where}{escape(violation.message)}", soft_wrap=True)
        hidden = len(error.violations) - SHOWN_VIOLATIONS
        if hidden > 0:
            console.print(f"  … and {hidden} more", soft_wrap=True)


def print_warning(message: str) -> None:
    """``warning: <message>`` in yellow on one line."""
    stderr().print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def print_note(message: str) -> None:
    """A plain informational line on stderr (kept off stdout so results stay pipeable)."""
    stderr().print(escape(message), soft_wrap=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print_warning(str(message))


@contextmanager
def shown_warnings() -> Iterator[None]:
    """Show rtserve's and libraries' user-facing warnings as ``warning:`` lines while running.

    Developer-facing categories (deprecations, future changes of library APIs) are not a CLI
    user's concern and stay hidden.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _show_warning
        yield
