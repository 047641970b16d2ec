"""The load generator behind ``rtserve bench``: closed and open loops, HDR percentiles.

A client tool: it talks to servers over HTTP only and, of rtserve, reads bundles for request
bodies (the import contract ``loadgen-is-a-client`` keeps it so).
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from rtserve.loadgen.bodies import (
        Protocol,
        Rows,
        encode_bodies,
        request_path,
        rows_from_bundle,
        rows_from_jsonl,
    )
    from rtserve.loadgen.driver import LoadSpec, run_load
    from rtserve.loadgen.loops import Workload
    from rtserve.loadgen.stats import Latency, LoadResult
    from rtserve.loadgen.wire import Endpoint, encode_request

#: Public name -> its module; imported on first use (PEP 562) so that ``rtserve --help`` does
#: not pay for numpy and the bundle reader.
_EXPORTS = {
    "Endpoint": "rtserve.loadgen.wire",
    "Latency": "rtserve.loadgen.stats",
    "LoadResult": "rtserve.loadgen.stats",
    "LoadSpec": "rtserve.loadgen.driver",
    "Protocol": "rtserve.loadgen.bodies",
    "Rows": "rtserve.loadgen.bodies",
    "Workload": "rtserve.loadgen.loops",
    "encode_bodies": "rtserve.loadgen.bodies",
    "encode_request": "rtserve.loadgen.wire",
    "request_path": "rtserve.loadgen.bodies",
    "rows_from_bundle": "rtserve.loadgen.bodies",
    "rows_from_jsonl": "rtserve.loadgen.bodies",
    "run_load": "rtserve.loadgen.driver",
}

__all__ = [
    "Endpoint",
    "Latency",
    "LoadResult",
    "LoadSpec",
    "Protocol",
    "Rows",
    "Workload",
    "encode_bodies",
    "encode_request",
    "request_path",
    "rows_from_bundle",
    "rows_from_jsonl",
    "run_load",
]


def __getattr__(name: str) -> typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtserve.loadgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
