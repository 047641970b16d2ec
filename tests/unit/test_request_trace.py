"""The request trace: what one request carries through the pipeline, and the facts it gathers."""

from __future__ import annotations

import pytest

from rtserve.events import BatchInfo, RequestTrace, parse_traceparent

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_valid_traceparent_yields_its_trace_and_parent_ids() -> None:
    assert parse_traceparent(VALID) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert RequestTrace("r", 0.0, VALID).trace_id == "0af7651916cd43dd8448eb211c80319c"


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
def test_an_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None
    assert RequestTrace("r", 0.0, value).trace_id is None


def test_served_fields_are_one_mapping_for_the_access_log_and_the_span() -> None:
    trace = RequestTrace("r", started=0.0)
    assert trace.served_fields() == {}
    trace.model, trace.version = "fraud", "2"
    assert trace.served_fields() == {"model": "fraud", "version": "2"}  # routed, not answered
    trace.rows, trace.batch, trace.fallback = 3, BatchInfo(0.0, 0.001, 16, 4), True
    expected = {"model": "fraud", "version": "2", "rows": 3, "batch_size": 16, "fallback": True}
    assert trace.served_fields() == expected
    assert trace.served_fields("rtserve.") == {f"rtserve.{k}": v for k, v in expected.items()}


def test_waiting_calls_the_transports_hook_and_is_harmless_without_one() -> None:
    calls: list[int] = []
    trace = RequestTrace("r", 0.0)
    trace.waiting()  # no transport watching (a notebook calling the data plane)
    trace.on_wait = lambda: calls.append(1)
    trace.waiting()
    assert calls == [1]


def test_a_trace_shares_no_mutable_default_between_requests() -> None:
    """Creating a trace is the only per-request cost: immutable defaults, no list or dict."""
    first, second = RequestTrace("a", 0.0), RequestTrace("b", 0.0)
    assert first.violations == ()
    assert first.violations is second.violations
    assert not hasattr(first, "__dict__")  # slots
