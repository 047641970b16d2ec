"""A schema compiled once into checks that turn records or columns into validated numpy arrays.

The output is columnar (one array per field, in schema order) so that the runtime can take it
without a pandas object per request. Every violation of every field is collected before raising,
so a client learns all of its mistakes from one answer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from rtserve.bundle.schema import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy
from rtserve.errors import FieldViolation, MalformedRequestError, ValidationError
from rtserve.types import AnyArray, Columns, MatrixColumns

#: Marks a field absent from a record (distinct from an explicit null, treated the same).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMBERS = frozenset({float, int})
#: The JSON type of each field type's values (``Validator.row_fields``).
_JSON_TYPES: dict[FieldType, type] = {
    FieldType.FLOAT: float,
    FieldType.INT: int,
    FieldType.BOOL: bool,
    FieldType.STRING: str,
}
#: At most this many violations are kept per request; the rest are counted in the message.
MAX_VIOLATIONS = 1000

_Check = Callable[[Sequence[Any] | AnyArray, list[FieldViolation]], AnyArray]


def _describe(value: Any) -> str:
    if isinstance(value, (np.generic)):
        value = value.item()  # "3.5", not "np.float64(3.5)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: Shown instead of a value of a field flagged ``pii``: error messages reach clients and logs.
WITHHELD = "<value withheld: pii field>"


def _shown(spec: FieldSpec, value: Any) -> str:
    """How a field's value appears in a message: described, or withheld for a PII field."""
    return WITHHELD if spec.pii else _describe(value)


def _is_null(value: Any) -> bool:
    """None, an absent key, NaN, or a pandas NA/NaT (records made from DataFrames carry these)."""
    if value is None or value is MISSING:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)  # NaN != NaN
    return type(value).__name__ in ("NAType", "NaTType")


def _article(field_type: FieldType) -> str:
    return "an" if field_type is FieldType.INT else "a"


class Validator:
    """Validates input for one schema; build once, call per request."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._names = schema.field_names
        self._name_set = frozenset(self._names)
        self._checks: list[tuple[str, _Check]] = [
            (spec.name, _compile(spec)) for spec in schema.inputs
        ]
        self._reject_extra = schema.extra_fields == "reject"
        #: A row's values in field order, as a tuple (two fields or more: itemgetter's tuple).
        self._row_of = operator.itemgetter(*self._names) if len(self._names) > 1 else None
        #: Every field a float (two or more): rows of plain numbers are checked as one matrix
        #: (``_matrix``), within these bounds per field (finite: NaN and infinities fail them).
        self._matrix_bounds: tuple[AnyArray, AnyArray] | None = None
        if self._row_of is not None and all(s.type is FieldType.FLOAT for s in schema.inputs):
            low = [-np.inf if s.minimum is None else s.minimum for s in schema.inputs]
            high = [np.inf if s.maximum is None else s.maximum for s in schema.inputs]
            largest = np.finfo(np.float64).max
            self._matrix_bounds = (
                np.clip(low, -largest, largest),
                np.clip(high, -largest, largest),
            )

    def records(self, records: Sequence[Any]) -> Columns:
        """Validate a list of ``{field: value}`` rows."""
        if type(records) is not list and (  # type() first: an ABC check costs a microsecond
            not isinstance(records, Sequence) or isinstance(records, (str, bytes))
        ):
            raise MalformedRequestError("instances: expected a list of objects (one per row)")
        violations: list[FieldViolation] = []
        for i, record in enumerate(records):
            if type(record) is not dict and not isinstance(record, Mapping):
                raise MalformedRequestError(
                    f"instances[{i}]: expected an object of field values, got "
                    f"{type(record).__name__}",
                    field=f"instances[{i}]",
                )
            if self._reject_extra and not self._name_set.issuperset(record):
                violations.extend(
                    self._unknown(key, row=i)
                    for key in sorted(set(record) - self._name_set, key=str)
                )
        if self._matrix_bounds is not None and records and not violations:
            matrix = self._matrix(records)
            if matrix is not None:
                return matrix
        if len(records) == 1:  # the usual online request: no inner loop per field
            record = records[0]
            columns = {name: [record.get(name, MISSING)] for name in self._names}
        else:
            columns = self._transpose(records)
        return self._run(columns, len(records), violations)

    def _matrix(self, records: Sequence[Mapping[str, Any]]) -> MatrixColumns | None:
        """All-float rows as one matrix, when every row has every field as a finite int or
        float within its bounds (what each field's own check would pass); None otherwise, and
        the per-field checks say what is wrong. A few numpy calls per request instead of a
        Python check and an array per field."""
        try:
            rows = list(map(self._row_of, records))  # type: ignore[arg-type]
        except KeyError:
            return None  # a row lacks a field
        if not _NUMBERS.issuperset(map(type, chain.from_iterable(rows))):
            return None  # a null, a string, a bool, ...
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:
            return None
        return self._bounded(matrix)

    @property
    def all_floats(self) -> bool:
        """Every field (two or more) is a float: rows can be checked as one matrix
        (``float_rows``, and ``records`` on its own)."""
        return self._matrix_bounds is not None

    @property
    def row_fields(self) -> list[tuple[str, type, bool]]:
        """Each field's name, JSON type and whether it may be missing: the rows ``rows`` takes
        (``protocol.records.RowsDecoder`` reads them)."""
        return [
            (spec.name, _JSON_TYPES[spec.type], spec.missing is not MissingPolicy.REJECT)
            for spec in self.schema.inputs
        ]

    def rows(self, rows: Sequence[tuple[Any, ...]]) -> Columns | None:
        """Validate rows of values in field order, each of its field's type or None where the
        field may be missing (``row_fields``); None when any value fails its field's check
        (``records`` of the same rows then says which, in the client's own values)."""
        if self._matrix_bounds is not None:
            return self.float_rows(rows)
        columns = dict(zip(self._names, map(list, zip(*rows, strict=True)), strict=True))
        try:
            return self._run(columns, len(rows), [])
        except ValidationError:
            return None

    def float_rows(self, rows: Sequence[tuple[float, ...]]) -> MatrixColumns | None:
        """Validate rows of floats in field order of an ``all_floats`` schema; None when a value
        is out of its field's bounds or not finite (``records`` of the same rows then says
        which)."""
        if self._matrix_bounds is None:
            raise TypeError("float_rows needs a schema whose every field is a float")
        width = len(self._names)
        flat = np.fromiter(chain.from_iterable(rows), np.float64, count=len(rows) * width)
        return self._bounded(flat.reshape(len(rows), width))

    def _bounded(self, matrix: AnyArray) -> MatrixColumns | None:
        """The matrix's columns if every value is within its field's (finite) bounds."""
        low, high = self._matrix_bounds  # type: ignore[misc]
        if not np.logical_and(low <= matrix, matrix <= high).all():
            return None
        return MatrixColumns(self._names, matrix)

    def _transpose(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """One list of values per field. When every row has every field (the usual case), the
        rows are read and transposed in C (``itemgetter``, ``zip``) instead of one ``get`` per
        field and row; otherwise a missing value is ``MISSING``."""
        names = self._names
        if self._row_of is not None and records:
            try:
                rows = list(map(self._row_of, records))
            except KeyError:
                pass  # a row lacks a field
            else:
                return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))
        return {name: [record.get(name, MISSING) for record in records] for name in names}

    def columns(self, columns: Mapping[str, Sequence[Any] | AnyArray]) -> Columns:
        """Validate named columns (e.g. one Open Inference Protocol input per field)."""
        if not isinstance(columns, Mapping):
            raise MalformedRequestError(
                f"inputs: expected a mapping of field name to values, got {type(columns).__name__}"
            )
        for name, values in columns.items():
            if not _is_column(values):
                raise MalformedRequestError(
                    f"{name}: expected a list (or 1-D array) of values, one per row, got "
                    f"{_describe(values)}",
                    field=str(name),
                )
        lengths = {str(name): len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise MalformedRequestError(
                f"inputs: all fields need the same number of rows, got {lengths}"
            )
        n_rows = next(iter(lengths.values()), 0)
        violations: list[FieldViolation] = []
        if self._reject_extra:
            violations.extend(
                self._unknown(key) for key in sorted(set(columns) - self._name_set, key=str)
            )
        present: dict[str, Sequence[Any] | AnyArray] = {
            name: _plain_column(columns[name]) if name in columns else [MISSING] * n_rows
            for name in self._names
        }
        return self._run(present, n_rows, violations)

    def frame(self, frame: Any) -> Columns:
        """Validate a pandas DataFrame (nulls of any flavour count as missing)."""
        import pandas as pd  # local: only notebook and batch callers pass DataFrames

        if not isinstance(frame, pd.DataFrame):
            raise MalformedRequestError(f"expected a DataFrame, got {type(frame).__name__}")
        if not frame.columns.is_unique:
            duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise MalformedRequestError(
                f"columns {duplicated} appear more than once; each field needs one column",
                field=duplicated[0],
            )
        out: dict[str, Sequence[Any] | AnyArray] = {}
        for name in frame.columns:
            series = frame[name]
            if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiub":
                out[str(name)] = series.to_numpy()
            else:
                # A copy: an object column's array is the frame's own (read-only under pandas'
                # copy-on-write), and the caller's frame must not change either way.
                values = series.to_numpy(dtype=object, copy=True)
                values[pd.isna(values)] = None  # NaN, pd.NA and NaT alike
                out[str(name)] = values
        return self.columns(out)

    def _unknown(self, key: object, row: int | None = None) -> FieldViolation:
        return FieldViolation(
            field=str(key),
            rule="unknown_field",
            message=f"{key}: not a field of this model; expected fields are {self._names}",
            row=row,
        )

    def _run(
        self,
        columns: Mapping[str, Sequence[Any] | AnyArray],
        n_rows: int,
        violations: list[FieldViolation],
    ) -> Columns:
        if n_rows == 0:
            raise MalformedRequestError("the request holds no rows; send at least one")
        result: Columns = {}
        for name, check in self._checks:
            result[name] = check(columns[name], violations)
        if violations:
            raise ValidationError(violations[:MAX_VIOLATIONS])
        return result


def _is_column(values: Any) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 1
    if isinstance(values, (str, bytes, bytearray, Mapping)):
        return False
    if hasattr(values, "ndim") and hasattr(values, "__len__"):  # a pandas Series / Index
        return int(values.ndim) == 1
    return isinstance(values, Sequence)


def _plain_column(values: Any) -> Sequence[Any] | AnyArray:
    """A list or numpy array, positionally indexable (a pandas Series becomes an array)."""
    if isinstance(values, (np.ndarray, list, tuple)):
        return values
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, np.dtype) and hasattr(values, "to_numpy"):
        return values.to_numpy()  # type: ignore[no-any-return]
    if hasattr(values, "to_numpy"):
        return values.to_numpy(dtype=object, na_value=None)  # type: ignore[no-any-return]
    return list(values)


def _compile(spec: FieldSpec) -> _Check:
    if spec.type is FieldType.FLOAT:
        return _with_fast_path(_float_fast(spec), _float_check(spec))
    if spec.type is FieldType.INT:
        return _with_fast_path(_int_fast(spec), _int_check(spec))
    if spec.type is FieldType.BOOL:
        return _bool_check(spec)
    return _with_fast_path(_string_fast(spec), _string_check(spec))


#: Lists up to this long (typical online requests) try the pure-Python fast path first.
_FAST_PATH_ROWS = 64
_Fast = Callable[[Sequence[Any]], AnyArray | None]


def _with_fast_path(fast: _Fast, general: _Check) -> _Check:
    """Try ``fast`` on short lists; it returns None at the first value that needs a closer look.

    For one or a few rows, numpy's per-call overhead dominates the general check, so clean
    values (right type, present, finite, within bounds, allowed) are checked in plain Python and
    turned into an array once. Anything else goes through the general check, which reports it.
    """

    def check(values: Sequence[Any] | AnyArray, violations: list[FieldViolation]) -> AnyArray:
        if not isinstance(values, np.ndarray) and len(values) <= _FAST_PATH_ROWS:
            result = fast(values)
            if result is not None:
                return result
        return general(values, violations)

    return check


def _float_fast(spec: FieldSpec) -> _Fast:
    low = -np.inf if spec.minimum is None else spec.minimum
    high = np.inf if spec.maximum is None else spec.maximum
    fill = _missing_fill(spec, low, high)

    def fast(values: Sequence[Any]) -> AnyArray | None:
        gaps = False
        for v in values:
            kind = type(v)
            # NaN fails both comparisons; inf - inf is NaN, so non-finite values drop out too
            if (kind is not float and kind is not int) or not low <= v <= high or v - v != 0:
                if (v is None or v is MISSING) and fill is not None:
                    gaps = True
                    continue
                return None
        if gaps:
            values = [fill if v is None or v is MISSING else v for v in values]
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:
            return None

    return fast


def _missing_fill(spec: FieldSpec, low: float, high: float) -> float | None:
    """What a missing number becomes without a violation (NaN, or the imputed constant inside
    the declared bounds); None when a missing value needs the general check's report."""
    if spec.missing is MissingPolicy.PASS:
        return np.nan
    if spec.missing is MissingPolicy.IMPUTE and low <= float(spec.impute) <= high:  # type: ignore[arg-type]
        return float(spec.impute)  # type: ignore[arg-type]
    return None


def _enforced_allowed(spec: FieldSpec) -> frozenset[Any] | None:
    """The allowed values when unseen ones are rejected; None when anything passes."""
    if spec.allowed is not None and spec.unseen is UnseenPolicy.REJECT:
        return frozenset(spec.allowed)
    return None


def _int_fast(spec: FieldSpec) -> _Fast:
    low = max(_INT64_MIN, -np.inf if spec.minimum is None else spec.minimum)
    high = min(_INT64_MAX, np.inf if spec.maximum is None else spec.maximum)
    allowed = _enforced_allowed(spec)

    def fast(values: Sequence[Any]) -> AnyArray | None:
        for v in values:
            if type(v) is not int or not low <= v <= high:
                return None
            if allowed is not None and v not in allowed:
                return None
        return np.array(values, dtype=np.int64)

    return fast


def _string_fast(spec: FieldSpec) -> _Fast:
    allowed = _enforced_allowed(spec)
    # a missing string becomes None (passed on) or the imputed constant, as in the general check
    fills = spec.missing is not MissingPolicy.REJECT
    fill = spec.impute if spec.missing is MissingPolicy.IMPUTE else None

    def fast(values: Sequence[Any]) -> AnyArray | None:
        gaps = False
        for v in values:
            if type(v) is not str:
                if fills and (v is None or v is MISSING):
                    gaps = True
                    continue
                return None
            if allowed is not None and v not in allowed:
                return None
        if gaps:
            values = [fill if v is None or v is MISSING else v for v in values]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    return fast


def _missing_rule(
    spec: FieldSpec, missing_rows: AnyArray, violations: list[FieldViolation]
) -> None:
    if spec.missing is MissingPolicy.REJECT:
        violations.extend(
            FieldViolation(
                field=spec.name,
                rule="required",
                message=f"{spec.name}: a value is required (missing values are rejected "
                "by the schema)",
                row=int(row),
            )
            for row in missing_rows[: max(MAX_VIOLATIONS - len(violations), 1)]
        )


def _type_violation(spec: FieldSpec, value: Any, row: int) -> FieldViolation:
    return FieldViolation(
        field=spec.name,
        rule="type",
        message=f"{spec.name}: {_shown(spec, value)} is not {_article(spec.type)} {spec.type.value}",
        row=row,
    )


def _bounds(spec: FieldSpec, arr: AnyArray, violations: list[FieldViolation]) -> None:
    """Declared minimum / maximum; NaN (missing or already refused) compares as neither."""
    with np.errstate(invalid="ignore"):
        if spec.minimum is not None:
            violations.extend(
                FieldViolation(
                    field=spec.name,
                    rule="minimum",
                    message=f"{spec.name}: {_shown(spec, arr[row])} is below the minimum "
                    f"{spec.minimum} (declared in the schema)",
                    row=int(row),
                )
                for row in np.flatnonzero(arr < spec.minimum)[:MAX_VIOLATIONS]
            )
        if spec.maximum is not None:
            violations.extend(
                FieldViolation(
                    field=spec.name,
                    rule="maximum",
                    message=f"{spec.name}: {_shown(spec, arr[row])} is above the maximum "
                    f"{spec.maximum} (declared in the schema)",
                    row=int(row),
                )
                for row in np.flatnonzero(arr > spec.maximum)[:MAX_VIOLATIONS]
            )


def _float_check(spec: FieldSpec) -> _Check:
    def check(values: Sequence[Any] | AnyArray, violations: list[FieldViolation]) -> AnyArray:
        refused: list[int] = []  # rows already reported as a wrong type
        arr: AnyArray | None = None
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            arr = values.astype(np.float64)
        elif {type(v) for v in values} <= {float, int}:
            try:
                arr = np.array(values, dtype=np.float64)
            except OverflowError:
                arr = None
        if arr is None:
            arr = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                if _is_null(v):
                    arr[i] = np.nan
                elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
                    v, (bool, np.bool_)
                ):
                    try:
                        arr[i] = v
                    except OverflowError:
                        arr[i] = np.inf
                else:
                    violations.append(_type_violation(spec, v, i))
                    refused.append(i)
                    arr[i] = np.nan
        violations.extend(
            FieldViolation(
                field=spec.name,
                rule="finite",
                message=f"{spec.name}: {_shown(spec, values[row])} is not a finite number "
                "(or too large for a 64-bit float)",
                row=int(row),
            )
            for row in np.flatnonzero(np.isinf(arr))[:MAX_VIOLATIONS]
        )
        missing = np.isnan(arr)
        missing[refused] = False
        if missing.any():
            _missing_rule(spec, np.flatnonzero(missing), violations)
            if spec.missing is MissingPolicy.IMPUTE:
                arr[missing] = float(spec.impute)  # type: ignore[arg-type]
        _bounds(spec, arr, violations)
        return arr

    return check


def _int_check(spec: FieldSpec) -> _Check:
    allowed = frozenset(spec.allowed) if spec.allowed is not None else None
    reject_unseen = allowed is not None and spec.unseen is UnseenPolicy.REJECT

    def check(values: Sequence[Any] | AnyArray, violations: list[FieldViolation]) -> AnyArray:
        refused: set[int] = set()  # rows already reported; they are neither missing nor bounded
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            ints: list[int | None] = [int(v) for v in values]
        else:
            ints = []
            for i, v in enumerate(values):
                if _is_null(v):
                    ints.append(None)
                elif (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))) or (
                    isinstance(v, (float, np.floating)) and float(v).is_integer()
                ):
                    ints.append(int(v))
                else:
                    violations.append(_type_violation(spec, v, i))
                    refused.add(i)
                    ints.append(None)
        for i, v in enumerate(ints):
            if v is None:
                continue
            if not _INT64_MIN <= v <= _INT64_MAX:
                violations.append(
                    FieldViolation(
                        field=spec.name,
                        rule="type",
                        message=f"{spec.name}: {_shown(spec, v)} does not fit a 64-bit integer",
                        row=i,
                    )
                )
                refused.add(i)
                ints[i] = None
            elif reject_unseen and v not in allowed:  # type: ignore[operator]
                violations.append(_unseen_violation(spec, v, i))
        missing_rows = np.array(
            [i for i, v in enumerate(ints) if v is None and i not in refused], dtype=np.int64
        )
        if missing_rows.size:
            _missing_rule(spec, missing_rows, violations)
        if refused or (missing_rows.size and spec.missing is not MissingPolicy.IMPUTE):
            # a gap: ints travel as float NaN, as pandas itself would hold them
            arr: AnyArray = np.array(
                [np.nan if v is None else v for v in _imputed(spec, ints, refused)],
                dtype=np.float64,
            )
        else:
            arr = np.array(_imputed(spec, ints, refused), dtype=np.int64)
        _bounds(spec, arr, violations)
        return arr

    return check


def _imputed(spec: FieldSpec, ints: list[int | None], refused: set[int]) -> list[int | None]:
    if spec.missing is not MissingPolicy.IMPUTE:
        return ints
    return [spec.impute if v is None and i not in refused else v for i, v in enumerate(ints)]  # type: ignore[misc]


def _bool_check(spec: FieldSpec) -> _Check:
    def check(values: Sequence[Any] | AnyArray, violations: list[FieldViolation]) -> AnyArray:
        if isinstance(values, np.ndarray) and values.dtype.kind == "b":
            return values.astype(bool)
        out: list[bool | None] = []
        for i, v in enumerate(values):
            if _is_null(v):
                out.append(spec.impute if spec.missing is MissingPolicy.IMPUTE else None)  # type: ignore[arg-type]
            elif isinstance(v, (bool, np.bool_)):
                out.append(bool(v))
            else:
                violations.append(_type_violation(spec, v, i))
                out.append(False)
        missing_rows = np.array([i for i, v in enumerate(out) if v is None], dtype=np.int64)
        if missing_rows.size:
            _missing_rule(spec, missing_rows, violations)
            return np.array(out, dtype=object)
        return np.array(out, dtype=bool)

    return check


def _unseen_violation(spec: FieldSpec, value: Any, row: int) -> FieldViolation:
    shown = spec.allowed[:10] if spec.allowed and not spec.pii else []
    more = (
        f" (and {len(spec.allowed) - 10} more)"
        if spec.allowed and len(spec.allowed) > 10 and not spec.pii
        else ""
    )
    return FieldViolation(
        field=spec.name,
        rule="allowed",
        message=f"{spec.name}: {_shown(spec, value)} is not one of the allowed values {shown}{more}"
        if not spec.pii
        else f"{spec.name}: {WITHHELD} is not one of the allowed values (not listed for a pii field)",
        row=row,
    )


def _string_check(spec: FieldSpec) -> _Check:
    allowed = frozenset(spec.allowed) if spec.allowed is not None else None
    reject_unseen = allowed is not None and spec.unseen is UnseenPolicy.REJECT
    impute = spec.impute if spec.missing is MissingPolicy.IMPUTE else None

    def check(values: Sequence[Any] | AnyArray, violations: list[FieldViolation]) -> AnyArray:
        arr = np.empty(len(values), dtype=object)
        missing_rows: list[int] = []
        for i, v in enumerate(values):
            if isinstance(v, str):
                v = str(v) if type(v) is not str else v  # numpy.str_ and other subclasses
                if reject_unseen and v not in allowed:  # type: ignore[operator]
                    violations.append(_unseen_violation(spec, v, i))
                arr[i] = v
            elif _is_null(v):
                missing_rows.append(i)
                arr[i] = impute
            else:
                violations.append(_type_violation(spec, v, i))
                arr[i] = None
        if missing_rows:
            _missing_rule(spec, np.array(missing_rows, dtype=np.int64), violations)
        return arr

    return check
