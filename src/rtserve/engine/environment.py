"""Record library versions at build and compare them at load."""

from __future__ import annotations

import platform
import warnings
from importlib import metadata

from rtserve.bundle.manifest import Environment
from rtserve.errors import EnvironmentMismatchError


class FrameworkVersionWarning(UserWarning):
    """A framework's minor version differs from the one the bundle was built with."""


def installed_version(package: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def capture(framework: tuple[str, ...]) -> Environment:
    """The running interpreter and the versions of ``framework`` packages (plus rtserve's own)."""
    names = dict.fromkeys(("rtserve", "numpy", "pandas", *framework))
    packages = {name: v for name in names if (v := installed_version(name)) is not None}
    return Environment(
        python=platform.python_version(), packages=packages, framework=list(framework)
    )


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check(environment: Environment, *, strict: bool) -> list[str]:
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
