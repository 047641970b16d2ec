"""Ids unique across processes without a system call each: request ids and decision server ids.

16 random hex digits drawn once per process (again after a fork) and a 16-digit counter, as long
as a uuid4's hex; ``uuid4()`` would read the kernel's random source for every id.
"""

from __future__ import annotations

import itertools
import os


class UniqueIds:
    """A callable that returns a fresh id per call (thread-safe: ``next`` on a counter holds the
    GIL); the random prefix is redrawn in a forked child so workers never share ids."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def __call__(self) -> str:
        """The next id."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._prefix = os.urandom(8).hex()
            self._counter = itertools.count()
        return f"{self._prefix}{next(self._counter):016x}"
