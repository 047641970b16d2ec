"""Access lines: the record built whole (``_access_record``) is the line the log chain writes."""

from __future__ import annotations

import itertools
import json

import pytest

from rtserve.events import BatchInfo, RequestTrace
from rtserve.observability.access import (
    AccessRecorder,
    Finished,
    _access_line,
    _access_record,
)
from rtserve.observability.logging import _fields, _line_encoder, configure_logging
from rtserve.observability.redaction import Redactor

TRACEPARENT = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


def traces() -> list[RequestTrace]:
    """A trace for each combination of the facts that add keys to a line."""
    out = []
    for traced, routed, variant, batched, fallback in itertools.product([False, True], repeat=5):
        trace = RequestTrace("req-1", 10.0, TRACEPARENT if traced else None)
        if routed:
            trace.model, trace.version = "fraud", "3"
            trace.variant = "canary" if variant else ""
        if batched:
            trace.batch = BatchInfo(0.001, 0.002, 17, 4)
            trace.rows, trace.fallback = 2, fallback
        out.append(trace)
    return out


@pytest.mark.parametrize("status", [200, 422, 503])
def test_a_record_built_whole_encodes_to_the_chains_line_byte_for_byte(status):
    end = Finished("POST", "/v1/models/fraud:predict", "records", "predict", status, 10.0123456)
    for trace in traces():
        message, fields = _access_line(trace, end)
        chain = _fields(fields, lambda _l, _m, d: d, message, "info", "rtserve.access", "T", 7)
        whole = _access_record(trace, end, "T", 7)
        assert _line_encoder.encode(whole) == _line_encoder.encode(chain), trace


def test_a_pii_name_among_the_access_keys_sends_the_lines_through_the_redaction(stream):
    redactor = Redactor(b"k")
    configure_logging("info", stream=stream, redactor=redactor)
    recorder = AccessRecorder(None)
    end = Finished("POST", "/v1/models/fraud:predict", "records", "predict", 200, 10.5)
    recorder.finished_many([(RequestTrace("req-1", 10.0), end)])
    redactor.register(["request_id"])  # a schema that names a field so
    recorder.finished_many([(RequestTrace("req-2", 10.0), end)])
    plain, redacted = (json.loads(line) for line in stream.getvalue().splitlines())
    assert plain["request_id"] == "req-1"
    assert redacted["request_id"].startswith("hmac:")
    assert plain.keys() == redacted.keys()
