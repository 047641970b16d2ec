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
    limiter = RateLimiter(None, {"key:batch-job": "1/minute"})

    async def scenario():
        await limiter.hit("key:batch-job")
        with pytest.raises(RateLimitedError):
            await limiter.hit("key:batch-job")
        assert await limiter.hit("key:someone") is None

    run(scenario())


@pytest.mark.redis
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


def test_per_client_limits_name_the_kind_of_client_they_limit():
    limiter = RateLimiter(None, {"key:alice": "1/minute", "ip:10.0.0.7": "1/minute"})

    async def scenario():
        await limiter.hit("key:alice")
        with pytest.raises(RateLimitedError, match="'key:alice'"):
            await limiter.hit("key:alice")
        assert await limiter.hit("jwt:alice") is None  # a token with sub=alice is someone else
        await limiter.hit("ip:10.0.0.7")
        with pytest.raises(RateLimitedError):
            await limiter.hit("ip:10.0.0.7")

    run(scenario())


def test_a_bare_per_client_name_is_an_api_key_or_an_address_and_is_deprecated(caplog):
    limiter = RateLimiter(None, {"batch-job": "1/minute", "10.0.0.8": "1/minute"})

    async def scenario():
        await limiter.hit("key:batch-job")
        with pytest.raises(RateLimitedError):
            await limiter.hit("key:batch-job")
        assert await limiter.hit("jwt:batch-job") is None
        await limiter.hit("ip:10.0.0.8")
        with pytest.raises(RateLimitedError):
            await limiter.hit("ip:10.0.0.8")

    run(scenario())
    assert "'batch-job' names no kind and is read as 'key:batch-job'" in caplog.text
    assert "read as 'ip:10.0.0.8'" in caplog.text


def test_per_client_addresses_are_normalised():
    limiter = RateLimiter(None, {"ip:0:0:0:0:0:0:0:1": "1/minute"})

    async def scenario():
        await limiter.hit("ip:::1")
        with pytest.raises(RateLimitedError):
            await limiter.hit("ip:::1")

    run(scenario())


@pytest.mark.parametrize(
    ("per_client", "fragment"),
    [
        ({"key:": "1/minute"}, "names no key"),
        ({"ip:not-an-address": "1/minute"}, "is not an IP address"),
        ({"alice": "1/minute", "key:alice": "2/minute"}, "another entry names too"),
    ],
)
def test_unusable_per_client_keys_are_settings_errors(per_client, fragment):
    with pytest.raises(SettingsError, match=fragment):
        RateLimiter(None, per_client)


def test_failed_authentications_past_the_limit_refuse_the_address():
    limiter = RateLimiter(None, auth_failures_per_minute=3)
    failures = limiter.failures
    assert failures is not None
    assert not limiter.enabled  # no per-client limits: only failures are counted

    async def scenario():
        for _ in range(3):
            await failures.check("ip:10.0.0.1")
            await failures.failed("ip:10.0.0.1")
        with pytest.raises(RateLimitedError, match="3 failed authentications") as info:
            await failures.check("ip:10.0.0.1")
        assert 1 <= info.value.retry_after <= 60
        await failures.check("ip:10.0.0.2")  # another address is unaffected

    run(scenario())


def test_no_failure_limit_without_a_count():
    assert RateLimiter(None, auth_failures_per_minute=0).failures is None


@pytest.mark.redis
def test_redis_shares_the_failure_count_between_workers():
    prefix = f"rtserve-test-{uuid.uuid4().hex}"
    worker_a = RateLimiter(None, storage=REDIS, prefix=prefix, auth_failures_per_minute=2)
    worker_b = RateLimiter(None, storage=REDIS, prefix=prefix, auth_failures_per_minute=2)

    async def scenario():
        try:
            await worker_a.failures.failed("ip:10.0.0.3")
            await worker_a.failures.failed("ip:10.0.0.3")
            await worker_b.failures.check("ip:10.0.0.3")  # b has not seen it fail: no look-up
            with pytest.raises(RateLimitedError):  # its first failure finds the count full
                await worker_b.failures.failed("ip:10.0.0.3")
            with pytest.raises(RateLimitedError):  # and from then on it checks first
                await worker_b.failures.check("ip:10.0.0.3")
        finally:
            await worker_a.close()
            await worker_b.close()

    run(scenario())


def test_the_failure_memory_of_a_process_is_bounded(monkeypatch):
    from rtserve.guard.ratelimit import AuthFailureLimit

    monkeypatch.setattr(AuthFailureLimit, "MAX_TRACKED", 3)
    limiter = RateLimiter(None, auth_failures_per_minute=1)

    async def scenario():
        for i in range(10):
            await limiter.failures.failed(f"ip:10.0.1.{i}")
        assert len(limiter.failures._seen) == 3
        # an address forgotten here is still counted in the storage: its next failure is refused
        with pytest.raises(RateLimitedError):
            await limiter.failures.failed("ip:10.0.1.0")

    run(scenario())
