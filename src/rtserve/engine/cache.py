"""Response cache for one model version: LRU + TTL, keyed by the canonical validated input.

The key is a hash of the validated columns (names, dtypes and bytes), so two requests that
validate to the same arrays share an entry whatever their JSON spelling or protocol was. Off by
default (``cache.max_entries: 0``); a model version's cache dies with it, so a new version never answers
from an old one's entries.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtserve.runtimes.base import ModelOutput
from rtserve.types import AnyArray, Columns

#: Requests with more rows than this are neither looked up nor stored (they would crowd out
#: the many small requests a cache is for, and hashing them costs more than it saves).
MAX_CACHED_ROWS = 64
_NONE = b"\x00N"  # a missing value in an object column
_STR = b"\x00S"  # a string follows: length, then its UTF-8 bytes


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made; ``size`` is the number of entries now."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    capacity: int

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache (0 before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class ResponseCache:
    """At most ``capacity`` outputs, each valid for ``ttl_seconds`` after it was stored.

    Thread-safe; stored outputs are private read-only copies, so a caller can neither change
    an entry nor keep a whole batch's arrays alive through one request's slice.
    """

    def __init__(
        self,
        capacity: int,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or ttl_seconds <= 0:
            raise ValueError(
                f"a response cache needs capacity >= 1 and ttl_seconds > 0, got capacity="
                f"{capacity}, ttl_seconds={ttl_seconds}; set cache.max_entries: 0 to switch it off"
            )
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, ModelOutput]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._expirations = 0

    @staticmethod
    def key(columns: Columns) -> bytes | None:
        """The canonical key of validated ``columns``; None when the request is not cacheable."""
        digest = hashlib.blake2b(digest_size=16)
        rows = -1
        for name, values in columns.items():
            if rows < 0:
                rows = len(values)
                if rows > MAX_CACHED_ROWS:
                    return None
            digest.update(name.encode("utf-8"))
            digest.update(values.dtype.str.encode("ascii"))
            if values.dtype == object:
                _hash_objects(digest, values)
            else:
                digest.update(np.ascontiguousarray(values).tobytes())
        return digest.digest()

    def get(self, key: bytes) -> ModelOutput | None:
        """The stored output for ``key`` (a hit), or None (a miss, also when it expired)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            stored_at, output = entry
            if now - stored_at >= self.ttl_seconds:
                del self._entries[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return output

    def put(self, key: bytes, output: ModelOutput) -> None:
        """Store ``output`` under ``key``, evicting the least recently used entry when full."""
        frozen = ModelOutput(
            label=_frozen(output.label),
            probabilities=_frozen(output.probabilities),
            value=_frozen(output.value),
        )
        now = self._clock()
        with self._lock:
            self._entries[key] = (now, frozen)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Hit, miss, eviction and expiration counts and the current size."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                size=len(self._entries),
                capacity=self.capacity,
            )


def _hash_objects(digest: hashlib.blake2b, values: AnyArray) -> None:
    """Strings length-prefixed (so "ab","c" differs from "a","bc"), None marked, others by repr."""
    for value in values.tolist():
        if value is None:
            digest.update(_NONE)
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            digest.update(_STR + len(data).to_bytes(8, "little") + data)
        else:  # booleans with missing values live in object columns
            text = f"{type(value).__name__}:{value!r}".encode()
            digest.update(b"\x00O" + len(text).to_bytes(8, "little") + text)


def _frozen(values: AnyArray | None) -> AnyArray | None:
    if values is None:
        return None
    copy = np.array(values, copy=True)
    copy.setflags(write=False)
    return copy
