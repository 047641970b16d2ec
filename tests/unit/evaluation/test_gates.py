"""``--fail-on`` gates: a small grammar, refused with the accepted forms when it does not parse,
applied to the summary's overall numbers; a gate that cannot be computed fails."""

from __future__ import annotations

from typing import Any

import pytest

from rtserve.evaluation.gates import Gate, GateSyntaxError, evaluate_gates, parse_gates
from rtserve.evaluation.segments import SegmentSpecError, parse_spec
from rtserve.types import Task


def test_gates_parse_into_name_operator_and_threshold() -> None:
    gates = parse_gates("agreement<0.98, auc_drop > 0.01,any_flag,invalid_rate>=1e-2")
    assert [(g.name, g.op, g.threshold) for g in gates] == [
        ("agreement", "<", 0.98),
        ("auc_drop", ">", 0.01),
        ("any_flag", None, None),
        ("invalid_rate", ">=", 0.01),
    ]
    assert [g.text for g in gates] == [
        "agreement<0.98",
        "auc_drop>0.01",
        "any_flag",
        "invalid_rate>=1e-2",
    ]
    assert parse_gates(None) == parse_gates("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auc_dorp>0.01", "unknown name 'auc_dorp'"),
        ("agreement=0.98", "gate 'agreement=0.98' does not parse"),
        ("agreement<", "gate 'agreement<' does not parse"),
        ("agreement<high", "does not parse"),
        ("agreement<0.98,,any_flag", "has an empty gate"),
        ("any_flags", "does not parse"),
    ],
)
def test_a_bad_gate_is_named_with_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(GateSyntaxError, match=message) as caught:
        parse_gates(text)
    assert "accepted" in str(caught.value)
    assert "agreement<0.98,auc_drop>0.01,any_flag" in str(caught.value)  # an example


def test_gates_know_what_they_need() -> None:
    auc, agreement, shift = parse_gates("auc_drop>0.01,agreement<0.9,value_shift>0.2")
    assert auc.needs_labels
    assert not agreement.needs_labels
    assert not shift.needs_labels
    assert (
        auc.task_mismatch(Task.REGRESSION, False) == "auc_drop is computed for classification only"
    )
    assert auc.task_mismatch(Task.CLASSIFICATION, False) is not None  # no probabilities
    assert auc.task_mismatch(Task.CLASSIFICATION, True) is None
    assert agreement.task_mismatch(Task.REGRESSION, False) is not None
    assert shift.task_mismatch(Task.CLASSIFICATION, True) is not None


def _summary(**overall: Any) -> dict[str, Any]:
    return {
        "overall": {
            "agreement": overall.get("agreement", 0.99),
            "checks": [
                {"delta": "auc_drop", "value": overall.get("auc_drop", 0.004)},
                {"delta": "log_loss_increase", "value": None},
            ],
            "deltas": {"headline": {"p50": 0.01, "p99": 0.2, "max": 0.4}},
        },
        "flags": overall.get("flags", []),
        "data": {"rows_read": 1000, "rows_invalid": 30},
    }


def test_a_gate_breaks_when_its_condition_holds() -> None:
    gates = parse_gates("agreement<0.98,auc_drop>0.01,p99_delta>0.1,invalid_rate>0.05,any_flag")
    passed = evaluate_gates(gates, _summary())
    assert [(r.gate.text, r.value, r.broken) for r in passed] == [
        ("agreement<0.98", 0.99, False),
        ("auc_drop>0.01", 0.004, False),
        ("p99_delta>0.1", 0.2, True),
        ("invalid_rate>0.05", 0.03, False),
        ("any_flag", 0.0, False),
    ]
    failed = evaluate_gates(gates, _summary(agreement=0.9, auc_drop=0.02, flags=[{}]))
    assert [r.broken for r in failed] == [True, True, True, False, True]


def test_a_gate_that_could_not_be_computed_fails() -> None:
    (result,) = evaluate_gates(
        [Gate("log_loss_increase>0.1", "log_loss_increase", ">", 0.1)], _summary()
    )
    assert result.broken
    assert result.value is None
    assert result.note == "not computed for these rows"


def test_segment_specs_list_fields_and_crossings() -> None:
    assert parse_spec("country, channel+country") == [("country",), ("channel", "country")]
    assert parse_spec(None) == []
    for bad, message in [
        ("country,", "empty field name"),
        ("a+a", "names a field twice"),
        ("a,a", "given twice"),
    ]:
        with pytest.raises(SegmentSpecError, match=message):
            parse_spec(bad)
