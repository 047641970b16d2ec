"""Load specifications: what is valid, and how the load is split between client processes."""

from __future__ import annotations

import pytest

from rtserve.errors import LoadTestError
from rtserve.loadgen import LoadSpec


def test_a_rate_makes_an_open_loop_and_no_rate_a_closed_one():
    assert LoadSpec(rate=100.0).mode == "open"
    assert LoadSpec().mode == "closed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": None, "requests": None}, "exactly one"),
        ({"duration_s": 5.0, "requests": 10}, "exactly one"),
        ({"concurrency": 0}, "concurrency: 0"),
        ({"concurrency": 2, "processes": 3}, "processes: 3"),
        ({"rate": 0.0}, "rate: 0.0"),
        ({"warmup_s": -1.0}, "warmup: -1.0"),
        ({"timeout_s": 0.0}, "timeout: 0.0"),
    ],
)
def test_invalid_specs_are_refused_naming_the_setting(kwargs, message):
    with pytest.raises(LoadTestError, match=message):
        LoadSpec(**kwargs)


def test_processes_share_concurrency_rate_and_requests_without_losing_any():
    spec = LoadSpec(concurrency=10, rate=90.0, duration_s=None, requests=1001, processes=3)
    shares = [spec.share(i)[1] for i in range(3)]
    assert sum(p.concurrency for p in shares) == 10
    assert sum(p.requests or 0 for p in shares) == 1001
    assert all(p.rate == pytest.approx(30.0) for p in shares)
    warmups = [spec.share(i)[0] for i in range(3)]
    assert all(w.duration_s == spec.warmup_s and w.requests is None for w in warmups)
