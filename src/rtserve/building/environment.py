"""Record the interpreter and library versions a bundle is built with (its manifest's ``environment``).

They are compared with the installed ones at load, by ``rtserve.engine.framework_versions``.
"""

from __future__ import annotations

import platform

from rtserve.bundle.manifest import Environment
from rtserve.version import installed_version


def capture(framework: tuple[str, ...]) -> Environment:
    """The running interpreter and the versions of ``framework`` packages (plus rtserve's own)."""
    names = dict.fromkeys(("rtserve", "numpy", "pandas", *framework))
    packages = {name: v for name in names if (v := installed_version(name)) is not None}
    return Environment(
        python=platform.python_version(), packages=packages, framework=list(framework)
    )
