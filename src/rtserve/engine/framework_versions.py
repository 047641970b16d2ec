"""Compare a bundle's recorded framework versions with the installed ones when it is loaded.

The versions are recorded at build (``rtserve.building.environment.capture``); a different minor
version of a framework may predict differently, so loading warns about it, or refuses in strict
mode, and a missing framework is always refused.
"""

from __future__ import annotations

import warnings

from rtserve.bundle.manifest import Environment
from rtserve.errors import EnvironmentMismatchError
from rtserve.version import installed_version


class FrameworkVersionWarning(UserWarning):
    """A framework's minor version differs from the one the bundle was built with."""


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_framework_versions(environment: Environment, *, strict: bool) -> list[str]:
    """Compare the framework packages' major.minor versions; warn, or refuse when ``strict``.

    Returns the mismatch sentences (empty when everything matches).
    """
    problems: list[str] = []
    for package in environment.framework:
        built = environment.packages.get(package)
        if built is None:
            continue
        here = installed_version(package)
        if here is None:
            raise EnvironmentMismatchError(
                f"the bundle needs {package} (built with {built}) but it is not installed; "
                f"install it, e.g. pip install 'rtserve[{package}]' or pip install {package}=={built}",
                field=package,
            )
        if _minor(here) != _minor(built):
            problems.append(
                f"{package} {here} is installed but the bundle was built with {package} {built}; "
                "predictions may differ"
            )
    if problems and strict:
        raise EnvironmentMismatchError(
            "; ".join(problems) + " (strict version checking is on)", field="environment"
        )
    for problem in problems:
        warnings.warn(problem, FrameworkVersionWarning, stacklevel=3)
    return problems
