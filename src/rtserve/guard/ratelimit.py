"""Per-client rate limits with the ``limits`` library: in-process, or shared through Redis.

A client is an API key's name or a token's subject (the client address when authentication is
off). Each client has its own bucket, so one noisy client never slows the others. The strategy is
``limits``' moving window: at most N hits in any window of the given length, which behaves like a
token bucket of capacity N refilled over the window, with exact counts in Redis across workers and
replicas. If the storage cannot be reached the request is let through and a warning is logged: an
outage of the limiter must not become an outage of the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtserve.errors import RateLimitedError
from rtserve.settings import RateLimitSettings, SettingsError

if TYPE_CHECKING:  # `limits` costs ~0.2 s to import: only a server with a rate limit pays it
    from limits import RateLimitItem
    from limits.aio.storage import MemoryStorage, RedisStorage

logger = logging.getLogger("rtserve.guard")


@dataclass(frozen=True)
class RateStatus:
    """A client's window after a hit: what ``RateLimit-*`` headers report."""

    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees up again
    window_s: int


class RateLimiter:
    """Counts hits per client against its limit; raises ``RateLimitedError`` past it."""

    def __init__(
        self,
        default: str | None,
        per_client: Mapping[str, str] | None = None,
        storage: str = "memory://",
        prefix: str = "rtserve",
    ) -> None:
        from limits.aio.strategies import MovingWindowRateLimiter

        self._default = _parse(default, "rate_limit.default") if default else None
        self._per_client = {
            client: _parse(rate, f"rate_limit.per_client.{client}")
            for client, rate in (per_client or {}).items()
        }
        self.enabled = self._default is not None or bool(self._per_client)
        self._pool: Any = None  # the Redis connection pool, closed by ``close``
        self._storage = self._open(storage, prefix) if self.enabled else None
        self._strategy = MovingWindowRateLimiter(self._storage) if self._storage else None

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> RateLimiter:
        """Build from ``Settings.rate_limit``."""
        return cls(settings.default, settings.per_client, settings.storage)

    async def hit(self, client: str) -> RateStatus | None:
        """Count one request of ``client``; None when no limit applies to it."""
        item = self._per_client.get(client, self._default)
        if item is None or self._strategy is None:
            return None
        from limits.errors import StorageError

        try:
            allowed = await self._strategy.hit(item, "client", client)
            stats = await self._strategy.get_window_stats(item, "client", client)
        except (StorageError, ConnectionError, OSError) as exc:
            logger.warning("rate limit storage unreachable, request let through: %s", exc)
            return None
        window = int(item.get_expiry())
        reset_after = max(0.0, stats.reset_time - time.time())
        status = RateStatus(item.amount, max(0, stats.remaining), reset_after, window)
        if not allowed:
            raise RateLimitedError(
                f"client {client!r} exceeded its rate limit of {item.amount} requests per "
                f"{window} s; retry in {math.ceil(reset_after)} s",
                retry_after=max(1.0, math.ceil(reset_after)),
                limit=status.limit,
                remaining=0,
                reset_after=reset_after,
            )
        return status

    async def close(self) -> None:
        """Close the Redis connections (the counts stay in Redis)."""
        if self._pool is not None:
            await self._pool.disconnect()

    def _open(self, uri: str, prefix: str) -> MemoryStorage | RedisStorage:
        from limits.aio.storage import MemoryStorage, RedisStorage

        if uri.startswith("memory://"):
            return MemoryStorage()
        if uri.startswith(("redis://", "rediss://")):
            import redis.asyncio

            self._pool = redis.asyncio.ConnectionPool.from_url(
                uri, socket_timeout=1.0, socket_connect_timeout=1.0
            )
            return RedisStorage(
                uri, implementation="redispy", wrap_exceptions=True, key_prefix=prefix,
                connection_pool=self._pool,
            )  # fmt: skip
        raise SettingsError(
            f"rate_limit.storage: {uri!r} is not supported; use memory:// or redis://host:port/db",
            field="rate_limit.storage",
        )


def _parse(rate: str, where: str) -> RateLimitItem:
    import limits

    try:
        return limits.parse(rate)
    except ValueError as exc:
        raise SettingsError(
            f"{where}: {rate!r} is not a rate; write e.g. '100/second' or '1000 per minute'",
            field=where,
        ) from exc
