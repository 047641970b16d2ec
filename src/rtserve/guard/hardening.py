"""Output hardening: coarser probabilities and top-k, so answers reveal less of the model.

Applied to the raw outputs before any codec sees them, so both APIs (and fallback answers) obey it.
Rounding makes probabilities coarse; top-k keeps the k most likely classes' probabilities per row
and reports the others as 0. Labels and regression values are left as they are.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rtserve.bundle.policy import OutputPolicy
from rtserve.runtimes.base import ModelOutput


def harden(output: ModelOutput, policy: OutputPolicy | None) -> ModelOutput:
    """``output`` with the policy's rounding and top-k applied (unchanged without a policy)."""
    if policy is None or output.probabilities is None:
        return output
    if policy.round_probabilities is None and policy.top_k is None:
        return output
    probabilities = np.array(output.probabilities, dtype=np.float64, copy=True)
    if (
        probabilities.ndim == 2
        and policy.top_k is not None
        and policy.top_k < probabilities.shape[1]
    ):
        # Indices of all but the k largest per row (ties keep the earlier class).
        order = np.argsort(-probabilities, axis=1, kind="stable")
        rows = np.arange(probabilities.shape[0])[:, None]
        probabilities[rows, order[:, policy.top_k :]] = 0.0
    if policy.round_probabilities is not None:
        probabilities = np.round(probabilities, policy.round_probabilities)
    return replace(output, probabilities=probabilities)
