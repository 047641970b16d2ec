import gzip
import zlib

import numpy as np
import pytest

from rtserve.errors import (
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from rtserve.guard.limits import BodyBuffer, check_json_depth, check_rows, check_strings, json_depth


def feed_all(buffer, data, chunk=4096):
    for i in range(0, len(data), chunk):
        buffer.feed(data[i : i + chunk])
    return buffer.finish()


def test_a_body_within_the_limit_is_returned_whole():
    assert feed_all(BodyBuffer(100), b"x" * 100) == b"x" * 100


def test_a_body_past_the_limit_is_refused_while_streaming():
    buffer = BodyBuffer(1000)
    buffer.feed(b"x" * 900)
    with pytest.raises(PayloadTooLargeError, match="limit of 1000 bytes"):
        buffer.feed(b"x" * 200)


def test_a_declared_length_past_the_limit_is_refused_before_reading():
    with pytest.raises(PayloadTooLargeError, match="of 5000 bytes"):
        BodyBuffer(1000).check_declared("5000")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_decoded(encoding):
    raw = b'{"instances": []}' * 10
    packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    assert feed_all(BodyBuffer(10_000, encoding), packed, chunk=7) == raw


def test_a_gzip_bomb_stops_at_the_limit_after_decompression():
    bomb = gzip.compress(b"\0" * (50 << 20))  # 50 MiB of zeros in ~50 KiB
    assert len(bomb) < 100_000
    buffer = BodyBuffer(1 << 20, "gzip")
    with pytest.raises(PayloadTooLargeError, match="after decompression"):
        feed_all(buffer, bomb)
    assert buffer.size <= (1 << 20) + 1  # never inflated more than one byte past the limit


def test_corrupt_or_truncated_compressed_bodies_are_malformed():
    with pytest.raises(MalformedRequestError, match="not valid gzip"):
        feed_all(BodyBuffer(1000, "gzip"), b"not gzip at all")
    with pytest.raises(MalformedRequestError, match="ends early"):
        feed_all(BodyBuffer(1000, "gzip"), gzip.compress(b"x" * 500)[:-10])


def test_an_unknown_content_encoding_is_unsupported():
    with pytest.raises(UnsupportedMediaTypeError, match="'br'"):
        BodyBuffer(1000, "br")


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": [[1, 2], {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"just a string"') == 0


def test_deep_json_is_refused_and_shallow_json_passes():
    check_json_depth(b'{"instances": [{"a": 1}]}', 3)
    with pytest.raises(
        MalformedRequestError, match="nests 40 levels deep, more than the limit of 32"
    ):
        check_json_depth(b"[" * 40 + b"]" * 40, 32)


def test_too_many_rows_are_refused_naming_the_field():
    check_rows(10, 10, "instances")
    with pytest.raises(PayloadTooLargeError, match="11 rows exceed the limit of 10") as info:
        check_rows(11, 10, "instances")
    assert info.value.field == "instances"


def test_long_strings_are_refused_naming_field_and_row():
    columns = {
        "country": np.array(["DE", "x" * 50, None], dtype=object),
        "amount": np.array([1.0, 2.0, 3.0]),
    }
    check_strings(columns, 50)
    with pytest.raises(ValidationError) as info:
        check_strings(columns, 10)
    violation = info.value.violations[0]
    assert (violation.field, violation.row, violation.rule) == ("country", 1, "max_string_length")
