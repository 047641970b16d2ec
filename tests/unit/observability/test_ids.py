"""Unique ids: a batch of them is what as many single calls would give."""

from __future__ import annotations

import re

from rtserve.observability.ids import UniqueIds


def test_taking_ids_in_a_batch_gives_what_as_many_calls_give():
    ids = UniqueIds()
    first = ids()
    batch = ids.take(5)
    last = ids()
    prefix = first[:16]
    assert [int(i[16:], 16) for i in [first, *batch, last]] == list(range(7))
    assert all(re.fullmatch(prefix + "[0-9a-f]{16}", i) for i in [*batch, last])
    assert ids.take(0) == []
    assert ids() == prefix + f"{7:016x}"
