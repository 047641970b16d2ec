"""Request context: trace-context parsing and facts the data plane leaves for the middleware."""

from __future__ import annotations

import pytest

from rtserve.errors import FieldViolation
from rtserve.events import BatchInfo
from rtserve.observability import context

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_valid_traceparent_yields_its_trace_and_parent_ids():
    assert context.parse_traceparent(VALID) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # uppercase
    ],
)
def test_an_invalid_traceparent_is_ignored(value):
    assert context.parse_traceparent(value) is None


def test_notes_fill_the_bound_context_and_unknown_fields_become_a_bounded_label():
    ctx = context.RequestContext("r1", started=1.0, traceparent=VALID)
    token = context.bind(ctx)
    try:
        context.note_model("fraud", "3")
        context.note_rejection(
            {"amount", "country"},
            [
                FieldViolation("amount", "minimum", "amount: below"),
                FieldViolation("client-made-up-key-123", "unknown_field", "not a field"),
            ],
        )
        context.note_prediction(4, BatchInfo(0.01, 0.02, 16, 3), 5.0, fallback=True)
    finally:
        context.unbind(token)
    assert (ctx.model, ctx.version) == ("fraud", "3")
    assert ctx.violations == [("amount", "minimum"), ("_unknown", "unknown_field")]
    assert (ctx.rows, ctx.batch_rows, ctx.fallback) == (4, 16, True)
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert context.current() is None


def test_notes_without_a_bound_context_do_nothing():
    context.note_model("fraud", "1")
    context.note_prediction(1, BatchInfo(0, 0, 1, 1), 1.0)
    assert context.current() is None
    assert context.current_traceparent() is None


def test_served_fields_are_one_mapping_for_the_access_log_and_the_span():
    facts = context.RequestContext("r", started=0.0)
    assert facts.served_fields() == {}
    facts.model, facts.version = "fraud", "2"
    facts.rows, facts.batch_rows, facts.fallback = 3, 16, True
    expected = {"model": "fraud", "version": "2", "rows": 3, "batch_size": 16, "fallback": True}
    assert facts.served_fields() == expected
    assert facts.served_fields("rtserve.") == {f"rtserve.{k}": v for k, v in expected.items()}
