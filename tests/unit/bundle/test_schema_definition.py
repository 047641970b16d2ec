"""Specification: schemas written or overridden by hand, and the rules they enforce."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve import FieldSpec, FieldType, MissingPolicy, Schema, UnseenPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.bundle.validator import Validator
from rtserve.errors import SchemaDefinitionError, ValidationError
from rtserve.types import Task

REGRESSION = OutputSpec(task=Task.REGRESSION)


def _schema(*fields: FieldSpec) -> Schema:
    return Schema(inputs=list(fields), outputs=REGRESSION)


def _rules(exc: ValidationError) -> list[tuple[str, str]]:
    return [(v.field, v.rule) for v in exc.violations]


def test_bounds_are_not_enforced_unless_declared() -> None:
    validator = Validator(_schema(FieldSpec(name="amount", type=FieldType.FLOAT)))
    columns = validator.records([{"amount": -1e12}, {"amount": 1e12}])
    np.testing.assert_array_equal(columns["amount"], [-1e12, 1e12])


def test_declared_bounds_are_enforced_with_the_value_and_the_limit_in_the_message() -> None:
    spec = FieldSpec(name="amount", type=FieldType.FLOAT, minimum=0, maximum=10_000)
    validator = Validator(_schema(spec))
    validator.records([{"amount": 0.0}, {"amount": 10_000}])  # the bounds themselves are valid
    with pytest.raises(ValidationError) as caught:
        validator.records([{"amount": -3.5}, {"amount": 5.0}, {"amount": 20_000.0}])
    violations = caught.value.violations
    assert [(v.rule, v.row) for v in violations] == [("minimum", 0), ("maximum", 2)]
    assert violations[0].message == (
        "amount: -3.5 is below the minimum 0.0 (declared in the schema)"
    )
    assert "20000.0 is above the maximum 10000.0" in violations[1].message


def test_int_bounds_apply_to_int_fields() -> None:
    validator = Validator(
        _schema(FieldSpec(name="hour", type=FieldType.INT, minimum=0, maximum=23))
    )
    with pytest.raises(ValidationError) as caught:
        validator.records([{"hour": 24}])
    assert _rules(caught.value) == [("hour", "maximum")]


@pytest.mark.parametrize(
    ("field_type", "impute", "expected"),
    [
        (FieldType.FLOAT, 0.5, 0.5),
        (FieldType.INT, 7, 7),
        (FieldType.BOOL, False, False),
        (FieldType.STRING, "unknown", "unknown"),
    ],
)
def test_impute_replaces_missing_and_null_values_with_the_declared_constant(
    field_type: FieldType, impute: Any, expected: Any
) -> None:
    spec = FieldSpec(name="x", type=field_type, missing=MissingPolicy.IMPUTE, impute=impute)
    other = FieldSpec(name="y", type=FieldType.FLOAT)
    validator = Validator(_schema(spec, other))
    columns = validator.records([{"y": 1.0}, {"x": None, "y": 1.0}])
    assert columns["x"].tolist() == [expected, expected]


def test_missing_pass_hands_the_model_a_missing_value() -> None:
    validator = Validator(
        _schema(
            FieldSpec(name="amount", type=FieldType.FLOAT, missing=MissingPolicy.PASS),
            FieldSpec(name="hour", type=FieldType.INT, missing=MissingPolicy.PASS),
            FieldSpec(name="country", type=FieldType.STRING, missing=MissingPolicy.PASS),
            FieldSpec(name="flag", type=FieldType.BOOL, missing=MissingPolicy.PASS),
        )
    )
    columns = validator.records([{}])
    assert np.isnan(columns["amount"][0])
    assert np.isnan(columns["hour"][0])  # ints with a gap travel as float NaN, as in pandas
    assert columns["country"][0] is None
    assert columns["flag"][0] is None


def test_missing_reject_refuses_absent_and_null_values() -> None:
    validator = Validator(_schema(FieldSpec(name="amount", type=FieldType.FLOAT)))
    with pytest.raises(ValidationError) as caught:
        validator.records([{}, {"amount": None}, {"amount": float("nan")}])
    assert [(v.rule, v.row) for v in caught.value.violations] == [
        ("required", 0),
        ("required", 1),
        ("required", 2),
    ]
    assert "a value is required" in caught.value.violations[0].message


def test_unseen_reject_refuses_values_outside_allowed_and_lists_them() -> None:
    spec = FieldSpec(
        name="country", type=FieldType.STRING, allowed=["DE", "FR"], unseen=UnseenPolicy.REJECT
    )
    validator = Validator(_schema(spec))
    validator.records([{"country": "DE"}])
    with pytest.raises(ValidationError) as caught:
        validator.records([{"country": "XX"}])
    (violation,) = caught.value.violations
    assert violation.rule == "allowed"
    assert violation.message == "country: 'XX' is not one of the allowed values ['DE', 'FR']"
    with pytest.raises(ValidationError, match="'XX' is not one of the allowed values"):
        validator.columns({"country": np.array(["DE", "XX"])})  # numpy strings too


def test_a_value_of_the_wrong_type_is_reported_once_not_also_as_out_of_bounds() -> None:
    validator = Validator(
        _schema(
            FieldSpec(name="amount", type=FieldType.FLOAT, minimum=5),
            FieldSpec(
                name="tier",
                type=FieldType.INT,
                minimum=1,
                allowed=[1, 2],
                unseen=UnseenPolicy.REJECT,
            ),
        )
    )
    with pytest.raises(ValidationError) as caught:
        validator.records([{"amount": "high", "tier": "gold"}, {"amount": 1.0, "tier": 2**64}])
    assert [(v.field, v.rule, v.row) for v in caught.value.violations] == [
        ("amount", "type", 0),
        ("amount", "minimum", 1),
        ("tier", "type", 0),
        ("tier", "type", 1),
    ]


def test_unseen_pass_lets_values_outside_allowed_through() -> None:
    spec = FieldSpec(name="country", type=FieldType.STRING, allowed=["DE"])
    assert Validator(_schema(spec)).records([{"country": "XX"}])["country"].tolist() == ["XX"]


def test_unseen_reject_on_an_int_field_with_allowed_values() -> None:
    spec = FieldSpec(name="tier", type=FieldType.INT, allowed=[1, 2], unseen=UnseenPolicy.REJECT)
    with pytest.raises(ValidationError) as caught:
        Validator(_schema(spec)).records([{"tier": 3}])
    assert _rules(caught.value) == [("tier", "allowed")]


def test_pii_flag_is_recorded_and_listed(fraud_pipeline: Any, transactions: pd.DataFrame) -> None:
    bundle = rtserve.build(
        fraud_pipeline,
        transactions,
        name="fraud",
        version="pii",
        schema_overrides={"country": {"pii": True}},
    )
    assert bundle.manifest.model_schema.pii_fields == frozenset({"country"})
    assert "pii: true" in (bundle.path / "rtserve.yaml").read_text()


def test_build_overrides_change_the_inferred_schema_and_are_enforced(
    fraud_pipeline: Any, transactions: pd.DataFrame, tmp_path: Any
) -> None:
    bundle = rtserve.build(
        fraud_pipeline,
        transactions,
        name="fraud",
        version="strict",
        schema_overrides={
            "amount": {"minimum": 0, "missing": "impute", "impute": 0.0},
            "country": {"unseen": "reject"},
        },
    )
    schema = bundle.manifest.model_schema
    assert schema.field("amount").minimum == 0
    assert schema.field("amount").missing is MissingPolicy.IMPUTE
    assert schema.field("country").unseen is UnseenPolicy.REJECT
    predictor = rtserve.load(bundle.save(tmp_path / "strict"))
    row = transactions.iloc[0].to_dict()
    with pytest.raises(ValidationError) as caught:
        predictor.predict([{**row, "amount": -1.0, "country": "XX"}])
    assert _rules(caught.value) == [("amount", "minimum"), ("country", "allowed")]


def test_an_override_the_training_sample_breaks_is_refused_at_build(
    fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    with pytest.raises(SchemaDefinitionError, match="sample itself breaks the schema") as caught:
        rtserve.build(
            fraud_pipeline,
            transactions,
            name="fraud",
            version="1",
            schema_overrides={"amount": {"maximum": 1.0}},
        )
    assert caught.value.field == "amount"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"type": "complex"}, "type: Input should be"),
        ({"type": "float", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"type": "float", "missing": "impute"}, "impute needs an `impute` value"),
        ({"type": "int", "missing": "impute", "impute": "zero"}, "'zero' is not an int"),
        ({"type": "float", "impute": 1.0}, "`impute` is set but missing is 'reject'"),
        ({"type": "string", "minimum": 0}, "minimum/maximum apply to numeric fields"),
        ({"type": "float", "minimum": 5, "maximum": 1}, "minimum 5.0 is greater than maximum"),
        ({"type": "float", "allowed": ["a"]}, "allowed values apply to string or int"),
        ({"type": "string", "unseen": "reject"}, "unseen: reject needs a list of allowed"),
        ({"type": "float", "minimum": "low"}, "minimum: Input should be a valid number"),
    ],
)
def test_invalid_field_definitions_are_refused_naming_the_field(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchemaDefinitionError, match=message) as caught:
        FieldSpec.model_validate({"name": "amount", **definition})
    assert caught.value.field == "amount"
    assert "'amount'" in caught.value.message


def test_invalid_overrides_are_refused_naming_the_field(
    fraud_pipeline: Any, transactions: pd.DataFrame
) -> None:
    for overrides, field in (
        ({"hour": {"type": "date"}}, "hour"),
        ({"hour": {"maxium": 3}}, "hour"),
        ({"hours": {"maximum": 3}}, "hours"),
    ):
        with pytest.raises(SchemaDefinitionError) as caught:
            rtserve.build(
                fraud_pipeline, transactions, name="fraud", version="1", schema_overrides=overrides
            )
        assert caught.value.field == field, overrides


def test_a_schema_refuses_duplicate_and_empty_field_lists() -> None:
    spec = FieldSpec(name="amount", type=FieldType.FLOAT)
    with pytest.raises(SchemaDefinitionError, match="'amount' is declared twice") as caught:
        _schema(spec, spec)
    assert caught.value.field == "amount"
    with pytest.raises(SchemaDefinitionError, match="at least one input field"):
        Schema(inputs=[], outputs=REGRESSION)


def test_a_classifier_output_needs_its_classes() -> None:
    with pytest.raises(SchemaDefinitionError, match="needs its list of classes"):
        OutputSpec(task=Task.CLASSIFICATION)


def test_a_field_name_with_control_characters_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match="printable characters"):
        FieldSpec(name="bad\nname", type=FieldType.FLOAT)
