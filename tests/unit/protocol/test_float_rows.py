"""Float rows: an all-float model's predict requests read straight into floats.

``RowsDecoder`` plus ``Validator.float_rows`` is the records lane's path for a model whose
every input is a float; ``decode_predict_request`` plus ``Validator.records`` is every other
path. The two must agree on every body: the same columns (values, signs, dtypes) when the fast
path takes it, and no answer at all from it (None) when the general path would refuse it or
read it otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtserve import FieldSpec, FieldType, Schema
from rtserve.bundle.schema import OutputSpec
from rtserve.bundle.validator import Validator
from rtserve.protocol.records import RowsDecoder
from rtserve.types import MatrixColumns, Task
from tests import rows_support
from tests.rows_support import body_of

FLOATS = Schema(
    inputs=[
        FieldSpec(name="a", type=FieldType.FLOAT),
        FieldSpec(name="b", type=FieldType.FLOAT, minimum=0.0, maximum=10.0),
        FieldSpec(name="odd name: not an identifier", type=FieldType.FLOAT),
    ],
    outputs=OutputSpec(task=Task.REGRESSION),
)
NAMES = FLOATS.field_names
VALIDATOR = Validator(FLOATS)
DECODER = RowsDecoder(VALIDATOR.row_fields, reject_extra=True)
GOOD = {"a": 1.5, "b": 2.0, NAMES[2]: -3.25}


def general(body: bytes) -> Any:
    return rows_support.general(VALIDATOR, body)


def fast(body: bytes) -> Any:
    """The float path's columns, or None when it leaves the body to the general path."""
    return rows_support.typed(DECODER, VALIDATOR, body)


def odd(text: str) -> str:
    """``text`` with its field ``"C"`` renamed to the schema's third, odd, name."""
    return text.replace('"C"', json.dumps(NAMES[2]))


_SPECIAL = st.sampled_from(
    [0.0, -0.0, 10.0, 10.000001, 2**53 + 1, -(2**64) - 1, 10**300, 10**400, 1e308]
)
_NOT_NUMBERS = st.sampled_from([None, True, False, "1.5", [1.0], {"x": 1}])


def _values(low: float, high: float) -> st.SearchStrategy[Any]:
    """Mostly plain numbers within [low, high] (so that many rows take the float path), and
    now and then a special number or something else."""
    plain = st.one_of(st.integers(int(low), int(high)), st.floats(low, high))
    return st.one_of(*[plain] * 10, _SPECIAL, _NOT_NUMBERS)


_ROW = st.fixed_dictionaries(
    {"a": _values(-1e6, 1e6), "b": _values(0, 10), NAMES[2]: _values(-10, 10)}
)
_ODD_ROW = st.one_of(
    _ROW.map(lambda row: {**row, "extra": 1.0}),  # an unknown field
    _ROW.map(lambda row: dict(list(row.items())[1:])),  # the first field missing
)
#: Lists of rows, most of them with every field (and so worth the float path's while).
_ROWS = st.lists(st.one_of(_ROW, _ROW, _ROW, _ROW, _ROW, _ODD_ROW), max_size=4)


def _plain(rows: list[dict[str, Any]], extra: dict[str, Any]) -> bool:
    """Every row has exactly the schema's fields, each an int or a float; no parameters."""
    return (
        bool(rows)
        and not extra.get("parameters")
        and all(
            set(row) == set(NAMES) and all(type(v) in (int, float) for v in row.values())
            for row in rows
        )
    )


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    _ROWS, st.sampled_from([{}, {"parameters": None}, {"parameters": {}}, {"parameters": {"k": 1}}])
)
def test_the_float_path_gives_the_general_paths_columns_or_leaves_the_body_to_it(
    rows: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    """On generated bodies (ints, floats, -0.0, integers past 2^53 and 2^64 and beyond float
    range, nulls, bools, strings, lists, objects, unknown and missing fields, parameters), the
    float path's columns are exactly the general path's whenever it takes the body; and it
    takes every body of plain numbers that the general path accepts."""
    body = body_of(rows, **extra)
    taken, expected = fast(body), general(body)
    if taken is not None:
        assert taken == expected
    elif _plain(rows, extra):
        assert not isinstance(expected, dict), "plain valid numbers left to the general path"


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        (odd('{"instances": [{"a": -0, "b": 0, "C": -0.0}]}'), True),
        (odd('{"instances": [{"a": 1e308, "b": 1E+1, "C": 5e-324}]}'), True),
        (odd('{"instances": [{"a": 1, "b": 0, "C": 0}], "other": [1, [2]]}'), False),
        (odd('{"instances": [{"a": 1, "b": 0, "C": 0, "a": 2}]}'), True),
        (odd('{"instances": [{"a": "x", "a": 3, "b": 0, "C": 0}]}'), False),
    ],
    ids=["zeros", "extremes", "other top-level key", "key again", "key again, string first"],
)
def test_json_that_json_dumps_does_not_write_is_read_as_the_general_path_reads_it(
    text: str, taken: bool
) -> None:
    """-0 is 0.0 but -0.0 stays negative, exponents and subnormals, a repeated key's last
    value: the float path reads them as the general path does, or leaves the body to it (a
    string seen first; another top-level key, whose value the general path bounds in depth)."""
    body = text.encode()
    columns = fast(body)
    assert (columns is not None) == taken
    if taken:
        assert columns == general(body)


def test_plain_numbers_take_the_float_path_as_one_matrix() -> None:
    """Ints and floats within bounds: the decoder gives one tuple per row in field order and
    the validator one [rows, fields] matrix whose columns are the result."""
    rows = DECODER.decode(body_of([GOOD, {"a": 1, "b": 10, NAMES[2]: 0}]))
    assert rows == [(1.5, 2.0, -3.25), (1.0, 10.0, 0.0)]
    columns = VALIDATOR.float_rows(rows)
    assert isinstance(columns, MatrixColumns)
    assert columns.matrix.tolist() == [[1.5, 2.0, -3.25], [1.0, 10.0, 0.0]]
    assert list(columns) == NAMES


@pytest.mark.parametrize(
    "body",
    [
        body_of([{**GOOD, "a": None}]),
        body_of([{**GOOD, "a": True}]),
        body_of([{**GOOD, "a": "1.5"}]),
        body_of([{"a": 1.0, "b": 1.0}]),
        body_of([{**GOOD, "extra": 1.0}]),
        body_of([{**GOOD, "a": 10**400}]),
        body_of([]),
        body_of([GOOD], parameters={"explain": True}),
        body_of([GOOD], parameters=[1]),
        body_of([[1.0, 2.0, 3.0]]),
        b'{"instances": [{"a": NaN, "b": 1, "c": 1}]}',
        b'{"instances": [',
        b"[]",
    ],
    ids=[
        "null",
        "bool",
        "string",
        "missing field",
        "unknown field",
        "beyond float range",
        "no rows",
        "parameters",
        "parameters not an object",
        "row not an object",
        "NaN",
        "truncated",
        "not an object",
    ],
)
def test_anything_else_is_left_to_the_general_path(body: bytes) -> None:
    assert DECODER.decode(body) is None


def test_an_unknown_field_is_ignored_when_the_schema_ignores_extra_fields() -> None:
    lenient = RowsDecoder(VALIDATOR.row_fields, reject_extra=False)
    assert lenient.decode(body_of([{**GOOD, "extra": "anything"}])) == [(1.5, 2.0, -3.25)]


@pytest.mark.parametrize(
    "value", [10.5, -0.1, float("inf"), float("nan")], ids=["over", "under", "inf", "nan"]
)
def test_a_value_outside_its_bounds_or_not_finite_fails_the_matrix_check(value: float) -> None:
    """The validator says None (the lane then reads the rows as records and the general check
    names the field); NaN and infinities fail the finite bounds too."""
    assert VALIDATOR.float_rows([(1.0, 1.0, 1.0), (1.0, value, 1.0)]) is None
    assert VALIDATOR.float_rows([(1.0, 1.0, 1.0)]) is not None


def test_float_rows_needs_an_all_float_schema() -> None:
    mixed = Schema(
        inputs=[
            FieldSpec(name="a", type=FieldType.FLOAT),
            FieldSpec(name="s", type=FieldType.STRING),
        ],
        outputs=OutputSpec(task=Task.REGRESSION),
    )
    assert not Validator(mixed).all_floats
    assert VALIDATOR.all_floats
    with pytest.raises(TypeError):
        Validator(mixed).float_rows([(1.0, 2.0)])
