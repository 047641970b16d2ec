"""Ids unique across processes without a system call each: request ids and decision server ids.

16 random hex digits drawn once per process (again after a fork) and a 16-digit counter, as long
as a uuid4's hex; ``uuid4()`` would read the kernel's random source for every id.
"""

from __future__ import annotations

import itertools
import os
import weakref


class UniqueIds:
    """A callable that returns a fresh id per call (thread-safe: ``next`` on a counter holds the
    GIL); the random prefix is redrawn in a forked child (``os.register_at_fork``, not a
    ``getpid`` system call per id) so workers never share ids."""

    def __init__(self) -> None:
        self._redraw()
        _ALL.add(self)

    def _redraw(self) -> None:
        self._prefix: str = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        """The next id."""
        return f"{self._prefix}{next(self._counter):016x}"

    def take(self, count: int) -> list[str]:
        """The next ``count`` ids, as ``count`` calls would give them, at a third of the cost
        (the decision log takes one per event of a batch)."""
        if count <= 0:
            return []
        first = self()
        prefix = self._prefix
        rest = itertools.islice(self._counter, count - 1)
        return [first, *(f"{prefix}{n:016x}" for n in rest)]


_ALL: weakref.WeakSet[UniqueIds] = weakref.WeakSet()


def _redraw_all() -> None:
    for ids in list(_ALL):
        ids._redraw()


os.register_at_fork(after_in_child=_redraw_all)
