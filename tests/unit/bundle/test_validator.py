"""Specification: the compiled validator turns requests into typed columns or reports every mistake."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtserve import FieldSpec, FieldType, Schema, UnseenPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.bundle.schema_inference import infer_fields
from rtserve.bundle.validator import MAX_VIOLATIONS, Validator
from rtserve.errors import MalformedRequestError, ValidationError
from rtserve.runtimes.frame import to_matrix
from rtserve.types import MatrixColumns, Task

GOOD = {
    "amount": 12.5,
    "hour": 3,
    "prior_transactions": 10,
    "country": "DE",
    "merchant": "fuel",
    "card_present": True,
}


@pytest.fixture(scope="module")
def validator(transactions: pd.DataFrame) -> Validator:
    """The validator of the schema inferred from the card transactions."""
    schema = Schema(inputs=infer_fields(transactions), outputs=OutputSpec(task=Task.REGRESSION))
    return Validator(schema)


def _violations(exc: ValidationError) -> list[tuple[str, str, int | None]]:
    return [(v.field, v.rule, v.row) for v in exc.violations]


def test_records_become_one_typed_array_per_field_in_schema_order(validator: Validator) -> None:
    columns = validator.records([GOOD, {**GOOD, "amount": None, "merchant": None}])
    assert list(columns) == list(GOOD)
    assert columns["amount"].dtype == np.float64
    assert columns["hour"].dtype == np.int64
    assert columns["card_present"].dtype == np.bool_
    assert columns["country"].dtype == object
    assert np.isnan(columns["amount"][1])
    assert columns["merchant"].tolist() == ["fuel", None]


def test_an_absent_optional_field_is_missing(validator: Validator) -> None:
    record = {k: v for k, v in GOOD.items() if k not in ("amount", "merchant")}
    columns = validator.records([record])
    assert np.isnan(columns["amount"][0])
    assert columns["merchant"][0] is None


def test_a_dict_of_columns_validates_like_records(validator: Validator) -> None:
    by_columns = validator.columns({name: [value, value] for name, value in GOOD.items()})
    by_records = validator.records([GOOD, GOOD])
    for name in GOOD:
        np.testing.assert_array_equal(by_columns[name], by_records[name])


def test_numpy_and_pandas_columns_are_accepted(validator: Validator) -> None:
    columns = validator.columns(
        {
            "amount": np.array([1.5, np.nan]),
            "hour": np.array([1, 2], dtype=np.int32),
            "prior_transactions": pd.Series([3, 4], index=[10, 20]),
            "country": np.array(["DE", "FR"]),  # numpy unicode, not Python str
            "merchant": pd.Series(["fuel", None], dtype="str"),
            "card_present": np.array([True, False]),
        }
    )
    assert columns["hour"].tolist() == [1, 2]
    assert columns["prior_transactions"].tolist() == [3, 4]
    assert columns["country"].tolist() == ["DE", "FR"]
    assert type(columns["country"][0]) is str
    assert columns["merchant"].tolist() == ["fuel", None]


def test_a_dataframe_validates_with_any_flavour_of_null_as_missing(
    validator: Validator, transactions: pd.DataFrame
) -> None:
    columns = validator.frame(transactions)
    assert len(columns["amount"]) == len(transactions)
    assert np.isnan(columns["amount"]).sum() == transactions["amount"].isna().sum()
    assert sum(v is None for v in columns["merchant"]) == transactions["merchant"].isna().sum()


def test_records_made_from_a_dataframe_carry_nan_for_missing_strings(
    validator: Validator, transactions: pd.DataFrame
) -> None:
    records = transactions.to_dict("records")
    columns = validator.records(records)
    assert sum(v is None for v in columns["merchant"]) == transactions["merchant"].isna().sum()


def test_nullable_pandas_dtypes_with_na_are_missing_not_wrong_types() -> None:
    schema = Schema(
        inputs=[
            FieldSpec(name="flag", type=FieldType.BOOL, missing="pass"),
            FieldSpec(name="count", type=FieldType.INT, missing="pass"),
            FieldSpec(name="label", type=FieldType.STRING, missing="pass"),
        ],
        outputs=OutputSpec(task=Task.REGRESSION),
    )
    frame = pd.DataFrame(
        {
            "flag": pd.array([True, None], dtype="boolean"),
            "count": pd.array([1, None], dtype="Int64"),
            "label": pd.array(["a", None], dtype="string"),
        }
    )
    columns = Validator(schema).frame(frame)
    assert columns["flag"].tolist() == [True, None]
    assert columns["count"][0] == 1
    assert np.isnan(columns["count"][1])
    assert columns["label"].tolist() == ["a", None]


def test_every_offending_field_of_every_row_is_reported(validator: Validator) -> None:
    bad = [
        {**GOOD, "amount": "12.5", "hour": "3"},
        GOOD,
        {**GOOD, "card_present": 1, "country": 49},
    ]
    with pytest.raises(ValidationError) as caught:
        validator.records(bad)
    assert sorted(_violations(caught.value)) == [
        ("amount", "type", 0),
        ("card_present", "type", 2),
        ("country", "type", 2),
        ("hour", "type", 0),
    ]
    assert caught.value.fields == ["amount", "card_present", "country", "hour"]


def test_each_violation_message_names_the_field_and_shows_the_value(validator: Validator) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "amount": "12.5", "hour": 3.5, "card_present": "yes"}])
    messages = {v.field: v.message for v in caught.value.violations}
    assert messages == {
        "amount": "amount: '12.5' is not a float",
        "hour": "hour: 3.5 is not an int",
        "card_present": "card_present: 'yes' is not a bool",
    }
    body = caught.value.to_dict()
    assert body["code"] == "validation_failed"
    assert body["violations"][0] == {
        "field": "amount",
        "rule": "type",
        "error": "amount: '12.5' is not a float",
        "row": 0,
    }


def test_the_error_message_spells_out_every_violation(validator: Validator) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "amount": "x", "hour": "y"}])
    assert caught.value.message.startswith(
        "2 violations: amount: 'x' is not a float (row 0); hour:"
    )
    assert caught.value.field == "amount"


def test_a_long_list_of_violations_is_spelled_out_up_to_a_bound(validator: Validator) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "amount": "x"}] * 50)
    message = caught.value.message
    assert message.startswith("50 violations: ")
    assert message.count("is not a float") == 20
    assert message.endswith("and 30 more (every one is in .violations)")
    assert len(caught.value.violations) == 50


def test_unknown_fields_are_rejected_with_the_expected_ones_listed(validator: Validator) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "amout": 1.0}])
    (violation,) = caught.value.violations
    assert (violation.field, violation.rule, violation.row) == ("amout", "unknown_field", 0)
    assert "not a field of this model" in violation.message
    assert "'amount'" in violation.message
    with pytest.raises(ValidationError, match="amout: not a field"):
        validator.columns({**{k: [v] for k, v in GOOD.items()}, "amout": [1.0]})


def test_unknown_fields_can_be_ignored_when_the_schema_says_so(transactions: pd.DataFrame) -> None:
    schema = Schema(
        inputs=infer_fields(transactions),
        outputs=OutputSpec(task=Task.REGRESSION),
        extra_fields="ignore",
    )
    columns = Validator(schema).records([{**GOOD, "session_id": "abc"}])
    assert "session_id" not in columns


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", True),  # bool is not a float
        ("amount", "1.5"),
        ("amount", [1.5]),
        ("amount", {"value": 1.5}),
        ("hour", "3"),  # str is not an int
        ("hour", 2.5),
        ("hour", False),
        ("hour", float("inf")),
        ("card_present", 1),  # an int is not a bool
        ("card_present", "true"),
        ("card_present", 0.0),
        ("country", 49),  # a number is not a string
        ("country", True),
        ("country", ["DE"]),
    ],
)
def test_wrong_types_are_type_violations(validator: Validator, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, field: value}])
    assert _violations(caught.value) == [(field, "type", 0)]
    assert repr(value)[:20] in caught.value.violations[0].message


def test_integral_floats_are_accepted_as_ints(validator: Validator) -> None:
    assert validator.records([{**GOOD, "hour": 3.0}])["hour"].tolist() == [3]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 10**400, -(10**400)])
def test_infinite_or_unrepresentable_floats_are_refused(validator: Validator, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "amount": value}])
    assert _violations(caught.value) == [("amount", "finite", 0)]
    assert "is not a finite number" in caught.value.message


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_ints_beyond_64_bits_are_refused_with_the_value(validator: Validator, value: int) -> None:
    with pytest.raises(ValidationError) as caught:
        validator.records([{**GOOD, "hour": value}])
    assert _violations(caught.value) == [("hour", "type", 0)]
    assert f"{value} does not fit a 64-bit integer" in caught.value.message


def test_the_largest_64_bit_ints_are_accepted(validator: Validator) -> None:
    columns = validator.records([{**GOOD, "hour": 2**63 - 1}, {**GOOD, "hour": -(2**63)}])
    assert columns["hour"].tolist() == [2**63 - 1, -(2**63)]


def test_a_single_row_validates(validator: Validator) -> None:
    columns = validator.records([GOOD])
    assert {name: values.tolist() for name, values in columns.items()} == {
        name: [value] for name, value in GOOD.items()
    }


def test_ten_thousand_rows_validate_into_columns_of_that_length(validator: Validator) -> None:
    rng = np.random.default_rng(0)
    records = [
        {**GOOD, "amount": float(a), "hour": int(h)}
        for a, h in zip(rng.random(10_000), rng.integers(0, 24, 10_000), strict=True)
    ]
    columns = validator.records(records)
    assert all(len(values) == 10_000 for values in columns.values())
    np.testing.assert_array_equal(columns["amount"], [r["amount"] for r in records])


def test_violations_in_a_large_request_are_bounded(validator: Validator) -> None:
    records = [{"amount": "x"} for _ in range(3_000)]  # 6 violations per row
    with pytest.raises(ValidationError) as caught:
        validator.records(records)
    assert len(caught.value.violations) == MAX_VIOLATIONS


@pytest.mark.parametrize(
    ("call", "payload", "message"),
    [
        ("records", {"amount": 1.0}, "expected a list of objects"),
        ("records", "amount", "expected a list of objects"),
        ("records", [GOOD, 3], r"instances\[1\]: expected an object"),
        ("records", [], "no rows"),
        ("columns", {"amount": [1.0], "hour": [1, 2]}, "the same number of rows"),
        ("columns", {"amount": 1.0}, "amount: expected a list"),
        ("columns", {"country": "DE"}, "country: expected a list"),
        ("columns", {"amount": np.zeros((2, 2))}, "amount: expected a list"),
        ("columns", {}, "no rows"),
        ("frame", [GOOD], "expected a DataFrame"),
    ],
)
def test_requests_of_the_wrong_shape_are_malformed(
    validator: Validator, call: str, payload: Any, message: str
) -> None:
    with pytest.raises(MalformedRequestError, match=message):
        getattr(validator, call)(payload)


def test_a_dataframe_with_duplicate_columns_is_malformed(validator: Validator) -> None:
    frame = pd.DataFrame([[1.0, 2.0]], columns=["amount", "amount"])
    with pytest.raises(MalformedRequestError, match="more than once"):
        validator.frame(frame)


def test_the_validator_leaves_the_callers_data_untouched() -> None:
    schema = Schema(
        inputs=[FieldSpec(name="amount", type=FieldType.FLOAT, missing="impute", impute=0.0)],
        outputs=OutputSpec(task=Task.REGRESSION),
    )
    values = np.array([1.0, np.nan])
    Validator(schema).columns({"amount": values})
    assert np.isnan(values[1])


# --- property: never anything but a result or one of the two input errors ----------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_keys = st.sampled_from([*GOOD, "extra", ""]) | st.text(max_size=6)
_records = st.dictionaries(_keys, _json_values, max_size=8)
_likely_records = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.floats(allow_nan=True) | _json_values,
        "hour": st.integers(-(2**65), 2**65) | _json_values,
        "country": st.sampled_from(["DE", "XX"]) | _json_values,
        "merchant": st.none() | _json_values,
        "card_present": st.booleans() | _json_values,
        "prior_transactions": st.integers(0, 10) | _json_values,
    },
)


def _strict_schema() -> Schema:
    """Every kind of rule at once: bounds, impute, allowed + reject, pass-through."""
    return Schema(
        inputs=[
            FieldSpec(name="amount", type=FieldType.FLOAT, missing="pass", minimum=0, maximum=1e6),
            FieldSpec(name="hour", type=FieldType.INT, minimum=0, maximum=23),
            FieldSpec(
                name="country",
                type=FieldType.STRING,
                allowed=["DE", "FR"],
                unseen=UnseenPolicy.REJECT,
            ),
            FieldSpec(name="merchant", type=FieldType.STRING, missing="impute", impute="none"),
            FieldSpec(name="card_present", type=FieldType.BOOL, missing="pass"),
            FieldSpec(name="prior_transactions", type=FieldType.INT, missing="impute", impute=0),
        ],
        outputs=OutputSpec(task=Task.REGRESSION),
    )


_STRICT = Validator(_strict_schema())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.one_of(
        st.lists(_records | _likely_records, max_size=4),
        st.lists(_json_values, max_size=3),
        _json_values,
    )
)
def test_any_json_like_records_validate_or_raise_an_input_error(payload: Any) -> None:
    try:
        columns = _STRICT.records(payload)
    except (ValidationError, MalformedRequestError):
        return
    assert list(columns) == _STRICT.schema.field_names
    assert {len(v) for v in columns.values()} == {len(payload)}


@settings(max_examples=100, deadline=None)
@given(
    payload=st.dictionaries(_keys, st.lists(_json_values, max_size=3) | _json_values, max_size=7)
)
def test_any_json_like_columns_validate_or_raise_an_input_error(payload: Any) -> None:
    with contextlib.suppress(ValidationError, MalformedRequestError):
        _STRICT.columns(payload)


_MISSING_POLICIES = [
    {"missing": "pass"},
    {"missing": "reject"},
    {"missing": "impute", "impute": 1.5},
    {"missing": "impute", "impute": 99.0},  # outside the declared maximum below
]


@pytest.mark.parametrize("policy", _MISSING_POLICIES, ids=lambda p: str(list(p.values())))
@given(
    numbers=st.lists(
        st.one_of(st.none(), st.floats(-20, 20), st.integers(-20, 20), st.just("x")),
        min_size=1,
        max_size=8,
    ),
    words=st.lists(
        st.one_of(st.none(), st.sampled_from(["a", "b", "zz"]), st.just(3)), min_size=1, max_size=8
    ),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_short_requests_validate_exactly_like_long_ones(
    policy: dict[str, Any], numbers: list[Any], words: list[Any]
) -> None:
    """Requests of a few rows take a pure-Python fast path; it must agree with the general one."""
    string_policy = {**policy, "impute": "a"} if policy["missing"] == "impute" else policy
    schema = Schema(
        inputs=[
            FieldSpec.model_validate({"name": "x", "type": "float", "maximum": 10.0, **policy}),
            FieldSpec.model_validate(
                {
                    "name": "s",
                    "type": "string",
                    "allowed": ["a", "b"],
                    "unseen": "reject",
                    **string_policy,
                }
            ),
        ],
        outputs=OutputSpec(task=Task.REGRESSION),
    )
    validator = Validator(schema)
    n = min(len(numbers), len(words))
    short = {"x": numbers[:n], "s": words[:n]}
    repeats = 64 // n + 1  # past the fast path's limit, short of the violation cap
    padded = {name: values * repeats for name, values in short.items()}

    def outcome(columns: dict[str, list[Any]], rows: int) -> Any:
        try:
            result = validator.columns(columns)
        except ValidationError as exc:
            return sorted({(v.field, v.rule, (v.row or 0) % n) for v in exc.violations})
        return {
            k: [None if (isinstance(x, float) and np.isnan(x)) else x for x in v[:rows].tolist()]
            for k, v in result.items()
        }

    assert outcome(short, n) == outcome(padded, n)


# --- all-float schemas: rows checked as one matrix --------------------------------------------

FLOATS = Schema(
    inputs=[
        FieldSpec(name="a", type=FieldType.FLOAT),
        FieldSpec(name="b", type=FieldType.FLOAT, minimum=0.0, maximum=10.0),
        FieldSpec.model_validate({"name": "c", "type": "float", "missing": "pass"}),
    ],
    outputs=OutputSpec(task=Task.REGRESSION),
)
_FLOAT_VALUES = st.one_of(
    st.integers(-20, 20),
    st.floats(-20, 20),
    st.sampled_from([0.0, 10.0, -0.0, 10.000001, 2**53 + 1, 2**70, 10**400, float("nan")]),
    st.sampled_from([float("inf"), None, True, "1.5", [1.0]]),
)


def _outcome(run: Any) -> Any:
    """Columns as lists with dtypes (NaN as None), or the violations raised."""
    try:
        columns = run()
    except ValidationError as exc:
        return _violations(exc)
    return {
        k: (str(v.dtype), [None if x != x else x for x in v.tolist()]) for k, v in columns.items()
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries(dict.fromkeys("abc", _FLOAT_VALUES)), min_size=1, max_size=8))
def test_all_float_rows_validate_as_each_fields_own_check_would(rows: list[dict[str, Any]]) -> None:
    """Rows of an all-float schema go through one matrix when they are plain numbers; the
    columns, or the violations, are exactly what each field's own check gives (the columns
    route never takes the matrix)."""
    validator = Validator(FLOATS)
    by_field = {n: [row[n] for row in rows] for n in "abc"}
    assert _outcome(lambda: validator.records(rows)) == _outcome(
        lambda: validator.columns(by_field)
    )


def test_plain_float_rows_become_the_columns_of_one_matrix() -> None:
    """Ints and floats within bounds: one [rows, fields] float64 matrix in field order, whose
    columns are the result's."""
    columns = Validator(FLOATS).records([{"a": 1, "b": 2.5, "c": -3.0}, {"a": 4.0, "b": 0, "c": 6}])
    assert isinstance(columns, MatrixColumns)
    assert columns.matrix.flags.c_contiguous
    assert columns.matrix.tolist() == [[1.0, 2.5, -3.0], [4.0, 0.0, 6.0]]
    assert {k: v.tolist() for k, v in columns.items()} == {
        "a": [1.0, 4.0],
        "b": [2.5, 0.0],
        "c": [-3.0, 6.0],
    }


@pytest.mark.parametrize(
    ("row", "violation"),
    [
        ({"a": 1.0, "b": 11.0, "c": 0.0}, ("b", "maximum", 1)),
        ({"a": "1.0", "b": 1.0, "c": 0.0}, ("a", "type", 1)),
        ({"a": True, "b": 1.0, "c": 0.0}, ("a", "type", 1)),
        ({"b": 1.0, "c": 0.0}, ("a", "required", 1)),
        ({"a": 1.0, "b": 1.0, "c": 0.0, "d": 2.0}, ("d", "unknown_field", 1)),
    ],
    ids=["out of bounds", "string", "bool", "missing field", "unknown field"],
)
def test_a_row_the_matrix_cannot_take_is_reported_by_its_fields_check(
    row: dict[str, Any], violation: tuple[str, str, int]
) -> None:
    with pytest.raises(ValidationError) as caught:
        Validator(FLOATS).records([{"a": 1.0, "b": 1.0, "c": 0.0}, row])
    assert _violations(caught.value) == [violation]


def test_a_runtime_gets_a_copy_of_the_validators_matrix_instead_of_stacked_columns() -> None:
    """``to_matrix`` copies the matrix in one call (converted for float32): a runtime that
    scales its input in place must not change the columns the observers read; another order
    stacks the columns."""
    columns = Validator(FLOATS).records([{"a": 1, "b": 2.5, "c": -3.0}, {"a": 4.0, "b": 0, "c": 6}])
    assert isinstance(columns, MatrixColumns)
    same = to_matrix(columns, ["a", "b", "c"])
    assert same is not columns.matrix
    assert same.tolist() == columns.matrix.tolist()
    same *= 0  # as StandardScaler(copy=False) would
    assert columns["a"].tolist() == [1.0, 4.0]
    single = to_matrix(columns, ["a", "b", "c"], np.float32)
    assert single.dtype == np.float32
    assert single.flags.c_contiguous
    assert single.tolist() == [[1.0, 2.5, -3.0], [4.0, 0.0, 6.0]]
    assert to_matrix(columns, ["c", "a", "b"]).tolist() == [[-3.0, 1.0, 2.5], [6.0, 4.0, 0.0]]
