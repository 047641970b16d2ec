"""The two ways the records lane can read a predict body, for the tests that compare them.

The general path is ``decode_predict_request`` plus ``Validator.records`` (every route); the
typed path is ``RowsDecoder`` plus ``Validator.rows`` (the records lane, when it can). Both are
written here as comparable values: columns as dtypes and exact values, errors as their status
and violations.
"""

from __future__ import annotations

import json
from typing import Any

from rtserve.bundle.validator import Validator
from rtserve.errors import MalformedRequestError, ValidationError
from rtserve.protocol.records import RowsDecoder, decode_predict_request


def columns_of(columns: Any) -> dict[str, tuple[str, list[str]]]:
    """Columns as dtype and exact values (``repr``: -0.0 is not 0.0 here, NaN is NaN)."""
    return {name: (str(v.dtype), [repr(x) for x in v.tolist()]) for name, v in columns.items()}


def body_of(rows: Any, **extra: Any) -> bytes:
    """A predict request's body: ``rows`` as its instances, ``extra`` top-level keys."""
    return json.dumps({"instances": rows, **extra}).encode()


def general(validator: Validator, body: bytes) -> Any:
    """What the general path makes of ``body``: its columns, or the error it raises."""
    try:
        instances, _ = decode_predict_request(body)
        return columns_of(validator.records(instances))
    except ValidationError as exc:
        return ("422", [(v.field, v.rule, v.row, v.message) for v in exc.violations])
    except MalformedRequestError as exc:
        return ("400", exc.message)


def typed(decoder: RowsDecoder, validator: Validator, body: bytes) -> Any:
    """The typed path's columns, or None when it leaves the body to the general path."""
    rows = decoder.decode(body)
    if rows is None:
        return None
    columns = validator.rows(rows)
    return None if columns is None else columns_of(columns)
