from rtserve.guard.breaker import BreakerState, CircuitBreaker
from rtserve.settings import BreakerSettings


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def breaker(**config):
    clock = Clock()
    return CircuitBreaker(BreakerSettings(**config), clock), clock


def test_consecutive_failures_open_the_breaker():
    b, _ = breaker(consecutive_failures=3, min_calls=100)
    for _ in range(2):
        b.record_failure()
    assert b.allow()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.opened == 1


def test_a_success_resets_the_consecutive_count():
    b, _ = breaker(consecutive_failures=3, min_calls=100)
    for _ in range(5):
        b.record_failure()
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_an_error_rate_over_the_window_opens_the_breaker():
    b, _ = breaker(consecutive_failures=100, error_rate=0.5, window=10, min_calls=10)
    for _ in range(5):
        b.record_success()
        b.record_failure()
    assert b.state is BreakerState.OPEN


def test_the_error_rate_needs_min_calls():
    b, _ = breaker(consecutive_failures=100, error_rate=0.5, window=10, min_calls=10)
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED


def test_after_open_s_one_probe_goes_through_and_its_success_closes():
    b, clock = breaker(consecutive_failures=1, open_s=5)
    b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    assert 0 < b.retry_after() <= 0.11
    clock.now += 0.2
    assert b.allow()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.allow()


def test_a_failed_probe_opens_the_breaker_again():
    b, clock = breaker(consecutive_failures=1, open_s=5)
    b.record_failure()
    clock.now += 6
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.opened == 2


def test_an_unused_probe_slot_can_be_given_back():
    b, clock = breaker(consecutive_failures=1, open_s=5)
    b.record_failure()
    clock.now += 6
    assert b.allow()
    b.release_probe()
    assert b.allow()
