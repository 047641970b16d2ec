import numpy as np
import pytest

from rtserve.bundle.policy import FallbackPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import ModelUnavailableError, SchemaDefinitionError
from rtserve.guard.fallback import Fallback
from rtserve.types import Task

CLASSIFIER = OutputSpec(task=Task.CLASSIFICATION, classes=[0, 1])
REGRESSOR = OutputSpec(task=Task.REGRESSION)
COLUMNS = {"amount": np.array([5000.0, 10.0, 700.0])}


def fallback(policy, outputs=CLASSIFIER):
    return Fallback(FallbackPolicy.model_validate(policy), outputs, ["amount"])


def test_fail_closed_answers_unavailable_with_the_reason():
    with pytest.raises(
        ModelUnavailableError, match="runtime failed; its fallback policy is fail_closed"
    ):
        fallback({"mode": "fail_closed"}).answer(COLUMNS, 3, "runtime failed")


def test_fail_open_answers_the_default_for_every_row_with_one_hot_probabilities():
    output = fallback({"mode": "fail_open", "default": {"label": 0}}).answer(COLUMNS, 3, "x")
    assert output.label.tolist() == [0, 0, 0]
    assert output.probabilities.tolist() == [[1.0, 0.0]] * 3


def test_rule_answers_per_row_with_the_first_matching_rule_then_the_default():
    policy = {
        "mode": "rule",
        "rules": [
            {"when": "amount > 1000", "answer": {"label": 1, "probabilities": [0.2, 0.8]}},
            {"when": "amount > 500", "answer": {"label": 1}},
        ],
        "default": {"label": 0},
    }
    output = fallback(policy).answer(COLUMNS, 3, "x")
    assert output.label.tolist() == [1, 0, 1]
    assert output.probabilities.tolist() == [[0.2, 0.8], [1.0, 0.0], [0.0, 1.0]]


def test_a_rule_policy_without_default_is_unavailable_for_unmatched_rows():
    policy = {"mode": "rule", "rules": [{"when": "amount > 1000", "answer": {"label": 1}}]}
    with pytest.raises(ModelUnavailableError, match="no fallback rule matches row 1"):
        fallback(policy).answer(COLUMNS, 3, "x")


def test_regressors_fall_back_to_a_value():
    output = fallback({"mode": "fail_open", "default": {"value": 2.5}}, REGRESSOR).answer(
        COLUMNS, 3, "x"
    )
    assert output.value.tolist() == [2.5, 2.5, 2.5]


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"mode": "fail_open", "default": {"label": 7}}, "not one of the classes"),
        (
            {"mode": "fail_open", "default": {"label": 1, "probabilities": [1.0]}},
            "1 probabilities for 2 classes",
        ),
        ({"mode": "fail_open", "default": {"value": 1.0}}, "answers a label"),
        (
            {"mode": "rule", "rules": [{"when": "amont > 1", "answer": {"label": 1}}]},
            "not an input field",
        ),
    ],
)
def test_answers_that_do_not_fit_the_model_are_refused_when_compiled(policy, fragment):
    with pytest.raises(SchemaDefinitionError, match=fragment):
        fallback(policy)


@pytest.mark.parametrize(
    "policy",
    [
        {"mode": "fail_open"},
        {"mode": "rule"},
        {"mode": "fail_open", "default": {"label": 1, "value": 2.0}},
    ],
)
def test_incomplete_policies_are_refused_when_declared(policy):
    with pytest.raises(ValueError, match="validation error"):
        FallbackPolicy.model_validate(policy)
