"""Options several commands share, declared once so that their names and help never drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
