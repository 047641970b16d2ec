"""Traffic splits: shares within noise, the same key always on the same version, growth only
adds keys to the canary."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from rtserve.rollout.spec import RolloutState, parse_spec
from rtserve.rollout.split import TrafficSplit, bucket


def split(weight: float, status: str = "running") -> TrafficSplit:
    spec = parse_spec({"model": "fraud", "production": "3", "canary": {"version": "4"}})
    return TrafficSplit(spec, RolloutState(status=status, weight=weight))  # type: ignore[arg-type]


def test_a_ten_percent_canary_gets_ten_percent_of_request_ids() -> None:
    chosen = Counter(split(10).choose(f"request-{i}").variant for i in range(20_000))
    assert abs(chosen["canary"] / 20_000 - 0.10) < 0.01


def test_raising_the_weight_keeps_every_key_already_in_the_canary() -> None:
    keys = [f"user-{i}" for i in range(5_000)]
    at_5 = {k for k in keys if split(5).choose(k).variant == "canary"}
    at_25 = {k for k in keys if split(25).choose(k).variant == "canary"}
    assert at_5 < at_25


def test_an_ended_rollout_routes_everything_to_production_and_a_promoted_one_to_the_canary() -> (
    None
):
    assert {split(50, "rolled_back").choose(f"k{i}").version for i in range(200)} == {"3"}
    assert {split(50, "aborted").choose(f"k{i}").version for i in range(200)} == {"3"}
    assert {split(100, "promoted").choose(f"k{i}").version for i in range(200)} == {"4"}


def test_an_ab_split_is_sticky_and_near_its_shares() -> None:
    spec = parse_spec({"model": "fraud", "production": "3",
                       "ab": {"key": "customer", "split": {"3": 70, "4": 30}}})  # fmt: skip
    ab = TrafficSplit(spec, RolloutState())
    first = {f"c{i}": ab.choose(f"c{i}").variant for i in range(10_000)}
    assert first == {f"c{i}": ab.choose(f"c{i}").variant for i in range(10_000)}
    shares = Counter(first.values())
    assert set(shares) == {"ab:3", "ab:4"}
    assert abs(shares["ab:4"] / 10_000 - 0.30) < 0.02
    assert ab.field_key == "customer"
    assert ab.header_key is None


def test_the_bucket_of_a_key_is_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; the split's hash must not be."""
    code = "from rtserve.rollout.split import bucket; print(bucket('fraud', 's', 'user-42'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"})  # fmt: skip
    assert int(other.stdout) == bucket("fraud", "s", "user-42")
