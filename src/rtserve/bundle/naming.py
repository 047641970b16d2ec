"""The one place that says what a valid model name and version look like."""

from __future__ import annotations

import re

from rtserve.errors import BundleFormatError

# Names travel in URLs, file names, Prometheus labels and Kubernetes objects: keep them to the
# common subset of all four.
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,62})$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise with the rule."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BundleFormatError(
            f"model name {name!r} is invalid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (e.g. 'fraud-detector')",
            field="name",
        )
    return name


def check_version(version: str) -> str:
    """Return ``version`` if it is a valid version label, else raise with the rule."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise BundleFormatError(
            f"model version {version!r} is invalid: use 1-63 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (e.g. '1', '2024-06-01', '1.2.0')",
            field="version",
        )
    return version
