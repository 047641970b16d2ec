"""Logging: every record (structlog or stdlib, uvicorn included) is one JSON line, PII redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from rtserve.observability.logging import configure_logging
from rtserve.observability.redaction import Redactor


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_stdlib_records_become_json_lines_with_their_extra_fields(stream):
    configure_logging("info", stream=stream, redactor=Redactor(b"k"))
    logging.getLogger("rtserve.access").info(
        "%s %s %d", "GET", "/x", 200, extra={"request_id": "abc", "status": 200}
    )
    [record] = lines(stream)
    assert record["message"] == "GET /x 200"
    assert record["request_id"] == "abc"
    assert record["status"] == 200
    assert record["level"] == "info"
    assert record["logger"] == "rtserve.access"
    assert record["time"].endswith("Z")
    assert isinstance(record["pid"], int)


def test_structlog_loggers_share_the_chain_and_the_level_filter(stream):
    configure_logging("warning", stream=stream, redactor=Redactor(b"k"))
    log = structlog.get_logger("rtserve.test")
    log.info("hidden")
    log.warning("shown", model="fraud")
    [record] = lines(stream)
    assert record["message"] == "shown"
    assert record["model"] == "fraud"


def test_uvicorn_logs_are_routed_through_the_same_formatter(stream):
    configure_logging("info", stream=stream, redactor=Redactor(b"k"))
    logging.getLogger("uvicorn.error").info("Started server process")
    assert lines(stream)[0]["logger"] == "uvicorn.error"


def test_values_under_pii_keys_are_hashed_in_every_record(stream):
    redactor = Redactor(b"k")
    redactor.register({"email"})
    configure_logging("info", stream=stream, redactor=redactor)
    logging.getLogger("rtserve.x").info("m", extra={"email": "ann@example.org"})
    structlog.get_logger("rtserve.y").info("m", record={"email": "ann@example.org", "a": 1})
    assert "ann@example.org" not in stream.getvalue()
    first, second = lines(stream)
    assert first["email"].startswith("hmac:")
    assert second["record"]["email"].startswith("hmac:")


def test_exceptions_are_rendered_into_the_record(stream):
    configure_logging("info", stream=stream, redactor=Redactor(b"k"))
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("rtserve.z").exception("failed")
    [record] = lines(stream)
    assert "ValueError: boom" in record["exception"]


def test_plain_text_mode_writes_readable_lines(stream):
    configure_logging("info", json=False, stream=stream, redactor=Redactor(b"k"))
    logging.getLogger("rtserve.p").info("hello %s", "world")
    assert "hello world" in stream.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(stream.getvalue().splitlines()[0])


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        configure_logging("loud")


def test_the_direct_line_writer_writes_what_a_logging_call_would(stream):
    from rtserve.observability.logging import json_line_writer

    configure_logging("info", stream=stream, redactor=Redactor(b"k"))
    access = logging.getLogger("rtserve.access")
    access.info("%s", "GET /x 200", extra={"request_id": "abc", "status": 200})
    writer = json_line_writer(access)
    assert writer is not None
    writer.write("rtserve.access", "info", "GET /x 200", {"request_id": "abc", "status": 200})
    by_logging, direct = lines(stream)
    assert by_logging.keys() == direct.keys()
    assert {k: v for k, v in by_logging.items() if k != "time"} == {
        k: v for k, v in direct.items() if k != "time"
    }


def test_the_direct_line_writer_steps_aside_when_logging_is_set_up_otherwise(stream):
    from rtserve.observability.logging import json_line_writer

    configure_logging("info", stream=stream, redactor=Redactor(b"k"))
    access = logging.getLogger("rtserve.access")
    extra = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(extra)  # e.g. pytest's caplog, or an operator's handler
    assert json_line_writer(access) is None
    logging.getLogger().removeHandler(extra)
    access.propagate = False
    try:
        assert json_line_writer(access) is None
    finally:
        access.propagate = True
    assert json_line_writer(access) is not None


def test_the_direct_line_writer_writes_many_lines_as_it_writes_each(stream):
    from rtserve.observability.logging import json_line_writer

    redactor = Redactor(b"k")
    redactor.register(["email"])
    configure_logging("info", stream=stream, redactor=redactor)
    writer = json_line_writer(logging.getLogger("rtserve.access"))
    assert writer is not None
    entries = [("GET /x 200", {"request_id": "a", "status": 200}), ("POST /y 422", {"email": "x"})]
    for message, fields in entries:
        writer.write("rtserve.access", "info", message, dict(fields))
    writer.write_many("rtserve.access", "info", [(m, dict(f)) for m, f in entries])
    each, many = lines(stream)[:2], lines(stream)[2:]
    assert [{k: v for k, v in line.items() if k != "time"} for line in many] == [
        {k: v for k, v in line.items() if k != "time"} for line in each
    ]
    assert many[1]["email"].startswith("hmac:")
