"""ONNX models run by ONNX Runtime, with external data confined to the bundle."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from rtserve.bundle.manifest import InputFrame, RuntimeSpec
from rtserve.bundle.paths import confine
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import BundleError, UnsafeArtifactError, UnsafePathError, UnsupportedModelError
from rtserve.runtimes.base import Description, ModelOutput, Runtime, RuntimeAdapter, Trust
from rtserve.runtimes.frame import describe_frame, to_matrix
from rtserve.types import AnyArray, Columns, Task

ONNX_FILE = "model/model.onnx"
ONNX_DATA_FILE = "model/model.onnx.data"
#: Models larger than this are written with their weights in a separate external-data file.
EXTERNAL_DATA_THRESHOLD = 1 << 30

_NUMPY_OF_ONNX = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


def as_model_proto(model: Any) -> Any:
    """An ``onnx.ModelProto`` from a proto, serialized bytes or a file path (external data checked)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        check_external_data(model, where="the ONNX model")
        return model
    if isinstance(model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(model))
        check_external_data(proto, where="the ONNX model")
        return proto
    if isinstance(model, (str, Path)):
        path = Path(model)
        proto = onnx.load(str(path), load_external_data=False)
        check_external_data(proto, where=str(path))
        onnx.load_external_data_for_model(proto, str(path.parent))
        return proto
    raise UnsupportedModelError(f"not an ONNX model: {type(model).__name__}")


def check_external_data(
    proto: Any, where: str, *, bundle: Path | None = None, model_file: str = ONNX_FILE
) -> None:
    """Refuse external-data locations that are absolute or climb out of the model's folder.

    With ``bundle`` (loading a bundle's ``model_file``), each location is also confined on disk:
    no symbolic link on the way and the resolved file inside the bundle.
    """
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        path = PurePosixPath(location.replace("\\", "/"))
        unsafe = (
            not location
            or path.is_absolute()
            or ".." in path.parts
            or ":" in location
            or any(ord(char) < 0x20 for char in location)
        )
        if not unsafe and bundle is not None:
            beside = PurePosixPath(model_file).parent / path
            try:
                confine(bundle, beside.as_posix(), field=model_file)
            except UnsafePathError:
                unsafe = True
        if unsafe:
            raise UnsafeArtifactError(
                f"{where}: tensor {tensor.name!r} reads external data from {location!r}, which is "
                "outside the bundle; external data must sit beside the model file",
                field=model_file,
            )


class OnnxRuntime(Runtime):
    """An ONNX Runtime session; ``run`` is thread-safe and releases the GIL."""

    thread_safe = True

    def __init__(self, session: Any, description: Description) -> None:
        self._session = session
        self._layout = description.input_frame
        self._names = list(description.input_frame.dtypes)
        self._options = description.options
        self._outputs = description.outputs
        self._inputs = self._options["inputs"]
        #: Written where a string is missing (exports made by rtserve.runtimes.convert).
        self._missing_string: str | None = self._options.get("missing_string")
        self._classes = (
            np.asarray(self._outputs.classes) if self._outputs.task is Task.CLASSIFICATION else None
        )

    def _feeds(self, columns: Columns) -> dict[str, AnyArray]:
        if self._layout.kind == "matrix":
            ((name, dtype),) = self._inputs.items()
            return {name: to_matrix(columns, self._names, np.dtype(dtype))}
        feeds: dict[str, AnyArray] = {}
        for name, dtype in self._inputs.items():
            column = columns[name]
            feeds[name] = (
                column.astype(object) if dtype == "object" else column.astype(dtype, copy=False)
            ).reshape(-1, 1)
            if dtype == "object" and self._missing_string is not None:
                feeds[name] = _mark_missing(feeds[name], self._missing_string)
        return feeds

    def predict(self, columns: Columns) -> ModelOutput:
        """Predict every row of ``columns`` with the loaded model."""
        outputs = self._session.run(None, self._feeds(columns))
        return decode_outputs(outputs, self._options, self._outputs, self._classes)


def _mark_missing(values: AnyArray, marker: str) -> AnyArray:
    """Replace None (a missing string) by ``marker``: ONNX Runtime would read None as "None"."""
    items = values.ravel().tolist()
    if None not in items:
        return values
    return np.array([marker if v is None else v for v in items], dtype=object).reshape(values.shape)


def decode_outputs(
    outputs: list[Any], options: dict[str, Any], spec: OutputSpec, classes: Any
) -> ModelOutput:
    """Map ONNX outputs (by position) onto label / probabilities / value."""
    if spec.task is Task.CLASSIFICATION:
        label = np.asarray(outputs[options["label_output"]]).reshape(-1)
        proba_index = options.get("probabilities_output")
        if proba_index is None:
            return ModelOutput(label=label)
        raw = outputs[proba_index]
        if isinstance(raw, list):  # ZipMap: one {class: p} dict per row
            proba = np.array(
                [[row[c] for c in spec.classes or []] for row in raw], dtype=np.float32
            )
        else:
            proba = np.asarray(raw)
        return ModelOutput(label=label, probabilities=proba)
    value = np.asarray(outputs[options.get("value_output", 0)])
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    return ModelOutput(value=value)


def _classes_from_graph(proto: Any) -> list[Any] | None:
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                return list(attr.ints)
            if attr.name == "classlabels_strings" and attr.strings:
                return [s.decode("utf-8") for s in attr.strings]
    return None


class OnnxAdapter(RuntimeAdapter):
    """An existing ONNX model (proto, bytes or path) given with a sample of its inputs."""

    name = "onnx"
    packages = ("onnxruntime", "onnx")

    def accepts(self, model: object) -> bool:
        """True for the model types this adapter packages (imports nothing)."""
        if type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx"):
            return True
        return isinstance(model, (str, Path)) and str(model).endswith(".onnx")

    def describe(self, model: Any, sample: Any) -> Description:
        """Task, classes and input layout, learned from the model and the sample frame."""
        proto = as_model_proto(model)
        session = _session(proto.SerializeToString())
        frame: pd.DataFrame = sample
        inputs = session.get_inputs()
        in_types = {i.name: _NUMPY_OF_ONNX.get(i.type) for i in inputs}
        if any(t is None for t in in_types.values()):
            raise UnsupportedModelError(
                f"ONNX inputs of types {[i.type for i in inputs]} are not supported; rtserve feeds "
                "float, double, int32, int64, bool and string tensors"
            )
        columns = [str(c) for c in frame.columns]
        if len(inputs) == 1 and inputs[0].name not in columns:
            shape = inputs[0].shape
            width = shape[-1] if len(shape) == 2 else None
            if isinstance(width, int) and width != len(columns):
                raise UnsupportedModelError(
                    f"the ONNX input {inputs[0].name!r} takes {width} features but the sample "
                    f"has {len(columns)} columns"
                )
            layout = describe_frame(frame, "matrix")
            feed_types = {inputs[0].name: np.dtype(in_types[inputs[0].name]).name}
        else:
            missing = sorted(set(in_types) - set(columns))
            if missing:
                raise UnsupportedModelError(
                    f"the ONNX model's inputs {missing} are not columns of the sample {columns}"
                )
            layout = describe_frame(frame[list(in_types)], "frame")
            feed_types = {
                n: ("object" if t is object else np.dtype(t).name) for n, t in in_types.items()
            }
        options: dict[str, Any] = {"inputs": feed_types}
        outputs = session.get_outputs()
        names = [o.name.lower() for o in outputs]
        label_index = next((i for i, n in enumerate(names) if "label" in n), None)
        if label_index is not None and len(outputs) >= 1:
            options["label_output"] = label_index
            proba_index = next((i for i in range(len(outputs)) if i != label_index), None)
            classes = _classes_from_graph(proto)
            probe = self._probe(session, layout, feed_types, frame)
            if proba_index is not None:
                options["probabilities_output"] = proba_index
                raw = probe[proba_index]
                if isinstance(raw, list) and raw:
                    classes = list(raw[0].keys())
                elif classes is None:
                    classes = list(range(np.asarray(raw).shape[1]))
            if classes is None:
                classes = sorted(set(np.asarray(probe[label_index]).reshape(-1).tolist()))
            spec = OutputSpec(
                task=Task.CLASSIFICATION, classes=classes, probabilities=proba_index is not None
            )
        else:
            options["value_output"] = 0
            probe = self._probe(session, layout, feed_types, frame)
            value = np.asarray(probe[0])
            width = 1 if value.ndim == 1 or value.shape[1] == 1 else int(value.shape[1])
            spec = OutputSpec(task=Task.REGRESSION, width=width)
        return Description(outputs=spec, input_frame=layout, options=options)

    @staticmethod
    def _probe(session: Any, layout: InputFrame, feed_types: dict[str, str], frame: Any) -> Any:
        head = frame.head(2)
        columns = {str(c): head[c].to_numpy() for c in head.columns}
        if layout.kind == "matrix":
            ((name, dtype),) = feed_types.items()
            feeds = {name: to_matrix(columns, list(layout.dtypes), np.dtype(dtype))}
        else:
            feeds = {
                n: (columns[n].astype(object) if t == "object" else columns[n].astype(t)).reshape(
                    -1, 1
                )
                for n, t in feed_types.items()
            }
        return session.run(None, feeds)

    def save(self, model: Any, directory: Path, description: Description) -> RuntimeSpec:
        """Write the artifact in the framework's own format and say how to load it."""
        import onnx

        proto = as_model_proto(model)
        target = directory / ONNX_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        files = [ONNX_FILE]
        if proto.ByteSize() > EXTERNAL_DATA_THRESHOLD:
            onnx.save_model(
                proto,
                str(target),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=PurePosixPath(ONNX_DATA_FILE).name,
            )
            files.append(ONNX_DATA_FILE)
        else:
            onnx.save_model(proto, str(target))
        return RuntimeSpec(
            adapter=self.name, format="onnx", files=files, options=dict(description.options)
        )

    def load(
        self, directory: Path, spec: RuntimeSpec, description: Description, trust: Trust
    ) -> Runtime:
        """Create a runtime from the artifact files listed in ``spec``."""
        import onnx

        relative = spec.files[0] if spec.files else ONNX_FILE
        path = confine(directory, relative, field="runtime.files")
        proto = onnx.load(str(path), load_external_data=False)
        check_external_data(proto, where=relative, bundle=directory, model_file=relative)
        try:
            session = _session(str(path))
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise BundleError(f"{relative}: ONNX Runtime cannot load it ({exc})") from exc
        return OnnxRuntime(session, description)


def _session(model: str | bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
