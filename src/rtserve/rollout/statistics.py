"""The tests the promotion gate uses: rate differences with a confidence bound, PSI, quantiles.

Rates are compared with the Agresti–Caffo interval for a difference of two proportions (add one
success and one failure to each arm, then Wald): it keeps close to its nominal coverage even for
rates near 0 and samples of a few hundred, where the plain Wald interval collapses to zero width
(0 errors out of 200 is not "certainly 0%"). The gate asks a one-sided question: is the canary's
rate above production's plus a tolerated margin, beyond doubt at level ``alpha``?
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: PSI bins: deciles of the reference sample; an empty bin counts as this fraction.
PSI_BINS = 10
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class RateDifference:
    """Canary rate minus reference rate, with a one-sided confidence bound."""

    rate: float  # the canary's (or candidate's) rate
    reference_rate: float
    difference: float  # rate - reference_rate
    lower_bound: float  # at confidence 1 - alpha: the difference is at least this
    upper_bound: float  # at confidence 1 - alpha: the difference is at most this

    def exceeds(self, margin: float) -> bool:
        """True when the difference is above ``margin`` beyond doubt (the lower bound is)."""
        return self.lower_bound > margin


def rate_difference(
    events: int, trials: int, reference_events: int, reference_trials: int, alpha: float
) -> RateDifference:
    """Agresti–Caffo bounds for ``events/trials - reference_events/reference_trials``."""
    if trials <= 0 or reference_trials <= 0:
        raise ValueError("both samples need at least one trial")
    p1 = (events + 1) / (trials + 2)
    p2 = (reference_events + 1) / (reference_trials + 2)
    se = math.sqrt(p1 * (1 - p1) / (trials + 2) + p2 * (1 - p2) / (reference_trials + 2))
    z = NormalDist().inv_cdf(1 - alpha)
    adjusted = p1 - p2
    return RateDifference(
        rate=events / trials,
        reference_rate=reference_events / reference_trials,
        difference=events / trials - reference_events / reference_trials,
        lower_bound=adjusted - z * se,
        upper_bound=adjusted + z * se,
    )


@dataclass(frozen=True)
class RateBound:
    """One rate with a one-sided confidence bound (Wilson score interval)."""

    rate: float
    lower_bound: float
    upper_bound: float


def rate_bounds(events: int, trials: int, alpha: float) -> RateBound:
    """Wilson bounds for one proportion (e.g. a shadow's disagreement rate)."""
    if trials <= 0:
        raise ValueError("a rate needs at least one trial")
    z = NormalDist().inv_cdf(1 - alpha)
    p = events / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return RateBound(p, max(0.0, centre - half), min(1.0, centre + half))


def psi(reference: FloatArray, sample: FloatArray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``sample`` against ``reference`` over the reference's
    quantile bins (0.1: a small shift; 0.25: a large one, by the usual reading)."""
    if reference.size == 0 or sample.size == 0:
        raise ValueError("PSI needs two non-empty samples")
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1
    )
    actual = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=edges.size + 1)
    e = np.maximum(expected / reference.size, PSI_FLOOR)
    a = np.maximum(actual / sample.size, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def quantiles(values: FloatArray, qs: tuple[float, ...] = (0.5, 0.99)) -> list[float]:
    """The ``qs`` quantiles of ``values`` (empty: zeros), for p50/p99 figures."""
    if values.size == 0:
        return [0.0 for _ in qs]
    return [float(v) for v in np.quantile(values, qs)]
