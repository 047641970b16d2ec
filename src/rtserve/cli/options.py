"""Options several commands share, declared once so that their names and help never drift apart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document instead of readable text.")
]
BundleArg = Annotated[Path, typer.Argument(help="Bundle directory or .tar.gz.", show_default=False)]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow a pickle bundle to load: this runs code from the bundle. Needs --pin-digest.",
    ),
]
PinDigest = Annotated[
    str | None,
    typer.Option(
        "--pin-digest",
        metavar="sha256:HEX",
        help="The bundle digest you expect; the bundle is refused if it differs.",
    ),
]
StrictVersions = Annotated[
    bool,
    typer.Option(
        "--strict-versions",
        help="Refuse, rather than warn, when a framework's minor version differs from the build.",
    ),
]


def span_seconds(text: str, *, bare_seconds: bool = True) -> float | None:
    """The seconds in a span such as ``90s``, ``10m``, ``2h``, ``1d`` (and a bare ``600`` when
    ``bare_seconds``); None when ``text`` is not one, so each caller words its own error."""
    found = _SPAN.match(text.strip())
    if found is None or (found.group(2) is None and not bare_seconds):
        return None
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2) or "s"]
