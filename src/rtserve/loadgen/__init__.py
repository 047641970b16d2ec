"""The load generator behind ``rtserve bench``: closed and open loops, HDR percentiles.

A client tool: it talks to servers over HTTP only and, of rtserve, reads bundles for request
bodies (the import contract ``loadgen-is-a-client`` keeps it so).
"""

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
