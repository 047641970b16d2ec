"""Tensor data of the Open Inference Protocol: JSON arrays and binary buffers to numpy and back.

Reading is strict about element types (``FP32`` data are numbers, ``BOOL`` data are ``true`` /
``false``, ``BYTES`` data are strings) and about ranges (a value that does not fit the datatype is
an error, never a silent wrap-around). The common shapes, a flat array or an array of rows, are
decoded by msgspec into typed lists in one pass; anything else (deeper nesting, ``null`` for a
missing value, a wrong element) takes a slower path that also names the offending element.

A request's shape is checked before anything is allocated or reshaped for it (``check_shape``): at
most ``MAX_RANK`` dimensions, none negative, no more rows and elements than ``TensorLimits``
allow. Only then is the data read, and its element count must equal the shape's.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import numpy as np

from rtserve.errors import MalformedRequestError, PayloadTooLargeError
from rtserve.protocol.v2.types import NUMPY_DTYPES
from rtserve.settings import LimitSettings
from rtserve.types import AnyArray

_KIND = {
    name: "str" if name == "BYTES" else "bool" if name == "BOOL" else dtype.kind
    for name, dtype in NUMPY_DTYPES.items()
}
_PY_TYPE: dict[str, type] = {"f": float, "i": int, "u": int, "bool": bool, "str": str}
_FLAT = {kind: msgspec.json.Decoder(list[tp]) for kind, tp in _PY_TYPE.items()}  # type: ignore[valid-type]
_ROWS = {kind: msgspec.json.Decoder(list[list[tp]]) for kind, tp in _PY_TYPE.items()}  # type: ignore[valid-type]
_ANY = msgspec.json.Decoder()
_LENGTH = struct.Struct("<I")
#: Nesting of JSON tensor data deeper than this is refused whatever the shape says.
MAX_NESTING = 32
#: Most dimensions an input tensor may have. A tabular model reads ``[N]`` or ``[N, F]``; numpy's
#: own ceiling (64) would turn a rank-70 shape into a crash instead of a client error.
MAX_RANK = 8
_LIMIT_DEFAULTS = LimitSettings()

_WHAT = {
    "f": "numbers",
    "i": "integers",
    "u": "non-negative integers",
    "bool": "true or false",
    "str": "strings",
}


class Where(NamedTuple):
    """Which tensor a problem is in: ``field`` for the error (``inputs[0].data``) and its name."""

    field: str
    name: str

    def __str__(self) -> str:
        return f"{self.field} (input {self.name!r})"


@dataclass(frozen=True)
class TensorLimits:
    """How large a request's input tensors may be: rows (the first dimension) and elements."""

    max_rows: int = _LIMIT_DEFAULTS.max_instances
    max_elements: int = _LIMIT_DEFAULTS.max_tensor_elements

    @classmethod
    def from_settings(cls, limits: LimitSettings) -> TensorLimits:
        """The bounds ``settings.limits`` configure (``max_instances``, ``max_tensor_elements``)."""
        return cls(max_rows=limits.max_instances, max_elements=limits.max_tensor_elements)


def check_shape(shape: tuple[int, ...], limits: TensorLimits, field: str, name: str) -> None:
    """Refuse a shape no data may be read or reshaped for: too many dimensions, a negative one,
    more rows or elements than ``limits`` allow (413), even when another dimension is 0."""
    at = f"{field}: {list(shape) if len(shape) <= MAX_RANK else f'a rank-{len(shape)} shape'}"
    if len(shape) > MAX_RANK:
        raise MalformedRequestError(
            f"{at} (input {name!r}) has {len(shape)} dimensions, more than the {MAX_RANK} this "
            "server reads; send [N] or [N, F]",
            field=field,
        )
    if any(dim < 0 for dim in shape):
        raise MalformedRequestError(
            f"{at} (input {name!r}) has a negative dimension; a request's shape gives the actual "
            "size of every dimension",
            field=field,
        )
    if shape and shape[0] > limits.max_rows:
        raise PayloadTooLargeError(
            f"{at} (input {name!r}) declares {shape[0]} rows, more than the limit of "
            f"{limits.max_rows} per request; split the request into smaller batches",
            field=field,
        )
    biggest = max(shape, default=1)
    count = element_count(shape)
    if count > limits.max_elements or biggest > limits.max_elements:
        what = f"{count} elements" if count else f"a dimension of {biggest}"
        raise PayloadTooLargeError(
            f"{at} (input {name!r}) declares {what}, more than the limit of "
            f"{limits.max_elements} elements per tensor; split the request into smaller batches",
            field=field,
        )


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of a tensor of this shape (exact, whatever the size)."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def from_json(raw: msgspec.Raw, datatype: str, shape: tuple[int, ...], where: Where) -> AnyArray:
    """The ``data`` of a JSON input as an array of ``shape`` (checked by ``check_shape``);
    ``where`` names it in errors."""
    kind = _KIND[datatype]
    flat: list[Any] | None = None
    try:
        flat = _FLAT[kind].decode(raw)
    except msgspec.MsgspecError:
        if len(shape) >= 2:
            try:
                flat = list(itertools.chain.from_iterable(_ROWS[kind].decode(raw)))
            except msgspec.MsgspecError:
                flat = None
    if flat is not None:
        _check_count(len(flat), shape, where)
        array = _typed(flat, datatype, where)
    else:
        array = _fallback(raw, datatype, shape, where)
    return array.reshape(shape)


def from_binary(
    buffer: bytes | memoryview, datatype: str, shape: tuple[int, ...], where: Where
) -> AnyArray:
    """A binary-extension tensor (little-endian, row-major; BYTES length-prefixed) of ``shape``
    (checked by ``check_shape``)."""
    dtype = NUMPY_DTYPES[datatype]
    if datatype == "BYTES":
        array = _bytes_elements(buffer, where)
    elif datatype == "BOOL":
        raw = np.frombuffer(buffer, dtype=np.uint8)
        if raw.size and int(raw.max()) > 1:
            bad = int(np.flatnonzero(raw > 1)[0])
            raise MalformedRequestError(
                f"{where}: binary BOOL element {bad} is the byte {int(raw[bad])}; BOOL elements "
                "are one byte each, 0 for false and 1 for true",
                field=where.field,
            )
        array = raw.view(np.bool_)
    else:
        if len(buffer) % dtype.itemsize:
            raise MalformedRequestError(
                f"{where}: {len(buffer)} bytes of binary data is not a whole number of "
                f"{datatype} elements ({dtype.itemsize} bytes each); check binary_data_size",
                field=where.field,
            )
        array = np.frombuffer(buffer, dtype=dtype)
    _check_count(array.size, shape, where)
    return array.reshape(shape)


def to_json(data: AnyArray, datatype: str) -> list[Any]:
    """The flat, row-major JSON ``data`` list of an output tensor."""
    values: list[Any] = np.asarray(data).ravel().tolist()
    if datatype == "BYTES":
        return [_text(v) for v in values]
    return values


def to_binary(data: AnyArray, datatype: str) -> bytes:
    """The binary-extension encoding of an output tensor."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in np.asarray(data, dtype=object).ravel().tolist():
            encoded = value if isinstance(value, bytes) else _text(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    return np.ascontiguousarray(data, dtype=NUMPY_DTYPES[datatype]).tobytes()


# --- helpers ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _check_count(count: int, shape: tuple[int, ...], where: Where) -> None:
    expected = element_count(shape)
    if count != expected:
        raise MalformedRequestError(
            f"{where}: holds {count} element(s) but shape {list(shape)} needs {expected}; "
            "send exactly one element per entry of the shape (row-major, flat or nested)",
            field=where.field,
        )


def _out_of_range(where: Where, datatype: str, detail: str) -> MalformedRequestError:
    return MalformedRequestError(
        f"{where}: {detail} does not fit the datatype {datatype}; send a datatype that "
        "holds it (e.g. INT64 or FP64)",
        field=where.field,
    )


def _typed(flat: list[Any], datatype: str, where: Where) -> AnyArray:
    """An array of ``datatype`` from a flat list whose elements already have the right type."""
    dtype = NUMPY_DTYPES[datatype]
    kind = _KIND[datatype]
    if kind == "str":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array
    if kind == "bool":
        return np.array(flat, dtype=np.bool_)
    if kind == "f":
        wide = np.array(flat, dtype=np.float64)
        if dtype.itemsize < 8 and wide.size:
            limit = float(np.finfo(dtype).max)
            with np.errstate(invalid="ignore"):
                too_big = np.abs(wide) > limit
            if too_big.any():
                value = float(wide[int(np.flatnonzero(too_big)[0])])
                raise _out_of_range(where, datatype, f"the value {value!r}")
            return wide.astype(dtype)
        return wide
    wide_dtype = np.uint64 if datatype == "UINT64" else np.int64
    try:
        ints = np.array(flat, dtype=wide_dtype)
    except OverflowError as exc:
        bounds = np.iinfo(wide_dtype)
        bad_value = next((v for v in flat if not bounds.min <= v <= bounds.max), "a value")
        raise _out_of_range(where, datatype, f"the value {bad_value}") from exc
    if dtype.itemsize < 8:
        info = np.iinfo(dtype)
        if ints.size and (int(ints.min()) < info.min or int(ints.max()) > info.max):
            bad = int(np.flatnonzero((ints < info.min) | (ints > info.max))[0])
            raise _out_of_range(where, datatype, f"the value {int(ints[bad])}")
        return ints.astype(dtype)
    return ints


def _fallback(raw: msgspec.Raw, datatype: str, shape: tuple[int, ...], where: Where) -> AnyArray:
    """The slow path: any nesting up to the shape's rank, ``null`` elements, precise errors."""
    try:
        document = _ANY.decode(raw)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise MalformedRequestError(
            f"{where}: cannot be read ({exc}); send a flat or nested JSON array",
            field=where.field,
        ) from exc
    if not isinstance(document, list):
        raise MalformedRequestError(
            f"{where}: expected an array of tensor elements, got {_json_type(document)}; "
            "send the elements as a (flat or nested) JSON array",
            field=where.field,
        )
    depth_limit = min(max(len(shape), 1), MAX_NESTING)
    leaves: list[Any] = []
    _flatten(document, 1, depth_limit, leaves, where)
    _check_count(len(leaves), shape, where)
    kind = _KIND[datatype]
    expected = _PY_TYPE[kind]
    missing = False
    for index, value in enumerate(leaves):
        if value is None:
            missing = True
        elif not _is(value, expected):
            raise MalformedRequestError(
                f"{where}: element {index} is {_show(value)} but {datatype} data are "
                f"{_WHAT[kind]}; send {_WHAT[kind]} (or null for a missing value) or change "
                "the datatype",
                field=where.field,
            )
    if not missing:
        return _typed(leaves, datatype, where)
    if kind == "f" or kind in "iu":
        if kind != "f":
            present = [v for v in leaves if v is not None]
            _typed(present, datatype, where)  # range check of the values that are there
        return np.array([np.nan if v is None else v for v in leaves], dtype=np.float64)
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array


def _flatten(value: list[Any], depth: int, limit: int, out: list[Any], where: Where) -> None:
    for item in value:
        if isinstance(item, list):
            if depth >= limit:
                raise MalformedRequestError(
                    f"{where}: arrays are nested deeper than the shape's {limit} dimension(s); "
                    "nest at most once per dimension, or send a flat array",
                    field=where.field,
                )
            _flatten(item, depth + 1, limit, out, where)
        else:
            out.append(item)


def _is(value: Any, expected: type) -> bool:
    if expected is float:
        return type(value) in (int, float)
    return type(value) is expected


def _bytes_elements(buffer: bytes | memoryview, where: Where) -> AnyArray:
    view = memoryview(buffer)
    size = len(view)
    elements: list[str] = []
    offset = 0
    while offset < size:
        if size - offset < 4:
            raise MalformedRequestError(
                f"{where}: binary BYTES data end inside a 4-byte length prefix at byte {offset}; "
                "each element is a 4-byte little-endian length followed by that many bytes",
                field=where.field,
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if length > size - offset:
            raise MalformedRequestError(
                f"{where}: binary BYTES element {len(elements)} declares {length} bytes but only "
                f"{size - offset} remain; each element is a 4-byte little-endian length followed "
                "by that many bytes",
                field=where.field,
            )
        try:
            elements.append(str(view[offset : offset + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise MalformedRequestError(
                f"{where}: binary BYTES element {len(elements)} is not valid UTF-8 ({exc.reason} "
                f"at byte {exc.start}); send text encoded as UTF-8",
                field=where.field,
            ) from exc
        offset += length
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return "an array"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."
