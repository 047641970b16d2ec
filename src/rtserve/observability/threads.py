"""OS-level names for rtserve's threads, so ``top -H``, ``perf`` and ``/proc`` tell them apart.

Python 3.11 names a ``threading.Thread`` for Python only: every thread of the process shows the
interpreter's name to the OS, so a profile or a per-thread CPU reading (the benchmark's, from
``/proc/PID/task/*/stat``) cannot say whether the event loop, a runtime thread or an observer
spent the time. ``name_os_thread`` gives the calling thread's Python name to the OS (Linux keeps
15 bytes of it: ``rtserve-decisions`` shows as ``rtserve-decisio``); each of rtserve's threads
calls it first thing. Elsewhere than Linux, or without a C library to call, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable

#: ``prctl(PR_SET_NAME, name)`` names the calling thread (Linux).
_PR_SET_NAME = 15
#: Bytes of a thread name Linux keeps (16 with the terminating NUL).
_MAX_NAME_BYTES = 15


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _prctl()


def name_os_thread(name: str | None = None) -> None:
    """Name the calling OS thread ``name`` (default: its ``threading`` name), cut to 15 bytes.

    Also fits ``ThreadPoolExecutor(initializer=name_os_thread)``: each pool thread takes the
    name the pool gave it (``rt-card_0``).
    """
    if _PRCTL is None:
        return
    text = name if name is not None else threading.current_thread().name
    raw = text.encode("ascii", "replace")[:_MAX_NAME_BYTES]
    _PRCTL(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)
