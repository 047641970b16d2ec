"""Generated request ids: unique within a process and across worker processes."""

from __future__ import annotations

import multiprocessing
import re

from rtserve.server.middleware import _new_request_id


def _ids(count: int) -> list[str]:
    return [_new_request_id() for _ in range(count)]


def test_generated_ids_are_unique_hex_of_uuid_length() -> None:
    ids = _ids(10_000)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_forked_workers_draw_their_own_prefix() -> None:
    _new_request_id()  # the parent has drawn its prefix
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_ids, [500, 500])
    parent = _ids(500)
    everything = parent + children[0] + children[1]
    assert len(set(everything)) == len(everything)
