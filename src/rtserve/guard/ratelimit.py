"""Per-client rate limits with the ``limits`` library: in-process, or shared through Redis.

A client is a namespaced identity (``rtserve.guard.auth``): ``key:<API key name>``,
``jwt:<token sub>``, or ``ip:<address>`` when authentication is off. Each client has its own
bucket, so one noisy client never slows the others, and a token cannot spend (or escape) the
bucket of the API key its ``sub`` happens to name. The strategy is ``limits``' moving window: at
most N hits in any window of the given length, which behaves like a token bucket of capacity N
refilled over the window, with exact counts in Redis across workers and replicas. If the storage
cannot be reached the request is let through and a warning is logged: an outage of the limiter
must not become an outage of the model.

The same storage counts failed authentications per client address (``AuthFailureLimit``): past
``auth.max_failures_per_minute`` the address is refused with 429 before its credentials are even
checked, so guessing keys or tokens costs a minute per handful of guesses.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtserve.errors import RateLimitedError
from rtserve.settings import RateLimitSettings, SettingsError

if TYPE_CHECKING:  # `limits` costs ~0.2 s to import: only a server with a rate limit pays it
    from limits import RateLimitItem
    from limits.aio.storage import MemoryStorage, RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

logger = logging.getLogger("rtserve.guard")
#: The kinds a ``rate_limit.per_client`` key may name (``kind:value``).
KINDS = ("key", "jwt", "ip")


@dataclass(frozen=True)
class RateStatus:
    """A client's window after a hit: what ``RateLimit-*`` headers report."""

    limit: int
    remaining: int
    reset_after: float  # seconds until the window frees up again
    window_s: int


class RateLimiter:
    """Counts hits per client against its limit; raises ``RateLimitedError`` past it.

    Args:
        default: the limit of every client without its own ('100/second'); None: none.
        per_client: limits by namespaced identity (``key:<name>``, ``jwt:<sub>``,
            ``ip:<address>``); a bare name is read as ``key:<name>`` (an IP address as
            ``ip:<address>``) with a deprecation warning.
        storage: ``memory://`` or ``redis://host:port/db``.
        prefix: the storage key prefix.
        auth_failures_per_minute: failed authentications per client address and minute before
            429 (``failures``); 0: not counted.
    """

    def __init__(
        self,
        default: str | None,
        per_client: Mapping[str, str] | None = None,
        storage: str = "memory://",
        prefix: str = "rtserve",
        *,
        auth_failures_per_minute: int = 0,
    ) -> None:
        from limits.aio.strategies import MovingWindowRateLimiter

        self._default = _parse(default, "rate_limit.default") if default else None
        self._per_client: dict[str, RateLimitItem] = {}
        for name, rate in (per_client or {}).items():
            client = client_key(name)
            if client in self._per_client:
                raise SettingsError(
                    f"rate_limit.per_client: {name!r} names {client!r}, which another entry "
                    "names too; keep one of them",
                    field=f"rate_limit.per_client.{name}",
                )
            self._per_client[client] = _parse(rate, f"rate_limit.per_client.{name}")
        self.enabled = self._default is not None or bool(self._per_client)
        self._pool: Any = None  # the Redis connection pool, closed by ``close``
        needed = self.enabled or auth_failures_per_minute > 0
        self._storage = self._open(storage, prefix) if needed else None
        self._strategy = MovingWindowRateLimiter(self._storage) if self._storage else None
        #: Failed authentications per client address; None when not limited.
        self.failures: AuthFailureLimit | None = None
        if auth_failures_per_minute > 0 and self._strategy is not None:
            self.failures = AuthFailureLimit(auth_failures_per_minute, self._strategy)

    @classmethod
    def from_settings(
        cls, settings: RateLimitSettings, *, auth_failures_per_minute: int = 0
    ) -> RateLimiter:
        """Build from ``Settings.rate_limit`` (and ``auth.max_failures_per_minute`` when
        authentication is on)."""
        return cls(
            settings.default,
            settings.per_client,
            settings.storage,
            auth_failures_per_minute=auth_failures_per_minute,
        )

    async def hit(self, client: str) -> RateStatus | None:
        """Count one request of ``client`` (a namespaced identity); None when no limit applies."""
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


class AuthFailureLimit:
    """Failed authentications per client address: past ``per_minute`` in a moving minute the
    address is refused (429) before its credentials are checked, until the window frees up.

    Counts live in the rate limiter's storage (shared through Redis across workers). To keep the
    storage off the path of every authenticated request, an address is checked there only after
    it has failed in this process within the window; a worker that has not seen it fail checks its
    credentials, and its failure then finds the shared count full. Across W workers an address
    gets about N + W - 1 guesses a minute. ``_seen`` is bounded: an address evicted from it is
    checked again at its next failure.
    """

    #: Addresses remembered per process (least recently failed evicted first).
    MAX_TRACKED = 65_536

    def __init__(self, per_minute: int, strategy: MovingWindowRateLimiter) -> None:
        import limits

        self.per_minute = per_minute
        self._item = limits.RateLimitItemPerMinute(per_minute)
        self._strategy = strategy
        self._window = float(self._item.get_expiry())
        self._seen: OrderedDict[str, float] = OrderedDict()  # address -> monotonic last failure

    async def check(self, address: str) -> None:
        """Raise ``RateLimitedError`` when ``address`` has used up its failures."""
        seen = self._seen.get(address)
        if seen is None:
            return
        if time.monotonic() - seen > self._window:
            del self._seen[address]
            return
        from limits.errors import StorageError

        try:
            allowed = await self._strategy.test(self._item, "auth_failures", address)
        except (StorageError, ConnectionError, OSError) as exc:
            logger.warning("rate limit storage unreachable, failure limit not checked: %s", exc)
            return
        if not allowed:
            raise await self._refusal(address)

    async def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``; ``RateLimitedError`` when it was one
        too many (another worker counted the others)."""
        self._seen[address] = time.monotonic()
        self._seen.move_to_end(address)
        while len(self._seen) > self.MAX_TRACKED:
            self._seen.popitem(last=False)
        from limits.errors import StorageError

        try:
            allowed = await self._strategy.hit(self._item, "auth_failures", address)
        except (StorageError, ConnectionError, OSError) as exc:
            logger.warning("rate limit storage unreachable, failure not counted: %s", exc)
            return
        if not allowed:
            raise await self._refusal(address)

    async def _refusal(self, address: str) -> RateLimitedError:
        from limits.errors import StorageError

        try:
            stats = await self._strategy.get_window_stats(self._item, "auth_failures", address)
            reset_after = max(0.0, stats.reset_time - time.time())
        except (StorageError, ConnectionError, OSError):  # gone since the count: a whole window
            reset_after = self._window
        return RateLimitedError(
            f"{self.per_minute} failed authentications from {address!r} within a minute; "
            f"requests from this address are refused for {math.ceil(reset_after)} s (check the "
            "credentials your client sends)",
            retry_after=max(1.0, math.ceil(reset_after)),
            limit=self.per_minute,
            remaining=0,
            reset_after=reset_after,
        )


def client_key(name: str) -> str:
    """A ``rate_limit.per_client`` key as the identity it limits: ``key:<name>``,
    ``jwt:<sub>`` or ``ip:<address>`` (normalised); a bare name is ``key:<name>``, or
    ``ip:<address>`` when it is an IP address, and logs a deprecation warning."""
    kind, sep, value = name.partition(":")
    if sep and kind in KINDS:
        if not value.strip():
            raise SettingsError(
                f"rate_limit.per_client: {name!r} names no {kind}; write '{kind}:<value>'",
                field=f"rate_limit.per_client.{name}",
            )
        if kind != "ip":
            return name
        try:
            return f"ip:{ipaddress.ip_address(value.strip())}"
        except ValueError:
            raise SettingsError(
                f"rate_limit.per_client: {value!r} in {name!r} is not an IP address; write "
                "e.g. 'ip:203.0.113.7'",
                field=f"rate_limit.per_client.{name}",
            ) from None
    try:
        resolved = f"ip:{ipaddress.ip_address(name.strip())}"
    except ValueError:
        resolved = f"key:{name}"
    logger.warning(
        "rate_limit.per_client: %r names no kind and is read as %r; bare names are deprecated, "
        "write 'key:<API key name>', 'jwt:<token sub>' or 'ip:<address>'",
        name,
        resolved,
    )
    return resolved


def _parse(rate: str, where: str) -> RateLimitItem:
    import limits

    try:
        return limits.parse(rate)
    except ValueError as exc:
        raise SettingsError(
            f"{where}: {rate!r} is not a rate; write e.g. '100/second' or '1000 per minute'",
            field=where,
        ) from exc
