"""The promotion gate: compare a canary's window with production's and say wait, pass or break.

``evaluate`` is a pure function of two windows of figures and the thresholds, so every decision
can be replayed from the figures written with it to the audit log. A check that lacks samples
makes the verdict ``wait``; a break wins over everything else; ``pass`` needs every check on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rtserve.rollout.spec import GateSpec
from rtserve.rollout.statistics import FloatArray, psi, quantiles, rate_bounds, rate_difference

Verdict = Literal["wait", "pass", "break"]


@dataclass(frozen=True)
class ArmFigures:
    """One arm's requests in the window: how many, how many failed, latencies, output scores."""

    requests: int
    errors: int
    latencies: FloatArray  # seconds, one per answered request
    scores: FloatArray  # one per predicted row: positive-class probability or value

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (counts, error rate, latency p50/p99 in ms)."""
        p50, p99 = quantiles(self.latencies)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "latency_p50_ms": round(p50 * 1000, 3),
            "latency_p99_ms": round(p99 * 1000, 3),
            "rows": int(self.scores.size),
        }


@dataclass(frozen=True)
class Agreement:
    """A shadow of the canary version, compared with production on the same requests."""

    compared: int
    disagreed: int


@dataclass(frozen=True)
class Quality:
    """Labelled outcomes per arm (from a feedback join): how many were labelled, how many right."""

    labelled: int
    correct: int
    reference_labelled: int
    reference_correct: int


@dataclass(frozen=True)
class Check:
    """One threshold's outcome: its figure, the limit, and the verdict."""

    name: str
    verdict: Verdict
    value: float | None
    limit: float
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict over one window, with every check's figures."""

    verdict: Verdict
    checks: list[Check] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    production: dict[str, Any] = field(default_factory=dict)

    @property
    def broken(self) -> list[Check]:
        """The checks that broke."""
        return [c for c in self.checks if c.verdict == "break"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: what the audit log keeps beside each decision."""
        return {
            "verdict": self.verdict,
            "checks": [c.__dict__ for c in self.checks],
            "canary": self.canary,
            "production": self.production,
        }

    def describe(self) -> str:
        """One line: the verdict and the checks that decided it."""
        deciding = self.broken or [c for c in self.checks if c.verdict == self.verdict]
        return f"{self.verdict}: " + "; ".join(c.detail for c in deciding or self.checks)


def evaluate(
    gate: GateSpec,
    canary: ArmFigures,
    production: ArmFigures,
    agreement: Agreement | None = None,
    quality: Quality | None = None,
) -> GateResult:
    """Judge the canary's window against production's under ``gate``'s thresholds.

    ``quality`` is the hook for live labels (accuracy of each arm on requests whose outcome is
    known); nothing feeds it yet, so ``max_accuracy_drop`` waits until something does.
    """
    checks: list[Check] = []
    enough = canary.requests >= gate.min_requests and production.requests >= gate.min_requests
    need = f"needs {gate.min_requests} requests per arm (canary {canary.requests}, "
    need += f"production {production.requests})"
    if gate.max_error_rate_increase is not None:
        checks.append(_errors(gate, canary, production) if enough else _waiting("errors", need))
    if gate.max_p99_ratio is not None:
        checks.append(_latency(gate, canary, production) if enough else _waiting("p99", need))
    if gate.max_psi is not None:
        enough_rows = canary.scores.size >= gate.min_requests
        enough_rows = enough_rows and production.scores.size >= gate.min_requests
        checks.append(
            _psi(gate, canary, production) if enough_rows else _waiting("psi", need + " of rows")
        )
    if gate.max_disagreement is not None:
        if agreement is None or agreement.compared < gate.min_requests:
            compared = 0 if agreement is None else agreement.compared
            checks.append(
                _waiting(
                    "disagreement",
                    f"needs {gate.min_requests} shadow comparisons of the canary version "
                    f"(have {compared})",
                )
            )
        else:
            checks.append(_disagreement(gate, agreement))
    if gate.max_accuracy_drop is not None:
        if quality is None or min(quality.labelled, quality.reference_labelled) < gate.min_requests:
            checks.append(_waiting("accuracy", f"needs {gate.min_requests} labelled requests "
                                   "per arm (labels are not joined to predictions yet)"))  # fmt: skip
        else:
            checks.append(_accuracy(gate, quality))
    verdicts = {c.verdict for c in checks}
    verdict: Verdict = "break" if "break" in verdicts else "wait" if "wait" in verdicts else "pass"
    return GateResult(verdict, checks, canary.summary(), production.summary())


def _waiting(name: str, detail: str) -> Check:
    return Check(name, "wait", None, 0.0, f"{name}: {detail}")


def _errors(gate: GateSpec, canary: ArmFigures, production: ArmFigures) -> Check:
    margin = gate.max_error_rate_increase or 0.0
    diff = rate_difference(
        canary.errors, canary.requests, production.errors, production.requests, gate.alpha
    )
    broke = diff.exceeds(margin)
    detail = (
        f"error rate {diff.rate:.2%} vs production {diff.reference_rate:.2%} "
        f"(difference >= {diff.lower_bound:+.2%} at {1 - gate.alpha:.0%} confidence; "
        f"tolerated +{margin:.2%})"
    )
    return Check("errors", "break" if broke else "pass", diff.difference, margin, detail)


def _latency(gate: GateSpec, canary: ArmFigures, production: ArmFigures) -> Check:
    limit = gate.max_p99_ratio or 0.0
    canary_p99 = quantiles(canary.latencies, (0.99,))[0]
    production_p99 = quantiles(production.latencies, (0.99,))[0]
    ratio = canary_p99 / production_p99 if production_p99 > 0 else float("inf")
    detail = (
        f"p99 {canary_p99 * 1000:.2f} ms vs production {production_p99 * 1000:.2f} ms "
        f"(ratio {ratio:.2f}; limit {limit:g})"
    )
    return Check("p99_ratio", "break" if ratio > limit else "pass", ratio, limit, detail)


def _psi(gate: GateSpec, canary: ArmFigures, production: ArmFigures) -> Check:
    limit = gate.max_psi or 0.0
    value = psi(production.scores, canary.scores)
    detail = f"score PSI {value:.3f} (limit {limit:g})"
    return Check("psi", "break" if value > limit else "pass", value, limit, detail)


def _disagreement(gate: GateSpec, agreement: Agreement) -> Check:
    limit = gate.max_disagreement or 0.0
    bound = rate_bounds(agreement.disagreed, agreement.compared, gate.alpha)
    broke = bound.lower_bound > limit
    detail = (
        f"disagreement {bound.rate:.2%} over {agreement.compared} shadowed requests "
        f"(>= {bound.lower_bound:.2%} at {1 - gate.alpha:.0%} confidence; limit {limit:.2%})"
    )
    return Check("disagreement", "break" if broke else "pass", bound.rate, limit, detail)


def _accuracy(gate: GateSpec, quality: Quality) -> Check:
    limit = gate.max_accuracy_drop or 0.0
    # errors = wrong answers: the canary breaks when its error rate is beyond doubt higher
    diff = rate_difference(
        quality.labelled - quality.correct,
        quality.labelled,
        quality.reference_labelled - quality.reference_correct,
        quality.reference_labelled,
        gate.alpha,
    )
    broke = diff.exceeds(limit)
    detail = (
        f"accuracy {1 - diff.rate:.2%} vs production {1 - diff.reference_rate:.2%} "
        f"(drop >= {diff.lower_bound:+.2%} at {1 - gate.alpha:.0%} confidence; limit {limit:.2%})"
    )
    return Check("accuracy", "break" if broke else "pass", -diff.difference, limit, detail)


def empty_arm() -> ArmFigures:
    """An arm with no requests in the window."""
    return ArmFigures(0, 0, np.zeros(0), np.zeros(0))
