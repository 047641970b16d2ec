"""Version order: how "the newest version" is decided."""

from __future__ import annotations

import pytest

from rtserve.bundle.naming import version_order_key


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2", "10"),
        ("1.9", "1.10"),
        ("1.2.0", "1.10.0"),
        ("2024-06-01", "2024-11-30"),
        ("v2", "v10"),
        ("1.0", "1.0.1"),
        ("1.0-rc1", "1.0-rc2"),
    ],
)
def test_digit_runs_compare_as_numbers(older: str, newer: str) -> None:
    assert version_order_key(older) < version_order_key(newer)
