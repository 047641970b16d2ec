"""Rows from JSON Lines text: one JSON object of field values per line, blank lines skipped.

The one reader behind every ``.jsonl`` of rows rtserve takes (``rtserve predict --input``,
``rtserve bench --data``); each caller says which error a bad line becomes, so the message names
the file and line the same way everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def json_objects(
    lines: Iterable[str], where: str, error: Callable[[str], Exception]
) -> Iterator[dict[str, Any]]:
    """Each non-blank line of ``lines`` parsed as one JSON object.

    Raises:
        ``error(message)``: a line is not JSON, or is JSON but not an object; the message names
            ``where`` (the file) and the line number, and says what a line should be.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(
                f"{where} line {number}: not valid JSON ({exc.msg} at column {exc.colno}); each "
                'line must be one JSON object such as {"amount": 12.5, "country": "DE"}'
            ) from exc
        if not isinstance(value, dict):
            raise error(
                f"{where} line {number}: expected one JSON object of field values per line, "
                f"got {type(value).__name__}"
            )
        yield value
