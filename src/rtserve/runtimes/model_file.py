"""Read a fitted model from a file by its extension, refusing formats that would run untrusted code.

This is what ``rtserve build MODEL_FILE`` uses. Safe formats (ONNX, native XGBoost and LightGBM
boosters, skops limited to known ML libraries) load as they are; a pickle loads only when the caller
says it trusts the file, because unpickling runs code from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtserve.errors import UnsafeArtifactError, UnsupportedModelError

ONNX_SUFFIXES = (".onnx",)
XGBOOST_SUFFIXES = (".ubj", ".json")
LIGHTGBM_SUFFIXES = (".txt",)
SKOPS_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
#: Every extension ``read_model_file`` knows, for help texts and error messages.
KNOWN_SUFFIXES = (
    *ONNX_SUFFIXES,
    *XGBOOST_SUFFIXES,
    *LIGHTGBM_SUFFIXES,
    *SKOPS_SUFFIXES,
    *PICKLE_SUFFIXES,
)


def is_pickle(path: Path) -> bool:
    """True when reading ``path`` means unpickling it."""
    return path.suffix.lower() in PICKLE_SUFFIXES


def read_model_file(path: Path, *, trust_pickle: bool = False) -> Any:
    """The model stored in ``path``, ready for ``rtserve.build``.

    Args:
        path: ``.onnx``; ``.ubj``/``.json`` (XGBoost Booster); ``.txt`` (LightGBM Booster);
            ``.skops``; ``.pkl``/``.pickle``/``.joblib``.
        trust_pickle: the caller's explicit statement that it trusts a pickle file.

    Raises:
        UnsupportedModelError: unknown extension, missing framework, or an unreadable file.
        UnsafeArtifactError: a pickle without ``trust_pickle``, or a skops file that needs types
            from outside known ML libraries.
    """
    from rtserve.runtimes import sklearn  # the adapters (pandas, frameworks) only when reading

    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        # The ONNX adapter reads the path itself and confines any external data to its folder.
        return path
    try:
        if suffix in XGBOOST_SUFFIXES:
            return _read_booster(path, "xgboost")
        if suffix in LIGHTGBM_SUFFIXES:
            return _read_booster(path, "lightgbm")
        if suffix in SKOPS_SUFFIXES:
            return sklearn.read_skops_file(path)
        if suffix in PICKLE_SUFFIXES:
            if not trust_pickle:
                raise UnsafeArtifactError(
                    f"{path}: loading a pickle runs code stored in the file; rtserve does it only "
                    "when you say you trust the file with --trust-pickle (or save the model with "
                    "skops, ONNX or its framework's native format instead)"
                )
            return sklearn.read_pickle_file(path)
    except (UnsupportedModelError, UnsafeArtifactError):
        raise
    except Exception as exc:  # each framework raises its own types for a file it cannot parse
        raise UnsupportedModelError(
            f"{path}: cannot read it as a {suffix} model ({type(exc).__name__}: {exc}); "
            "is the file complete and of the format its extension says?"
        ) from exc
    raise UnsupportedModelError(
        f"{path}: unknown model file extension {suffix or '(none)'!r}; rtserve reads "
        f"{', '.join(KNOWN_SUFFIXES)}"
    )


def _read_booster(path: Path, package: str) -> Any:
    from rtserve.runtimes import lightgbm, xgboost

    reader = xgboost.read_booster_file if package == "xgboost" else lightgbm.read_booster_file
    try:
        return reader(path)
    except ImportError as exc:
        if exc.name != package:
            raise
        raise UnsupportedModelError(
            f"{path}: reading a {path.suffix} model needs {package}, which is not installed; "
            f"install it with pip install 'rtserve[{package}]'"
        ) from exc
