import numpy as np
import pytest

from rtserve.errors import SchemaDefinitionError
from rtserve.guard.rules import Rule

FIELDS = ["amount", "hour", "country", "card_present", "merchant"]
COLUMNS = {
    "amount": np.array([1500.0, 20.0, np.nan, 900.0]),
    "hour": np.array([3, 14, 23, 5]),
    "country": np.array(["US", "DE", "GB", None], dtype=object),
    "card_present": np.array([False, True, False, True]),
    "merchant": np.array(["travel", None, "fuel", "grocery"], dtype=object),
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount > 1000 and not card_present", [True, False, False, False]),
        ("country in ['US', 'GB']", [True, False, True, False]),
        ("country not in ('US', 'GB')", [False, True, False, False]),
        ("merchant is None or country is None", [False, True, False, True]),
        ("amount is not None", [True, True, False, True]),
        ("hour >= 22 or hour < 6", [True, False, True, True]),
        ("0 < hour <= 5", [True, False, False, True]),
        ("amount * 2 + 100 > 1900", [True, False, False, False]),
        ("-amount < -800", [True, False, False, True]),
        ("hour % 2 == 1", [True, False, True, True]),
        ("amount == amount", [True, True, False, True]),
        ("country == 'DE'", [False, True, False, False]),
        ("True", [True, True, True, True]),
    ],
)
def test_expressions_evaluate_per_row(expression, expected):
    assert Rule(expression, FIELDS).matches(COLUMNS).tolist() == expected


def test_comparisons_with_null_are_false_and_mixed_types_do_not_raise():
    assert Rule("amount < 10000", FIELDS).matches(COLUMNS).tolist() == [True, True, False, True]
    assert Rule("country > 5", FIELDS).matches(COLUMNS).tolist() == [False, False, False, False]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('true')", "Call"),
        ("amount.real > 1", "Attribute"),
        ("country[0] == 'U'", "Subscript"),
        ("(lambda: 1)()", "Call"),
        ("[x for x in country]", "ListComp"),
        ("amout > 10", "not an input field"),
        ("amount >", "not a valid expression"),
        ("amount in country", "list of literals"),
        ("amount is 5", "only with None"),
        ("amount ** 2 > 1", "BinOp"),
        ("f'{amount}' == '1'", "JoinedStr"),
    ],
)
def test_anything_outside_the_whitelist_is_refused_at_load(expression, fragment):
    with pytest.raises(SchemaDefinitionError, match=fragment):
        Rule(expression, FIELDS)
