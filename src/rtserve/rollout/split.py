"""Which version answers a request under a rollout, decided by a stable hash of its key.

The hash is BLAKE2b of (model, salt, key) — never Python's ``hash()``, which changes per
process — so every worker, replica and restart sends a key to the same version. Buckets are
0..9999 (0.01% resolution); a canary owns the lowest ``weight * 100`` buckets, so raising its
weight only adds keys to it: a key that was in the canary stays there as it grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rtserve.rollout.spec import HEADER_KEY_PREFIX, RolloutSpec, RolloutState

BUCKETS = 10_000

#: Why a version answered (the ``variant`` in bodies, headers, logs and metric labels).
PRODUCTION, CANARY, PINNED, SHADOW = "production", "canary", "pinned", "shadow"


def ab_variant(version: str) -> str:
    """The variant name of an A/B arm."""
    return f"ab:{version}"


def bucket(model: str, salt: str, key: str) -> int:
    """The key's bucket in 0..BUCKETS-1, the same in every process, forever."""
    digest = hashlib.blake2b(f"{model}\0{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Route:
    """The version chosen and why."""

    version: str
    variant: str


@dataclass(frozen=True)
class TrafficSplit:
    """A spec and state turned into a ``choose(key)``; rebuilt whenever either changes."""

    spec: RolloutSpec
    state: RolloutState

    @property
    def key_name(self) -> str | None:
        """The field or ``header:NAME`` that keys the split (None: the request id)."""
        if self.spec.ab is not None:
            return self.spec.ab.key
        if self.spec.canary is not None:
            return self.spec.canary.key
        return None

    @property
    def header_key(self) -> str | None:
        """The request header that keys the split, lower-case, if it is a header."""
        key = self.key_name
        if key is not None and key.startswith(HEADER_KEY_PREFIX):
            return key[len(HEADER_KEY_PREFIX) :].lower()
        return None

    @property
    def field_key(self) -> str | None:
        """The record field that keys the split, if it is a field."""
        key = self.key_name
        return key if key is not None and not key.startswith(HEADER_KEY_PREFIX) else None

    def choose(self, key: str) -> Route:
        """The version for a request whose key is ``key``."""
        spec, state = self.spec, self.state
        production = Route(spec.production, PRODUCTION)
        if state.status == "promoted" and spec.canary is not None:
            return Route(spec.canary.version, PRODUCTION)  # until the registry's pointer follows
        if state.ended:
            return production
        point = bucket(spec.model, spec.salt, key)
        if spec.canary is not None:
            if point < round(state.weight * BUCKETS / 100):
                return Route(spec.canary.version, CANARY)
            return production
        if spec.ab is not None:
            edge = 0.0
            for version, share in sorted(spec.ab.split.items()):  # stored order may differ
                edge += share * BUCKETS / 100
                if point < round(edge):
                    return Route(version, ab_variant(version))
            return Route(spec.production, ab_variant(spec.production))
        return production
