"""Fixtures of the ``rtserve compare`` tests: OLD and NEW bundles that differ in one segment only
(``tests.compare_support``), built once per session, and their holdout rows as parquet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compare_support import SegmentPair, build_pair


@pytest.fixture(scope="session")
def segment_pair(tmp_path_factory: pytest.TempPathFactory) -> SegmentPair:
    """OLD fraud:1 and NEW fraud:2; NEW was trained with the labels of FR rows inverted."""
    return build_pair(tmp_path_factory.mktemp("compare-bundles"))


@pytest.fixture(scope="session")
def holdout_parquet(segment_pair: SegmentPair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Holdout rows with the true label in ``y``."""
    path = tmp_path_factory.mktemp("compare-data") / "holdout.parquet"
    segment_pair.holdout.to_parquet(path)
    return path
