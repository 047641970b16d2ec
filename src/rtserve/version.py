"""Installed distribution versions, read from package metadata: rtserve's own and frameworks'.

One place for the lookup the CLI (``--version``), the server (``GET /v2``, OpenAPI), bundle
builds (the manifest's ``environment``) and loads (the framework version check) all need.
"""

from __future__ import annotations

from importlib import metadata


def installed_version(package: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def rtserve_version(missing: str = "0") -> str:
    """rtserve's own version; ``missing`` when running from a source tree that was never installed."""
    version = installed_version("rtserve")
    return missing if version is None else version
