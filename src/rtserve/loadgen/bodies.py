"""Request bodies for a load test: rows from a bundle's validation sample or a JSON-lines file.

Rows become bodies of either protocol, encoded once before the run:
- ``records``: ``{"instances": [row, ...]}`` for ``POST /v1/models/{name}:predict``;
- ``v2``: one Open Inference Protocol input per field (shape ``[N]``, strings as ``BYTES``,
  ``null`` for a missing value) for ``POST /v2/models/{name}/infer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from rtserve.errors import LoadTestError
from rtserve.jsonlines import json_objects

Row = dict[str, Any]


class Protocol(StrEnum):
    """The wire format of the bodies."""

    RECORDS = "records"  # POST /v1/models/{name}:predict
    V2 = "v2"  # POST /v2/models/{name}/infer (Open Inference Protocol, JSON)


#: Schema field types (``rtserve.bundle.schema.FieldType`` values) to V2 datatypes.
_V2_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}


@dataclass(frozen=True)
class Rows:
    """Rows to send, the model they are for, and the V2 datatype of each field when known."""

    rows: list[Row]
    model: str | None = None
    datatypes: dict[str, str] | None = None


def rows_from_bundle(path: str | Path) -> Rows:
    """The validation sample of a bundle, with the model name and field types of its schema."""
    from rtserve.bundle.bundle import Bundle  # numpy and the bundle reader: only when needed

    bundle = Bundle.open(path)
    rows = bundle.read_validation().records()
    if not rows:
        raise LoadTestError(
            f"{path}: the bundle's validation sample has no rows; give bodies with --data FILE.jsonl",
            field="bundle",
        )
    schema = bundle.manifest.model_schema
    datatypes = {spec.name: _V2_DATATYPE[spec.type.value] for spec in schema.inputs}
    return Rows(rows, model=bundle.name, datatypes=datatypes)


def rows_from_jsonl(path: str | Path) -> Rows:
    """One JSON object per line: each is one row (``{field: value}``); blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LoadTestError(f"{path}: cannot read it ({exc.strerror})", field="data") from exc
    rows: list[Row] = list(
        json_objects(lines, str(path), lambda message: LoadTestError(message, field="data"))
    )
    if not rows:
        raise LoadTestError(f"{path}: no rows; write one JSON object per line", field="data")
    return Rows(rows)


def encode_bodies(
    rows: Rows, protocol: Protocol, *, rows_per_request: int = 1, limit: int = 4096
) -> list[bytes]:
    """Bodies of ``rows_per_request`` consecutive rows each (cycling), at most ``limit`` of them."""
    if rows_per_request < 1:
        raise LoadTestError(
            f"rows per request: {rows_per_request} is not positive; send at least 1 row",
            field="rows",
        )
    source = rows.rows
    count = max(1, min(limit, len(source) // rows_per_request or 1))
    bodies: list[bytes] = []
    for i in range(count):
        start = i * rows_per_request
        chunk = [source[(start + j) % len(source)] for j in range(rows_per_request)]
        if protocol is Protocol.RECORDS:
            bodies.append(msgspec.json.encode({"instances": chunk}))
        else:
            bodies.append(msgspec.json.encode(v2_request(chunk, rows.datatypes)))
    return bodies


def v2_request(chunk: Sequence[Row], datatypes: dict[str, str] | None = None) -> dict[str, Any]:
    """An Open Inference Protocol request with one ``[N]`` input per field of the rows."""
    names = list(datatypes) if datatypes else _field_names(chunk)
    inputs = []
    for name in names:
        data = [row.get(name) for row in chunk]
        datatype = (datatypes or {}).get(name) or _infer_datatype(data)
        inputs.append({"name": name, "shape": [len(chunk)], "datatype": datatype, "data": data})
    return {"inputs": inputs}


def _field_names(chunk: Sequence[Row]) -> list[str]:
    names: dict[str, None] = {}
    for row in chunk:
        names.update(dict.fromkeys(row))
    return list(names)


def _infer_datatype(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "FP64"
    if all(isinstance(v, bool) for v in present):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "FP64"
    return "BYTES"


def request_path(protocol: Protocol, model: str, version: str | None = None) -> str:
    """The inference path of ``model`` (and ``version``) for the protocol."""
    if protocol is Protocol.RECORDS:
        base = f"/v1/models/{model}" + (f"/versions/{version}" if version else "")
        return f"{base}:predict"
    base = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    return f"{base}/infer"
