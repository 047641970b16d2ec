"""Unique ids: a batch of them is what as many single calls would give."""

from __future__ import annotations

import os
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


def test_a_forked_child_draws_its_own_prefix_and_the_parent_goes_on():
    """Workers forked from one process never share ids: the child's prefix is redrawn at the
    fork, without a system call per id."""
    ids = UniqueIds()
    before = ids()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert re.fullmatch("[0-9a-f]{32}", child)
    assert child[:16] != before[:16]
    assert ids() == before[:16] + f"{1:016x}"
