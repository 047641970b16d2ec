import pytest

from rtserve.errors import DeadlineExceededError, MalformedRequestError
from rtserve.guard.deadline import Deadline, DeadlinePolicy


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_no_header_gives_the_default_budget():
    clock = Clock()
    assert DeadlinePolicy(default_ms=250).from_header(None, clock).remaining() == pytest.approx(
        0.25
    )


def test_the_header_sets_the_budget_up_to_the_maximum():
    clock = Clock()
    policy = DeadlinePolicy(default_ms=1000, max_ms=5000)
    assert policy.from_header("100", clock).remaining() == pytest.approx(0.1)
    assert policy.from_header("999999", clock).remaining() == pytest.approx(5.0)


@pytest.mark.parametrize("raw", ["soon", "-5", "0", "nan", "inf", ""])
def test_a_bad_header_is_malformed_naming_it(raw):
    with pytest.raises(MalformedRequestError, match="x-request-timeout-ms") as info:
        DeadlinePolicy().from_header(raw)
    assert info.value.field == "x-request-timeout-ms"


def test_an_expired_deadline_refuses_the_next_stage():
    clock = Clock()
    deadline = Deadline.after(0.1, clock)
    deadline.check("queueing")
    clock.now = 0.2
    assert deadline.expired
    with pytest.raises(DeadlineExceededError, match="deadline of 100 ms passed before queueing"):
        deadline.check("queueing")
