"""The one place that says what a valid model name and version look like."""

from __future__ import annotations

import re

from rtserve.errors import BundleFormatError

# Names travel in URLs, file names, Prometheus labels, log lines and Kubernetes objects: keep them
# to the common subset of all. Always matched with ``fullmatch``: ``$`` in ``re.match`` also
# matches before a trailing newline, which let ``"fraud\n"`` through.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,62}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise with the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BundleFormatError(
            f"model name {name!r} is invalid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (e.g. 'fraud-detector')",
            field="name",
        )
    return name


def check_version(version: str) -> str:
    """Return ``version`` if it is a valid version label, else raise with the rule."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise BundleFormatError(
            f"model version {version!r} is invalid: use 1-63 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (e.g. '1', '2024-06-01', '1.2.0')",
            field="version",
        )
    return version


_VERSION_PARTS = re.compile(r"(\d+)")


def version_order_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders versions as people read them: ``"2" < "10"``, ``"1.9" < "1.10"``.

    Digit runs compare as numbers and everything else as text, so date versions
    (``2024-06-01``), dotted ones (``1.2.0``) and plain counters all order naturally.
    """
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in _VERSION_PARTS.split(version)
        if part
    )
