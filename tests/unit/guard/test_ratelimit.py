import asyncio
import socket
import uuid

import pytest

from rtserve.errors import RateLimitedError
from rtserve.guard.ratelimit import RateLimiter
from rtserve.settings import SettingsError

REDIS = "redis://127.0.0.1:6379/0"


def run(coro):
    return asyncio.run(coro)


async def hits(limiter, client, n):
    return [await limiter.hit(client) for _ in range(n)]


def test_a_client_gets_its_limit_then_429_with_the_window():
    limiter = RateLimiter("3/minute")

    async def scenario():
        statuses = await hits(limiter, "alice", 3)
        assert [s.remaining for s in statuses] == [2, 1, 0]
        assert statuses[0].limit == 3
        assert statuses[0].window_s == 60
        with pytest.raises(
            RateLimitedError, match="'alice' exceeded its rate limit of 3 requests per 60 s"
        ) as info:
            await limiter.hit("alice")
        assert 1 <= info.value.retry_after <= 60
        assert info.value.remaining == 0

    run(scenario())


def test_other_clients_are_unaffected():
    limiter = RateLimiter("2/minute")

    async def scenario():
        await hits(limiter, "noisy", 2)
        with pytest.raises(RateLimitedError):
            await limiter.hit("noisy")
        assert (await limiter.hit("quiet")).remaining == 1

    run(scenario())


def test_named_clients_have_their_own_limits_and_unlisted_ones_none_without_a_default():
    limiter = RateLimiter(None, {"batch-job": "1/minute"})

    async def scenario():
        await limiter.hit("batch-job")
        with pytest.raises(RateLimitedError):
            await limiter.hit("batch-job")
        assert await limiter.hit("someone") is None

    run(scenario())


def test_redis_storage_shares_one_limit_between_workers():
    prefix = f"rtserve-test-{uuid.uuid4().hex}"
    worker_a = RateLimiter("4/minute", storage=REDIS, prefix=prefix)
    worker_b = RateLimiter("4/minute", storage=REDIS, prefix=prefix)

    async def scenario():
        try:
            await hits(worker_a, "alice", 2)
            await hits(worker_b, "alice", 2)
            with pytest.raises(RateLimitedError):
                await worker_a.hit("alice")
            assert (await worker_b.hit("bob")).remaining == 3
        finally:
            await worker_a.close()
            await worker_b.close()

    run(scenario())


def test_an_unreachable_storage_lets_requests_through(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = RateLimiter("1/minute", storage=f"redis://127.0.0.1:{port}/0")

    async def scenario():
        try:
            assert await limiter.hit("alice") is None
            assert await limiter.hit("alice") is None
        finally:
            await limiter.close()

    run(scenario())
    assert "rate limit storage unreachable" in caplog.text


@pytest.mark.parametrize(
    ("default", "storage", "fragment"),
    [("lots", "memory://", "is not a rate"), ("1/second", "mongodb://x", "not supported")],
)
def test_bad_configuration_is_a_settings_error(default, storage, fragment):
    with pytest.raises(SettingsError, match=fragment):
        RateLimiter(default, storage=storage)
