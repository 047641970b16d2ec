"""Typed rows: a mixed model's predict requests read straight into one tuple per row.

``RowsDecoder`` plus ``Validator.rows`` is the records lane's path for a model of any field
types; ``decode_predict_request`` plus ``Validator.records`` is the general path. They must agree
on every body: the same columns (values, dtypes) when the typed path takes it, and no answer
from it (None) when the general path would refuse it or read it otherwise, so that the general
path's error, in the client's own values, is the one sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtserve import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.bundle.validator import Validator
from rtserve.protocol.records import RowsDecoder
from rtserve.types import Task
from tests import rows_support
from tests.rows_support import body_of

COUNTRIES = ["DE", "FR", "US"]
MIXED = Schema(
    inputs=[
        FieldSpec(name="amount", type=FieldType.FLOAT, minimum=0.0, maximum=1000.0),
        FieldSpec(name="age", type=FieldType.FLOAT, missing=MissingPolicy.PASS),
        FieldSpec(name="score", type=FieldType.FLOAT, missing=MissingPolicy.IMPUTE, impute=0.5),
        FieldSpec(name="hour", type=FieldType.INT, minimum=0, maximum=23),
        FieldSpec(name="visits", type=FieldType.INT, missing=MissingPolicy.IMPUTE, impute=1),
        FieldSpec(name="tier", type=FieldType.INT, allowed=[1, 2, 3], unseen=UnseenPolicy.REJECT),
        FieldSpec(
            name="country",
            type=FieldType.STRING,
            allowed=COUNTRIES,
            unseen=UnseenPolicy.REJECT,
        ),
        FieldSpec(name="channel", type=FieldType.STRING, missing=MissingPolicy.PASS),
        FieldSpec(name="new", type=FieldType.BOOL),
        FieldSpec(name="odd name: not an identifier", type=FieldType.STRING),
    ],
    outputs=OutputSpec(task=Task.REGRESSION),
)
ODD = "odd name: not an identifier"
VALIDATOR = Validator(MIXED)
DECODER = RowsDecoder(VALIDATOR.row_fields, reject_extra=True)
GOOD = {
    "amount": 12.5,
    "age": 30.0,
    "score": 0.25,
    "hour": 7,
    "visits": 3,
    "tier": 2,
    "country": "DE",
    "channel": "web",
    "new": False,
    ODD: "x",
}


def general(body: bytes) -> Any:
    return rows_support.general(VALIDATOR, body)


def typed(body: bytes) -> Any:
    return rows_support.typed(DECODER, VALIDATOR, body)


def test_the_row_fields_are_each_fields_json_type_and_whether_it_may_be_missing() -> None:
    assert VALIDATOR.row_fields == [
        ("amount", float, False),
        ("age", float, True),
        ("score", float, True),
        ("hour", int, False),
        ("visits", int, True),
        ("tier", int, False),
        ("country", str, False),
        ("channel", str, True),
        ("new", bool, False),
        (ODD, str, False),
    ]


def test_rows_of_their_fields_types_take_the_typed_path() -> None:
    """An int for a float field is read as a float; a field that may be missing, null or absent,
    is filled as the general path fills it; the columns are the general path's."""
    rows = [
        GOOD,
        {**GOOD, "amount": 1000, "age": None, "score": None, "visits": None, "channel": None},
        {k: v for k, v in GOOD.items() if k not in ("age", "score", "visits", "channel")},
    ]
    body = body_of(rows)
    assert DECODER.decode(body_of([GOOD])) == [(12.5, 30.0, 0.25, 7, 3, 2, "DE", "web", False, "x")]
    columns = typed(body)
    assert columns is not None
    assert columns == general(body)
    assert columns["score"] == ("float64", ["0.25", "0.5", "0.5"])
    assert columns["visits"] == ("int64", ["3", "1", "1"])
    assert columns["amount"] == ("float64", ["12.5", "1000.0", "12.5"])


@pytest.mark.parametrize(
    "row",
    [
        {**GOOD, "amount": 1001},  # above the maximum, as an int: the message says 1001
        {**GOOD, "amount": -0.5},
        {**GOOD, "hour": 24},
        {**GOOD, "tier": 4},
        {**GOOD, "country": "ZZ"},
        {**GOOD, "hour": 2**70},  # an int, but not a 64-bit one
    ],
    ids=["over as int", "under", "int over", "int not allowed", "string not allowed", "int64"],
)
def test_a_value_of_the_right_type_that_fails_its_check_is_left_to_the_general_path(
    row: dict[str, Any],
) -> None:
    """The typed decode reads it; the validator says None, and the general path's 422 names
    the value as the client wrote it."""
    body = body_of([GOOD, row])
    assert DECODER.decode(body) is not None
    assert typed(body) is None
    assert general(body)[0] == "422"


@pytest.mark.parametrize(
    "body",
    [
        body_of([{**GOOD, "amount": None}]),  # null where none is allowed
        body_of([{k: v for k, v in GOOD.items() if k != "hour"}]),  # a required field missing
        body_of([{**GOOD, "hour": 7.0}]),  # a float for an int field: the general path's call
        body_of([{**GOOD, "new": 1}]),
        body_of([{**GOOD, "country": 1}]),
        body_of([{**GOOD, "amount": True}]),
        body_of([{**GOOD, "extra": 1}]),
        body_of([GOOD], parameters={"explain": True}),
        body_of([GOOD], other=[[[1]]]),
        body_of([]),
        b'{"instances": [',
    ],
    ids=[
        "null",
        "missing",
        "float for int",
        "int for bool",
        "int for string",
        "bool for float",
        "unknown field",
        "parameters",
        "other top-level key",
        "no rows",
        "truncated",
    ],
)
def test_anything_else_is_left_to_the_general_path(body: bytes) -> None:
    assert DECODER.decode(body) is None


def test_an_unknown_field_is_skipped_when_the_schema_ignores_extra_fields() -> None:
    """However deeply it nests: the lane checks the depth itself then (``skips_unknown``)."""
    lenient = RowsDecoder(VALIDATOR.row_fields, reject_extra=False)
    assert lenient.skips_unknown
    assert not DECODER.skips_unknown
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    assert lenient.decode(body_of([{**GOOD, "extra": deep}])) == DECODER.decode(body_of([GOOD]))


_NOT_TYPED = st.sampled_from([None, True, 1.5, 7, "x", [1], {"k": 1}, 2**70, -0.0])


def _field(plain: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's own type (so that many rows take the typed path), and
    now and then anything."""
    return st.one_of(*[plain] * 8, _NOT_TYPED)


_ROW = st.fixed_dictionaries(
    {
        "amount": _field(st.one_of(st.floats(-10, 1010), st.integers(-10, 1010))),
        "age": _field(st.one_of(st.none(), st.floats(0, 100, allow_subnormal=False))),
        "score": _field(st.one_of(st.none(), st.floats(0, 1))),
        "hour": _field(st.integers(-2, 25)),
        "visits": _field(st.one_of(st.none(), st.integers(0, 9))),
        "tier": _field(st.integers(0, 4)),
        "country": _field(st.sampled_from([*COUNTRIES, "ZZ"])),
        "channel": _field(st.one_of(st.none(), st.text(max_size=5))),
        "new": _field(st.booleans()),
        ODD: _field(st.text(max_size=5)),
    },
)
_ODD_ROW = st.one_of(
    _ROW.map(lambda row: {**row, "extra": 1.0}),  # an unknown field
    _ROW.map(lambda row: {k: v for k, v in row.items() if k not in ("age", "visits")}),
    _ROW.map(lambda row: dict(list(row.items())[1:])),  # a required field missing
)
_ROWS = st.lists(st.one_of(_ROW, _ROW, _ROW, _ROW, _ODD_ROW), max_size=4)
_TYPES = {name: kind for name, kind, _ in VALIDATOR.row_fields}
_OPTIONAL = {name for name, _, optional in VALIDATOR.row_fields if optional}


def _plain(rows: list[dict[str, Any]]) -> bool:
    """Every row has only the schema's fields, every required one, each value of its field's
    JSON type (an int for a float) or, where allowed, null."""

    def fits(name: str, value: Any) -> bool:
        if value is None:
            return name in _OPTIONAL
        kind = _TYPES[name]
        return type(value) is kind or (kind is float and type(value) is int)

    return bool(rows) and all(
        set(row) <= set(_TYPES)
        and set(_TYPES) - _OPTIONAL <= set(row)
        and all(fits(k, v) for k, v in row.items())
        for row in rows
    )


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS)
def test_the_typed_path_gives_the_general_paths_columns_or_leaves_the_body_to_it(
    rows: list[dict[str, Any]],
) -> None:
    """On generated bodies (values in and out of bounds and allowed sets, ints for floats,
    nulls and absent fields where allowed or not, values of other types, unknown fields), the
    typed path's columns are exactly the general path's whenever it takes the body; and it takes
    every body of rows of its fields' types that the general path accepts."""
    body = body_of(rows)
    taken, expected = typed(body), general(body)
    if taken is not None:
        assert taken == expected
    elif _plain(rows):
        assert not isinstance(expected, dict), "valid typed rows left to the general path"
