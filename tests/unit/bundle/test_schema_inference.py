"""Specification: the schema inferred from a training sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtserve import FieldSpec, FieldType, MissingPolicy, UnseenPolicy
from rtserve.bundle.schema import MAX_INFERRED_CATEGORIES
from rtserve.bundle.schema_inference import as_frame, infer_fields
from rtserve.errors import SchemaDefinitionError


def _fields(frame: pd.DataFrame) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in infer_fields(frame)}


def test_each_dtype_maps_to_its_logical_type(transactions: pd.DataFrame) -> None:
    fields = _fields(transactions)
    assert {name: spec.type for name, spec in fields.items()} == {
        "amount": FieldType.FLOAT,
        "hour": FieldType.INT,
        "prior_transactions": FieldType.INT,
        "country": FieldType.STRING,
        "merchant": FieldType.STRING,
        "card_present": FieldType.BOOL,
    }


def test_fields_keep_the_column_order_of_the_sample(transactions: pd.DataFrame) -> None:
    assert [spec.name for spec in infer_fields(transactions)] == list(transactions.columns)


def test_pandas_str_dtype_is_a_string_field() -> None:
    frame = pd.DataFrame({"country": pd.Series(["DE", "FR"], dtype="str")})
    (spec,) = infer_fields(frame)
    assert spec.type is FieldType.STRING
    assert spec.allowed == ["DE", "FR"]


def test_object_and_nullable_string_columns_are_string_fields() -> None:
    frame = pd.DataFrame(
        {
            "obj": pd.Series(["a", None, "b"], dtype=object),
            "nullable": pd.Series(["x", "y", None], dtype="string"),
        }
    )
    fields = _fields(frame)
    assert fields["obj"].type is FieldType.STRING
    assert fields["nullable"].type is FieldType.STRING
    assert fields["obj"].allowed == ["a", "b"]


def test_nullable_extension_dtypes_map_like_their_numpy_counterparts() -> None:
    frame = pd.DataFrame(
        {
            "count": pd.array([1, None, 3], dtype="Int64"),
            "ratio": pd.array([0.5, None, 1.5], dtype="Float64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "small": np.array([1, 2, 3], dtype=np.uint8),
            "single": np.array([1.0, 2.0, 3.0], dtype=np.float32),
        }
    )
    types = {spec.name: spec.type for spec in infer_fields(frame)}
    assert types == {
        "count": FieldType.INT,
        "ratio": FieldType.FLOAT,
        "flag": FieldType.BOOL,
        "small": FieldType.INT,
        "single": FieldType.FLOAT,
    }


def test_a_column_with_nulls_in_training_passes_missing_values_to_the_model(
    transactions: pd.DataFrame,
) -> None:
    fields = _fields(transactions)
    assert fields["amount"].missing is MissingPolicy.PASS
    assert fields["merchant"].missing is MissingPolicy.PASS


def test_a_column_without_nulls_in_training_rejects_missing_values(
    transactions: pd.DataFrame,
) -> None:
    fields = _fields(transactions)
    for name in ("hour", "prior_transactions", "country", "card_present"):
        assert fields[name].missing is MissingPolicy.REJECT, name


def test_categorical_columns_record_their_values_as_allowed_and_let_unseen_ones_pass(
    transactions: pd.DataFrame,
) -> None:
    country = _fields(transactions)["country"]
    assert country.allowed == ["DE", "FR", "GB", "NL", "US"]
    assert country.unseen is UnseenPolicy.PASS


def test_pandas_category_columns_take_their_declared_categories(
    categorical_transactions: pd.DataFrame,
) -> None:
    frame = categorical_transactions.copy()
    frame["country"] = frame["country"].cat.add_categories(["IT"])  # declared, never observed
    country = _fields(frame)["country"]
    assert country.type is FieldType.STRING
    assert country.allowed == ["DE", "FR", "GB", "NL", "US", "IT"]


def test_integer_categories_make_an_int_field_with_allowed_values() -> None:
    frame = pd.DataFrame({"tier": pd.Categorical([1, 2, 2, 3])})
    (spec,) = infer_fields(frame)
    assert spec.type is FieldType.INT
    assert spec.allowed == [1, 2, 3]


def test_high_cardinality_strings_are_free_text_without_allowed_values() -> None:
    frame = pd.DataFrame({"note": [f"text {i}" for i in range(MAX_INFERRED_CATEGORIES + 1)]})
    (spec,) = infer_fields(frame)
    assert spec.type is FieldType.STRING
    assert spec.allowed is None


def test_object_column_of_bools_is_a_bool_field() -> None:
    frame = pd.DataFrame({"flag": pd.Series([True, None, False], dtype=object)})
    (spec,) = infer_fields(frame)
    assert spec.type is FieldType.BOOL
    assert spec.missing is MissingPolicy.PASS


def test_unsupported_dtype_is_refused_naming_the_column() -> None:
    frame = pd.DataFrame(
        {"amount": [1.0, 2.0], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])}
    )
    with pytest.raises(SchemaDefinitionError, match=r"'when'.*datetime64") as caught:
        infer_fields(frame)
    assert caught.value.field == "when"


def test_a_column_mixing_value_types_is_refused_with_a_hint() -> None:
    frame = pd.DataFrame({"code": pd.Series(["a", 3, None], dtype=object)})
    with pytest.raises(SchemaDefinitionError, match=r"'code' mixes value types.*astype") as caught:
        infer_fields(frame)
    assert caught.value.field == "code"


def test_float_categories_are_refused_naming_the_column() -> None:
    frame = pd.DataFrame({"rate": pd.Categorical([0.5, 1.5])})
    with pytest.raises(SchemaDefinitionError, match="'rate'") as caught:
        infer_fields(frame)
    assert caught.value.field == "rate"


def test_a_numpy_sample_gets_the_model_feature_names_or_positional_ones() -> None:
    array = np.arange(6, dtype=np.float64).reshape(3, 2)
    assert list(as_frame(array).columns) == ["f0", "f1"]
    assert list(as_frame(array, ["a", "b"]).columns) == ["a", "b"]


def test_a_dict_of_columns_is_a_sample() -> None:
    frame = as_frame({"amount": [1.5, 2.5], "country": ["DE", "FR"]})
    assert [spec.type for spec in infer_fields(frame)] == [FieldType.FLOAT, FieldType.STRING]


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "no rows"),
        (np.zeros(3), "2-D array"),
        ([1, 2, 3], "expected a pandas DataFrame"),
    ],
)
def test_unusable_samples_are_refused(sample: object, message: str) -> None:
    with pytest.raises(SchemaDefinitionError, match=message):
        as_frame(sample)


def test_feature_names_must_match_the_array_width() -> None:
    with pytest.raises(SchemaDefinitionError, match="2 columns but 3 feature names"):
        as_frame(np.zeros((2, 2)), ["a", "b", "c"])
