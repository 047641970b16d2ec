"""Export fitted models to ONNX (skl2onnx, onnxmltools) with double precision where it matters.

Only the conversion lives here; whether an export may serve is decided by ``export_gate``.
Anything the converters cannot represent faithfully raises ``UnsupportedModelError`` with the
reason, and the bundle keeps serving with its native runtime.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtserve.bundle.manifest import InputFrame
from rtserve.bundle.schema import FieldType, MissingPolicy, Schema
from rtserve.errors import UnsupportedModelError
from rtserve.runtimes.base import Description
from rtserve.types import Task
from rtserve.version import installed_version

#: Fed to ONNX Runtime where a string is missing: it cannot take None (it would read "None").
#: The export's imputers treat exactly this value as missing, so it is reserved: a client that
#: sent this very NUL-wrapped text would have it imputed by the export.
MISSING_STRING = "\x00rtserve:missing\x00"
#: Operator sets the exports target: ai.onnx.ml 3 carries double-precision tree thresholds.
ONNX_OPSET = 18
ML_OPSET = 3
#: The newest operator set onnxmltools' booster converters accept.
BOOSTER_OPSET = 15
#: The one matrix input of exports that take all features at once.
MATRIX_INPUT = "input"

_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_DOUBLE_ATTRIBUTES = ("nodes_values", "base_values", "class_weights", "target_weights")
_SKLEARN_TREES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
)


@dataclass(frozen=True)
class Export:
    """An ONNX model equivalent (to be proven) to the original, and how to feed it."""

    proto: Any  # onnx.ModelProto
    input_frame: InputFrame
    #: ``OnnxRuntime`` options: input feed types, output positions, the missing-string marker.
    options: dict[str, Any]
    #: Versions of the converter and runtime that made and will run it.
    packages: dict[str, str] = field(default_factory=dict)


def exports(model: Any, adapter: str, description: Description, schema: Schema) -> Iterator[Export]:
    """ONNX conversions of ``model`` (packaged by the adapter named ``adapter``), the fastest to
    serve first; the next is worth trying when one is not loadable or not at parity.

    A scikit-learn model whose inputs are all numeric takes one matrix input (ONNX Runtime's
    cost per call grows with its number of inputs: 32 one-column inputs cost 4x one 32-column
    matrix); trained on a frame, it may also take one input per field (a pipeline that picks
    columns by name may convert, or answer, only that way). Any other model has one export.

    Raises:
        UnsupportedModelError: (as the iteration goes) the converters cannot represent the
            model, with the reason.
    """
    if adapter not in ("sklearn", "xgboost", "lightgbm"):
        raise UnsupportedModelError(f"no ONNX converter for models of the {adapter!r} adapter")
    _check_inputs(schema)
    if adapter != "sklearn":
        yield _converted(_export_booster, model, adapter, description)
        return
    layout = description.input_frame
    strings = _string_categories(layout)
    numeric = {n: _is_numeric(d) and n not in strings for n, d in layout.dtypes.items()}
    matrix_error: UnsupportedModelError | None = None  # the reason given when neither converts
    if all(numeric.values()):
        try:
            matrix = _converted(
                _export_sklearn, model, description, {MATRIX_INPUT: "float64"},
                layout.model_copy(update={"kind": "matrix"}),
            )  # fmt: skip
        except UnsupportedModelError as exc:
            if layout.kind != "frame":
                raise
            matrix_error = exc
        else:
            yield matrix
            if layout.kind != "frame":
                return
    elif layout.kind != "frame":
        text = [n for n, is_num in numeric.items() if not is_num]
        raise UnsupportedModelError(
            f"the model takes a matrix but the inputs {text} are not numeric"
        )
    inputs = {n: "float64" if is_num else "object" for n, is_num in numeric.items()}
    try:
        per_field = _converted(_export_sklearn, model, description, inputs, layout)
    except UnsupportedModelError:
        if matrix_error is not None:
            raise matrix_error from None
        raise
    yield per_field


def _converted(convert: Callable[..., Export], *args: Any) -> Export:
    """``convert(*args)``, its failures as ``UnsupportedModelError`` with the reason."""
    try:
        with warnings.catch_warnings():
            # Converter deprecation chatter is not the user's concern; the parity gate judges.
            warnings.simplefilter("ignore")
            return convert(*args)
    except UnsupportedModelError:
        raise
    except ImportError as exc:
        raise UnsupportedModelError(f"the ONNX converter is not installed ({exc})") from exc
    except Exception as exc:  # converters raise many kinds for what they cannot convert
        raise UnsupportedModelError(f"the converter failed ({_brief(exc)})") from exc


def _check_inputs(schema: Schema) -> None:
    """Refuse inputs the per-field ONNX feed cannot carry."""
    for spec in schema.inputs:
        if spec.type is FieldType.BOOL and spec.missing is MissingPolicy.PASS:
            raise UnsupportedModelError(
                f"input {spec.name!r} is a boolean that may be missing; an ONNX tensor cannot "
                "hold a missing boolean"
            )


def _versions(*packages: str) -> dict[str, str]:
    return {name: v for name in packages if (v := installed_version(name)) is not None}


def _is_numeric(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind in "fiub"
    except TypeError:  # pandas extension dtypes: "Int64", "boolean", "category", "str"...
        return dtype in ("Int8", "Int16", "Int32", "Int64", "Float32", "Float64", "boolean")


def _outputs(description: Description) -> dict[str, Any]:
    if description.outputs.task is Task.CLASSIFICATION:
        options: dict[str, Any] = {"label_output": 0}
        if description.outputs.probabilities:
            options["probabilities_output"] = 1
        return options
    return {"value_output": 0}


# --- scikit-learn -----------------------------------------------------------------------------


def _export_sklearn(
    model: Any, description: Description, inputs: dict[str, str], frame: InputFrame
) -> Export:
    """``convert_sklearn`` for ``inputs`` (name: "float64" or "object") laid out as ``frame``:
    one matrix of every field, or one column per field."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    width = len(frame.dtypes) if frame.kind == "matrix" else 1
    initial = [
        (n, DoubleTensorType([None, width]) if t == "float64" else StringTensorType([None, 1]))
        for n, t in inputs.items()
    ]
    converters, shapes = _sklearn_overrides()
    try:
        proto = convert_sklearn(
            model,
            initial_types=initial,
            # Probabilities as a plain tensor, not a list of {class: p} dicts.
            options={"zipmap": False} if description.outputs.task is Task.CLASSIFICATION else None,
            target_opset={"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET},
            custom_conversion_functions=converters,
            custom_shape_calculators=shapes,
        )
    except UnsupportedModelError:
        raise
    except Exception as exc:  # skl2onnx raises many kinds for what it cannot convert
        raise UnsupportedModelError(f"skl2onnx cannot convert it ({_brief(exc)})") from exc
    options = {"inputs": inputs, **_outputs(description)}
    if "object" in inputs.values():
        options["missing_string"] = MISSING_STRING
    return Export(proto, frame, options, _versions("skl2onnx", "onnx", "onnxruntime"))


def _string_categories(layout: InputFrame) -> set[str]:
    """Categorical columns whose categories are text (fed as strings)."""
    return {
        name
        for name, categories in layout.categories.items()
        if any(isinstance(c, str) for c in categories)
    }


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sklearn_overrides() -> tuple[dict[type, Any], dict[type, Any]]:
    """Per-call converter overrides: double-precision trees and imputers, missing strings."""
    import sklearn.ensemble
    import sklearn.tree
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from sklearn.impute import SimpleImputer

    converters: dict[type, Any] = {}
    shapes: dict[type, Any] = {}
    for class_name in _SKLEARN_TREES:
        cls = getattr(sklearn.ensemble, class_name, None) or getattr(sklearn.tree, class_name)
        alias = sklearn_operator_name_map[cls]
        converters[cls] = _double_tree_converter(cls, _function(get_converter(alias)))
        shapes[cls] = _function(get_shape_calculator(alias))
    imputer_alias = sklearn_operator_name_map[SimpleImputer]
    converters[SimpleImputer] = _imputer_converter(_function(get_converter(imputer_alias)))
    shapes[SimpleImputer] = _function(get_shape_calculator(imputer_alias))
    return converters, shapes


def _function(registered: Any) -> Callable[..., Any]:
    """The plain function behind skl2onnx's registry wrapper (it accepts keyword options)."""
    return getattr(registered, "_fct", registered)  # type: ignore[no-any-return]


def _double_tree_converter(cls: type, convert: Callable[..., Any]) -> Callable[..., None]:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        _check_tree_model(operator.raw_operator)
        proxy = _DoubleTreeContainer(container, scope, operator)
        # ai.onnx.ml 3 lets tree attributes be double tensors; skl2onnx then keeps its doubles.
        convert(scope, operator, proxy, op_version=ML_OPSET)

    converter.__name__ = f"convert_{cls.__name__}_double"
    return converter


def _check_tree_model(model: Any) -> None:
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and bool(np.any(categorical)):
        raise UnsupportedModelError(
            f"{type(model).__name__} uses native categorical splits, which skl2onnx does not "
            "convert"
        )
    if getattr(model, "_preprocessor", None) is not None:
        raise UnsupportedModelError(
            f"{type(model).__name__} encodes categorical columns itself "
            "(categorical_features='from_dtype'), which skl2onnx does not convert"
        )


class _DoubleTreeContainer:
    """Wraps skl2onnx's container so tree nodes keep double thresholds and leaf values.

    scikit-learn compares features with thresholds in double precision (HistGradientBoosting)
    or at float32 with thresholds chosen so a double comparison is exact (other trees);
    float32 attributes would flip rows near a threshold. Tree nodes always output float, so a
    Cast restores the double output type the rest of the graph expects.
    """

    def __init__(self, container: Any, scope: Any, operator: Any) -> None:
        self._container = container
        self._scope = scope
        self._double_outputs = {
            v.full_name for v in operator.outputs if type(v.type).__name__ == "DoubleTensorType"
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        """Add a node; tree ensembles get double tensor attributes and float outputs cast back."""
        from onnx import TensorProto, numpy_helper

        if op_type == "Identity" and _names(outputs)[0] in self._double_outputs:
            # The tree's float output copied to the operator's double output (GradientBoosting).
            return self._container.add_node(
                "Cast", inputs, outputs, name=attrs.get("name"), to=TensorProto.DOUBLE
            )
        if op_type not in _TREE_OPS:
            return self._container.add_node(op_type, inputs, outputs, *args, **attrs)

        for key, value in list(attrs.items()):
            if isinstance(value, list) and any(isinstance(v, (bool, np.bool_)) for v in value):
                attrs[key] = [int(v) for v in value]  # protobuf refuses numpy booleans
        for key in _DOUBLE_ATTRIBUTES:
            if key in attrs:
                values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values)
        attrs.pop("nodes_hitrates", None)  # optional; would need the same tensor form
        attrs["op_version"] = ML_OPSET
        names = _names(outputs)
        renamed: list[str] = []
        casts: list[tuple[str, str]] = []
        for name in names:
            if name in self._double_outputs:
                single = self._scope.get_unique_variable_name(f"{name}_float")
                casts.append((single, name))
                renamed.append(single)
            else:
                renamed.append(name)
        result = self._container.add_node(op_type, inputs, renamed, *args, **attrs)
        for single, name in casts:
            self._container.add_node(
                "Cast",
                [single],
                [name],
                name=self._scope.get_unique_operator_name("CastDouble"),
                to=TensorProto.DOUBLE,
            )
        return result


def _names(outputs: str | list[str]) -> list[str]:
    return [outputs] if isinstance(outputs, str) else list(outputs)


def _imputer_converter(convert: Callable[..., Any]) -> Callable[..., None]:
    def converter(scope: Any, operator: Any, container: Any) -> None:
        imputer = operator.raw_operator
        if getattr(imputer, "add_indicator", False):
            raise UnsupportedModelError("SimpleImputer(add_indicator=True) is not converted")
        statistics = np.asarray(imputer.statistics_)
        kind = type(operator.inputs[0].type).__name__
        if kind == "StringTensorType":
            if isinstance(imputer.missing_values, str):
                convert(scope, operator, container)
                return
            if not _is_nan(imputer.missing_values):
                raise UnsupportedModelError(
                    f"SimpleImputer(missing_values={imputer.missing_values!r}) on text"
                )
            # The feed writes MISSING_STRING where the value is missing: impute exactly that.
            marked = copy.copy(imputer)
            marked.missing_values = MISSING_STRING
            operator.raw_operator = marked
            try:
                convert(scope, operator, container)
            finally:
                operator.raw_operator = imputer
            return
        if kind != "DoubleTensorType":
            convert(scope, operator, container)
            return
        if statistics.dtype == object or np.isnan(statistics.astype(np.float64)).any():
            raise UnsupportedModelError(
                "SimpleImputer has features without a statistic (all missing in training), "
                "which scikit-learn drops; the export would not"
            )
        _double_imputer(scope, operator, container, imputer, statistics.astype(np.float64))

    return converter


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _double_imputer(
    scope: Any, operator: Any, container: Any, imputer: Any, statistics: Any
) -> None:
    """Where(missing, statistic, x) in double: ONNX's Imputer op computes in float32 only."""
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    features = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(fill, TensorProto.DOUBLE, [statistics.size], statistics.tolist())
    mask = scope.get_unique_variable_name("missing")
    if _is_nan(imputer.missing_values):
        container.add_node(
            "IsNaN", [features], [mask], name=scope.get_unique_operator_name("IsNaN")
        )
    else:
        marker = scope.get_unique_variable_name("marker")
        container.add_initializer(marker, TensorProto.DOUBLE, [], [float(imputer.missing_values)])
        container.add_node(
            "Equal", [features, marker], [mask], name=scope.get_unique_operator_name("Equal")
        )
    container.add_node(
        "Where",
        [mask, fill, features],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Where"),
    )


# --- XGBoost and LightGBM --------------------------------------------------------------------


def _export_booster(model: Any, adapter: str, description: Description) -> Export:
    """XGBoost / LightGBM through onnxmltools: one float32 matrix input, as both frameworks
    themselves read features (LightGBM compares in double: the gate catches any flipped split).
    """
    from onnxmltools.convert.common.data_types import FloatTensorType

    layout = description.input_frame
    names = list(layout.dtypes)
    strings = sorted(
        {n for n, d in layout.dtypes.items() if not _is_numeric(d)} | set(layout.categories)
    )
    if strings:
        raise UnsupportedModelError(
            f"{adapter} models with categorical inputs ({strings}) are not converted"
        )
    initial = [(MATRIX_INPUT, FloatTensorType([None, len(names)]))]
    if adapter == "xgboost":
        from onnxmltools import convert_xgboost

        proto = convert_xgboost(
            _anonymous_xgboost(model), initial_types=initial, target_opset=BOOSTER_OPSET
        )
    else:
        from onnxmltools import convert_lightgbm

        proto = convert_lightgbm(
            model, initial_types=initial, target_opset=BOOSTER_OPSET, zipmap=False
        )
    options = {"inputs": {MATRIX_INPUT: "float32"}, **_outputs(description)}
    packages = _versions("onnxmltools", "onnx", "onnxruntime")
    return Export(proto, layout.model_copy(update={"kind": "matrix"}), options, packages)


def _anonymous_xgboost(model: Any) -> Any:
    """The model with its feature names dropped: onnxmltools reads features as ``f<index>``."""
    booster = model if type(model).__name__ == "Booster" else model.get_booster()
    if booster.feature_names is None:
        return model
    booster = booster.copy()
    booster.feature_names = None
    booster.feature_types = None
    if type(model).__name__ == "Booster":
        return booster
    clone = copy.copy(model)
    clone._Booster = booster
    return clone
