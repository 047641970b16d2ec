"""The one allow-list of code a bundle may name: which classes and functions rtserve will load.

Why it exists: a skops model file, and some runtime options in ``rtserve.yaml``, name classes and
functions by their dotted names; loading imports them, and a model may later call them on every
request. Hashes and the digest do not help against a hostile name, because whoever can edit a
bundle can recompute them. So every name that would become code is checked here, at build (before
a bundle is sealed) and again at load (before anything is imported), and anything not listed is
refused. A model that needs more can still be packaged as a pickle, which loads only with explicit
trust and a pinned digest (``rtserve.build(..., allow_pickle=True)``; ``rtserve build
--trust-pickle``).

What may be named, by the role the name plays:

* a **function** (a skops ``FunctionNode``, e.g. ``FunctionTransformer(func=...)``): only the short,
  reviewed list ``PURE_FUNCTIONS`` of element-wise numeric functions and score statistics. A prefix
  rule (``numpy.*``) is not enough: numpy, scipy and scikit-learn also hold plain functions that
  execute strings, load pickles or start processes.
* a **type used as a value** (a skops ``TypeNode``, e.g. ``dtype=np.float64``; skops also writes
  built-in functions such as ``eval`` this way): ``VALUE_TYPES`` or ``PURE_FUNCTIONS``.
* an **object** skops constructs to hold the fitted state: ``VALUE_TYPES``, ``STATE_TYPES`` (the
  numpy/scipy containers and library internals fitted models hold), or an **estimator class**: a
  class *defined* in scikit-learn, XGBoost or LightGBM that subclasses scikit-learn's
  ``BaseEstimator``. That rule imports the named module, so it validates the name first and
  imports only modules of those three packages (never their test helpers), and it calls nothing.

Bound methods, ``functools.partial`` and ``operator`` callables (skops ``MethodNode``,
``PartialNode``, ``OperatorFuncNode``) reach code through attribute names stored as data, so no
such node is allowed at all.

To allow something new: add its fully qualified name (as ``skops.io.get_untrusted_types`` or the
refusal message spells it) to the right set below with a comment saying why it is safe, and add
it to the type-by-type tests in ``tests/unit/runtimes/test_trusted_types.py``.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Literal

#: The role a name plays in a model file (see the module docstring).
Role = Literal["function", "type", "object"]

# --- functions ----------------------------------------------------------------------------------

#: Functions a model may call. Each is a pure numeric function of its array arguments: it reads
#: no files, executes no strings, imports nothing and calls nothing it is handed. numpy ufuncs are
#: listed by the name skops writes (``np.abs`` is ``numpy.absolute``).
PURE_FUNCTIONS: frozenset[str] = frozenset(
    {
        # Element-wise numpy ufuncs: the usual FunctionTransformer feature transforms.
        "numpy.absolute",
        "numpy.arcsinh",
        "numpy.arctan",
        "numpy.cbrt",
        "numpy.ceil",
        "numpy.cos",
        "numpy.cosh",
        "numpy.exp",
        "numpy.exp2",
        "numpy.expm1",
        "numpy.fabs",
        "numpy.floor",
        "numpy.log",
        "numpy.log10",
        "numpy.log1p",
        "numpy.log2",
        "numpy.negative",
        "numpy.reciprocal",
        "numpy.rint",
        "numpy.sign",
        "numpy.sin",
        "numpy.sinh",
        "numpy.sqrt",
        "numpy.square",
        "numpy.tan",
        "numpy.tanh",
        "numpy.trunc",
        # numpy array functions with only numeric keyword arguments.
        "numpy.clip",
        "numpy.nan_to_num",
        # Pooling functions (FeatureAgglomeration's pooling_func defaults to numpy.mean).
        "numpy.mean",
        "numpy.median",
        # scipy.special ufuncs: the logistic function and its inverse.
        "scipy.special._special_ufuncs.expit",
        "scipy.special._special_ufuncs.logit",
        # Univariate score statistics (SelectKBest & co. hold one; they run only during fit).
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.r_regression",
        # Held by fitted estimators as attributes: BisectingKMeans's k-means step, and the
        # array constructor scipy's BSpline (SplineTransformer) keeps.
        "sklearn.cluster._kmeans._kmeans_single_elkan",
        "sklearn.cluster._kmeans._kmeans_single_lloyd",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
    }
)

#: The functions refusal messages name as examples of what is allowed.
FUNCTION_EXAMPLES = ("numpy.log1p", "numpy.exp", "numpy.sqrt", "numpy.clip")

# --- types --------------------------------------------------------------------------------------

#: Scalar and container types: skops writes them as values (``dtype=np.float64``) and builds
#: instances of them. Calling one (``str(x)``, ``numpy.float64(x)``) only converts a value.
VALUE_TYPES: frozenset[str] = frozenset(
    {
        "builtins.bool",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.dict",
        "builtins.float",
        "builtins.int",
        "builtins.list",
        "builtins.set",
        "builtins.slice",
        "builtins.str",
        "builtins.tuple",
        "collections.OrderedDict",  # LightGBM's wrappers hold the type itself as a value
        "collections.defaultdict",
        # numpy scalar types (numpy 2 names; numpy.bool_ is numpy 1's name of numpy.bool).
        "numpy.bool",
        "numpy.bool_",
        "numpy.bytes_",
        "numpy.clongdouble",
        "numpy.complex128",
        "numpy.complex64",
        "numpy.datetime64",
        "numpy.float16",
        "numpy.float32",
        "numpy.float64",
        "numpy.int16",
        "numpy.int32",
        "numpy.int64",
        "numpy.int8",
        "numpy.longdouble",
        "numpy.longlong",
        "numpy.object_",
        "numpy.str_",
        "numpy.timedelta64",
        "numpy.uint16",
        "numpy.uint32",
        "numpy.uint64",
        "numpy.uint8",
        "numpy.ulonglong",
        "numpy.void",
    }
)

#: Classes of the state a fitted model holds, which skops constructs but never names as a
#: callable. Each restores data only (arrays, tree nodes, a booster's own serialized model).
STATE_TYPES: frozenset[str] = frozenset(
    {
        # numpy and scipy containers (skops reads their arrays with allow_pickle=False).
        "numpy.dtype",
        "numpy.ma.MaskedArray",
        "numpy.ndarray",
        "numpy.random.MT19937",
        "numpy.random.PCG64",
        "numpy.random.PCG64DXSM",
        "numpy.random.Philox",
        "numpy.random.SFC64",
        "numpy.random._generator.Generator",
        "numpy.random.mtrand.RandomState",
        "scipy.interpolate._bsplines.BSpline",  # SplineTransformer's fitted splines
        "scipy.sparse._coo.coo_array",
        "scipy.sparse._coo.coo_matrix",
        "scipy.sparse._csc.csc_array",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csr.csr_matrix",
        # Boosters restore from their framework's own model format (no pickle inside).
        "lightgbm.basic.Booster",
        "xgboost.core.Booster",
        # scikit-learn internals of fitted estimators that are not estimators themselves.
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyExponentialLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfGammaLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyHalfTweedieLoss",
        "sklearn._loss._loss.CyHalfTweedieLossIdentity",
        "sklearn._loss._loss.CyHuberLoss",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn._loss.link.HalfLogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.ExponentialLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.PinballLoss",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.cluster._bisect_k_means._BisectingTree",
        # HistGradientBoosting's trees. skops leaves TreePredictor untrusted because its node
        # indices are not bounds-checked (a crafted file can crash the process, not run code);
        # rtserve needs it for every HistGradientBoosting model, the demo's included.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.ExpSineSquared",
        "sklearn.gaussian_process.kernels.Exponentiation",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.RationalQuadratic",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
        "sklearn.linear_model._sgd_fast.SquaredHinge",
        "sklearn.metrics._dist_metrics.ChebyshevDistance32",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.EuclideanDistance32",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance32",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance32",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
    }
)

# --- estimator classes --------------------------------------------------------------------------

#: Packages whose ``BaseEstimator`` subclasses may be constructed, and the only packages whose
#: modules the estimator rule ever imports.
ESTIMATOR_PACKAGES: frozenset[str] = frozenset({"sklearn", "xgboost", "lightgbm"})

#: Module path parts the estimator rule never imports: test suites and test helpers ship inside
#: these packages and importing them has side effects (pytest plugins, fixtures, data downloads).
NEVER_IMPORTED_PARTS: frozenset[str] = frozenset(
    {"conftest", "tests", "testing", "_testing", "_mocking"}
)

# --- skops node kinds ---------------------------------------------------------------------------

#: The role each skops node kind (``__loader__``) gives the name it carries. A kind not listed
#: here is refused: ``MethodNode`` (a bound method looked up by an attribute name),
#: ``PartialNode`` (``functools.partial``), ``OperatorFuncNode`` (``operator.attrgetter`` and
#: friends call attributes named in the file) and any kind a future skops adds.
SKOPS_NODE_ROLES: dict[str, Role] = {
    "FunctionNode": "function",
    "TypeNode": "type",
    "BytearrayNode": "object",
    "BytesNode": "object",
    "ConstructorFromReduceNode": "object",
    "DTypeNode": "object",
    "DefaultDictNode": "object",
    "DictNode": "object",
    "JsonNode": "object",
    "ListNode": "object",
    "LossNode": "object",
    "MaskedArrayNode": "object",
    "NdArrayNode": "object",
    "ObjectNode": "object",
    "RandomGeneratorNode": "object",
    "RandomStateNode": "object",
    "SetNode": "object",
    "SliceNode": "object",
    "SparseMatrixNode": "object",
    "TreeNode": "object",
    "TupleNode": "object",
}

#: skops node kinds that point at an earlier node of the same file (already checked) and name
#: nothing themselves.
SKOPS_REFERENCE_NODES: frozenset[str] = frozenset({"CachedNode"})

# --- runtime options that name code -------------------------------------------------------------

#: XGBoost wrapper classes the ``class`` option of an XGBoost bundle may name (the adapter
#: constructs one with no arguments and loads the model file into it).
XGBOOST_WRAPPERS: frozenset[str] = frozenset(
    {"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor"}
)

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})+")
#: Names longer than this are refused before any other check (no real class path comes close).
MAX_NAME_LENGTH = 200


def is_dotted_name(name: object) -> bool:
    """True for ``package.module.Name``: identifiers joined by dots, nothing else."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_NAME_LENGTH
        and _DOTTED.fullmatch(name) is not None
    )


def allows(name: str, role: Role, estimator_base: type) -> bool:
    """True when a model may name ``name`` in ``role``.

    ``estimator_base`` is scikit-learn's ``BaseEstimator``, passed in by the adapter that may
    import scikit-learn (this module imports no framework by itself).
    """
    if not is_dotted_name(name):
        return False
    if role == "function":
        return name in PURE_FUNCTIONS
    if role == "type":
        return name in VALUE_TYPES or name in PURE_FUNCTIONS
    return name in VALUE_TYPES or name in STATE_TYPES or is_estimator_class(name, estimator_base)


def allows_any_role(name: str, estimator_base: type) -> bool:
    """True when ``name`` is allowed in some role: for lists that do not say the role.

    skops's ``get_untrusted_types`` and a manifest's ``trusted_types`` are such lists; the
    per-node check (``allows``) is the precise one and runs as well.
    """
    return any(allows(name, role, estimator_base) for role in ("function", "type", "object"))


def is_estimator_class(name: str, estimator_base: type) -> bool:
    """True when ``name`` is a ``BaseEstimator`` subclass defined in scikit-learn/XGBoost/LightGBM.

    Imports the module part of ``name`` only when the name is well formed, its package is one of
    ``ESTIMATOR_PACKAGES`` and no part is private-dunder or a test module; calls nothing.
    """
    return _is_estimator_class(name, estimator_base)


@lru_cache(maxsize=2048)
def _is_estimator_class(name: str, estimator_base: type) -> bool:
    if not is_dotted_name(name):
        return False
    module_name, _, class_name = name.rpartition(".")
    parts = module_name.split(".")
    if parts[0] not in ESTIMATOR_PACKAGES:
        return False
    if any(p.startswith("__") or p in NEVER_IMPORTED_PARTS for p in (*parts, class_name)):
        return False
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - a module that cannot be imported defines no estimator here
        return False
    cls = module.__dict__.get(class_name)  # no module __getattr__: a plain lookup
    return (
        isinstance(cls, type)
        and issubclass(cls, estimator_base)
        and cls.__module__.split(".", 1)[0] in ESTIMATOR_PACKAGES
    )


def describe_allow_list() -> str:
    """One sentence for refusal messages: what a bundle may name, with examples."""
    return (
        "rtserve loads only scikit-learn, XGBoost and LightGBM estimator classes, the numpy/scipy "
        "data types fitted models hold, and a reviewed list of pure numeric functions "
        f"({', '.join(FUNCTION_EXAMPLES)}, ...; see rtserve.runtimes.trusted_types)"
    )
