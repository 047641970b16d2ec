"""Hostile bundles, made the way an attacker with write access to a bundle would make them.

Each builder makes a real bundle with ``rtserve.build``, then edits its artifact or manifest and
re-seals it with the project's own integrity code (``Bundle.seal`` recomputes every file hash and
the digest), so the result passes every hash check. Hashes are no defence against someone who can
edit a bundle; only refusing the code the bundle names is. Every payload, should it ever run,
writes ``HostileBundle.marker``: a test asserts refusal *and* that the marker does not exist.

Used by the unit tests (``tests/unit/runtimes/test_hostile_bundles_load.py``) and the end-to-end
tests that drive ``rtserve verify`` and ``rtserve serve`` (``tests/e2e/test_hostile_bundles.py``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rtserve
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.manifest import read_manifest

#: The columns of every hostile bundle's (numeric) model.
COLUMNS = ("a", "b", "c")


@dataclass(frozen=True)
class HostileBundle:
    """A re-sealed hostile bundle, the file its payload would write, and what a refusal names."""

    path: Path
    marker: Path
    #: A dotted name the refusal must mention (the code the bundle tried to run).
    names: str

    def rows(self) -> pd.DataFrame:
        """Input rows the model would take (what ``predict`` would be called with)."""
        return training_frame().head(5)


def training_frame(rows: int = 60) -> pd.DataFrame:
    """A small all-numeric training sample."""
    rng = np.random.default_rng(5)
    return pd.DataFrame(rng.normal(size=(rows, len(COLUMNS))), columns=list(COLUMNS))


def _fitted_classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    frame = training_frame()
    return LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))


def _base_bundle(target: Path, model: Any) -> Path:
    """A legitimate bundle served by its native runtime (no ONNX export to sidestep)."""
    rtserve.build(model, training_frame(), name="victim", version="1", optimize="off").save(target)
    return target


def reseal(directory: Path, **changes: Any) -> None:
    """Apply manifest changes and recompute every hash and the digest, as an attacker can."""
    manifest = read_manifest(directory)
    Bundle.seal(directory, manifest.model_copy(update=changes))


def replace_skops_model(directory: Path, model: Any) -> None:
    """Swap the bundle's skops file for ``model`` and record what skops says it must trust."""
    import skops.io as sio

    target = directory / "model" / "model.skops"
    sio.dump(model, target)
    runtime = read_manifest(directory).runtime
    options = {**runtime.options, "trusted_types": sorted(sio.get_untrusted_types(file=target))}
    reseal(directory, runtime=runtime.model_copy(update={"options": options}))


def exec_chain_pipeline(model: Any, code: str) -> Any:
    """The reported attack: plain numpy functions, chained by FunctionTransformer, run ``code``.

    ``numpy.full_like`` fills the input's shape with the code string, ``numpy.sum`` joins every
    cell into one program (the code runs once per input cell), and numpy's test helper
    ``runstring`` hands it to ``exec``. Every name is from numpy, so a ``numpy.*`` prefix rule
    trusted all of them.
    """
    from numpy.testing._private.utils import runstring
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline(
        [
            ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": "O"})),
            ("join", FunctionTransformer(np.sum)),
            ("run", FunctionTransformer(runstring, kw_args={"dict": {}})),
            ("model", model),
        ]
    )


def exec_chain_bundle(root: Path) -> HostileBundle:
    """A skops bundle whose pipeline executes a string through ``numpy.testing``'s ``exec``."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "exec-chain-ran.txt"
    directory = _base_bundle(root / "exec-chain", _fitted_classifier())
    code = f"open({str(marker)!r}, 'a').write('x')\n"
    replace_skops_model(directory, exec_chain_pipeline(_fitted_classifier(), code))
    return HostileBundle(directory, marker, "numpy.testing._private.utils.runstring")


class _WriteMarker:
    """Unpickling this writes the marker: what a planted pickle would do (say, start a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickle payload ran"))


def planted_pickle_pipeline(model: Any, payload: Path) -> Any:
    """A pipeline that unpickles ``payload`` through ``numpy.load(..., allow_pickle=True)``.

    ``numpy.full_like`` fills the input with the payload's path and ``numpy.max`` picks that one
    string; ``numpy.load`` then reads the file, and unpickling it runs its code.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    fill = {"fill_value": str(payload), "dtype": "O"}
    return Pipeline(
        [
            ("fill", FunctionTransformer(np.full_like, kw_args=fill)),
            ("pick", FunctionTransformer(np.max)),
            ("load", FunctionTransformer(np.load, kw_args={"allow_pickle": True})),
            ("model", model),
        ]
    )


def planted_pickle_bundle(root: Path) -> HostileBundle:
    """A skops bundle whose pipeline loads a pickle planted on the host with ``numpy.load``."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "planted-pickle-ran.txt"
    payload = root / "payload.npy"
    payload.write_bytes(pickle.dumps(_WriteMarker(marker)))
    directory = _base_bundle(root / "planted-pickle", _fitted_classifier())
    replace_skops_model(directory, planted_pickle_pipeline(_fitted_classifier(), payload))
    return HostileBundle(directory, marker, "numpy.load")


def xgboost_class_bundle(root: Path, class_name: str = "Booster") -> HostileBundle:
    """An XGBoost bundle whose manifest names another ``xgboost`` attribute as its wrapper class.

    The adapter constructs the class the manifest names, so any attribute of the ``xgboost``
    module that the name reaches would be called.
    """
    import xgboost as xgb

    root.mkdir(parents=True, exist_ok=True)
    frame = training_frame()
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(frame, (frame["a"] > 0).astype(int))
    directory = _base_bundle(root / "xgboost-class", model)
    runtime = read_manifest(directory).runtime
    options = {**runtime.options, "class": class_name}
    reseal(directory, runtime=runtime.model_copy(update={"options": options}))
    return HostileBundle(directory, root / "xgboost-class-ran.txt", class_name)


#: Every hostile bundle builder, by a short name for test ids.
BUILDERS = {
    "exec-chain": exec_chain_bundle,
    "planted-pickle": planted_pickle_bundle,
    "xgboost-class": xgboost_class_bundle,
}
