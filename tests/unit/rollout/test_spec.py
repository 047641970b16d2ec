"""Rollout specs: what an operator may write, and the error that names what is wrong."""

from __future__ import annotations

import pytest

from rtserve.errors import RolloutSpecError
from rtserve.rollout.spec import initial_state, parse_spec


def test_a_canary_with_steps_starts_at_its_first_step() -> None:
    spec = parse_spec({"production": "3", "canary": {"version": "4"}, "steps": [5, 25, 100]},
                      model="fraud")  # fmt: skip
    assert spec.versions == ["3", "4"]
    state = initial_state(spec)
    assert (state.status, state.weight, state.step) == ("running", 5.0, 0)


def test_an_ab_split_and_shadows_name_every_version_once() -> None:
    spec = parse_spec({"model": "fraud", "production": "3",
                       "ab": {"key": "header:X-User", "split": {"3": 50, "4": 50}},
                       "shadows": ["5"]})  # fmt: skip
    assert spec.versions == ["3", "4", "5"]
    assert initial_state(spec).weight == 0.0


@pytest.mark.parametrize(
    ("data", "where", "says"),
    [
        ({"production": "3", "canary": {"version": "4", "weight": 120}}, "canary.weight", "100"),
        ({"production": "3", "canary": {"version": "3"}}, "rollout", "is the production"),
        (
            {"production": "3", "ab": {"key": "k", "split": {"3": 60, "4": 60}}},
            "ab",
            "add up to 120",
        ),
        (
            {"production": "3", "ab": {"key": "k", "split": {"4": 50, "5": 50}}},
            "rollout",
            "must include the production",
        ),
        (
            {
                "production": "3",
                "canary": {"version": "4"},
                "ab": {"key": "k", "split": {"3": 50, "4": 50}},
            },
            "rollout",
            "either canary or ab",
        ),
        ({"production": "3", "steps": [5, 50]}, "rollout", "walk a canary"),
        (
            {"production": "3", "canary": {"version": "4"}, "steps": [50, 5]},
            "rollout",
            "increasing",
        ),
        ({"production": "3", "shadows": ["3"]}, "rollout", "cannot shadow itself"),
        ({"production": "3", "gate": {"alpha": 0.9}}, "gate.alpha", "less than 0.5"),
        ({"production": "3", "canary": {"version": "4"}, "wieght": 5}, "wieght", "not permitted"),
    ],
)
def test_a_broken_spec_is_refused_naming_the_key_and_the_rule(
    data: dict[str, object], where: str, says: str
) -> None:
    with pytest.raises(RolloutSpecError) as refused:
        parse_spec(data, model="fraud")
    assert refused.value.field == where
    assert says in refused.value.message
    assert refused.value.message.startswith(f"rollout spec: {where}: ")
