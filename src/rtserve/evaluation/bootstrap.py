"""Paired bootstrap: resample rows (the same rows for both models), as weight matrices in blocks.

A resample of ``n`` rows drawn with replacement is a row of counts (how often each row was
drawn); a block of resamples is a ``(block, n)`` matrix, so a mean metric over every resample of
the block is one matrix product. Both models are evaluated on the same matrix, which pairs them:
the interval of a difference reflects the rows' shared difficulty, and is much narrower than two
independent intervals would suggest. Blocks keep memory bounded (``MAX_CELLS`` weights at a time)
whatever the number of rows.

Intervals are percentile intervals of the resampled differences. The generator is seeded from
the seed and the segment's name, so a segment's interval does not depend on which other segments
were computed.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterator

import numpy as np

from rtserve.types import FloatArray

#: Weights held at once (resamples x rows): 2 million float64 values, 16 MB.
MAX_CELLS = 2_000_000
#: An interval is given only when at least this share of resamples had a value (AUC needs both
#: classes in a resample).
MIN_DEFINED = 0.9


def generator(seed: int, name: str) -> np.random.Generator:
    """The random generator for one segment: the same seed and name draw the same resamples."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def weight_blocks(rows: int, resamples: int, rng: np.random.Generator) -> Iterator[FloatArray]:
    """``resamples`` bootstrap resamples of ``rows`` rows as count matrices, block by block."""
    block = max(1, min(resamples, MAX_CELLS // max(rows, 1)))
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        drawn = rng.integers(0, rows, size=(size, rows))
        offsets = (np.arange(size) * rows)[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=size * rows)
        yield counts.reshape(size, rows).astype(np.float64)
        done += size


def interval(samples: FloatArray, confidence: float) -> tuple[float, float] | None:
    """The percentile interval of the resampled values, or None when too few are defined."""
    defined = samples[np.isfinite(samples)]
    if samples.size == 0 or defined.size < MIN_DEFINED * samples.size:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)
