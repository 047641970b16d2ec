"""The guards around one model's predictions: deadline, admission, circuit breaker, fallback, hardening.

``ModelGuard.call`` wraps the batcher call of one request (the engine passes it in as a coroutine
factory, so this layer needs nothing from the engine):

1. a request whose deadline has passed is refused (504) before it is queued;
2. admission control sheds it (503) when the queue is full or the wait would outlast its deadline;
3. while the circuit is open, or when the runtime fails or takes longer than ``predict_timeout``,
   the fallback answers (or 503 for ``fail_closed``; errors surface as they are without a policy);
4. the answer, from the model or the fallback, is hardened (rounding, top-k).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rtserve.bundle.policy import FallbackPolicy, OutputPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import (
    DeadlineExceededError,
    ModelUnavailableError,
    OverloadedError,
    PredictionError,
)
from rtserve.guard.admission import AdmissionController, QueueState
from rtserve.guard.breaker import BreakerState, CircuitBreaker
from rtserve.guard.deadline import TIMEOUT_HEADER, Deadline
from rtserve.guard.fallback import Fallback
from rtserve.guard.hardening import harden
from rtserve.runtimes.base import ModelOutput
from rtserve.settings import BreakerSettings, ModelPolicySettings, Settings
from rtserve.types import Columns

T = TypeVar("T")

#: Why a request did not get the model's own answer (counters in ``ModelGuard.stats``).
DEADLINE_EXPIRED = "deadline_expired"
CIRCUIT_OPEN = "circuit_open"
RUNTIME_ERROR = "runtime_error"
RUNTIME_TIMEOUT = "runtime_timeout"


@dataclass(slots=True)
class Outcome(Generic[T]):
    """The hardened answer, the batcher's info (None for a fallback) and the fallback mode used."""

    output: ModelOutput
    info: T | None
    fallback: str | None


@dataclass(frozen=True)
class ModelPolicies:
    """The fallback and output policies in force for one model (config over bundle)."""

    fallback: FallbackPolicy | None
    output: OutputPolicy | None

    @classmethod
    def resolve(
        cls,
        name: str,
        bundle_fallback: FallbackPolicy | None,
        bundle_output: OutputPolicy | None,
        overrides: Mapping[str, ModelPolicySettings],
    ) -> ModelPolicies:
        """The bundle's policies, each replaced by ``Settings.policies[name]``'s when given (the
        settings validated their shape at start-up; what needs the bundle is checked later)."""
        override = overrides.get(name)
        if override is None:
            return cls(bundle_fallback, bundle_output)
        return cls(
            override.fallback if override.fallback is not None else bundle_fallback,
            override.output if override.output is not None else bundle_output,
        )


class ModelGuard:
    """Admission, breaker, fallback and hardening for one served model version."""

    def __init__(
        self,
        *,
        policies: ModelPolicies,
        outputs: OutputSpec,
        fields: Collection[str],
        max_queue: int,
        breaker: BreakerSettings,
        predict_timeout_s: float,
    ) -> None:
        self.policies = policies
        self.fallback = (
            Fallback(policies.fallback, outputs, fields) if policies.fallback is not None else None
        )
        self.admission = AdmissionController(max_queue)
        self.breaker = CircuitBreaker(breaker)
        self.predict_timeout_s = predict_timeout_s
        self.rejections: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()

    @classmethod
    def build(
        cls, name: str, settings: Settings, outputs: OutputSpec, fields: Collection[str],
        bundle_fallback: FallbackPolicy | None, bundle_output: OutputPolicy | None,
    ) -> ModelGuard:  # fmt: skip
        """The guard of model ``name`` as ``settings`` and its bundle declare it.

        Raises:
            SchemaDefinitionError: a policy does not fit the model (unknown field in a rule,
                a class the model does not have).
        """
        policies = ModelPolicies.resolve(name, bundle_fallback, bundle_output, settings.policies)
        return cls(
            policies=policies,
            outputs=outputs,
            fields=fields,
            max_queue=settings.shedding.max_queue,
            breaker=settings.breaker,
            predict_timeout_s=settings.shedding.predict_timeout_s,
        )

    async def call(
        self,
        submit: Callable[[float], Awaitable[tuple[ModelOutput, T]]],
        columns: Columns,
        rows: int,
        deadline: Deadline,
        queue: Callable[[], QueueState],
    ) -> Outcome[T]:
        """Run ``submit`` (the batcher call) under every guard; see the module docstring."""
        if deadline.expired:
            self.rejections[DEADLINE_EXPIRED] += 1
            deadline.check("it was queued")
        state = queue()
        if self.breaker.state is BreakerState.CLOSED and _stuck(state, self.predict_timeout_s):
            # Every runtime slot has been busy with one batch for longer than a predict may
            # take: a failure, and no point in queueing behind it.
            self.breaker.record_failure()
            return self._fall_back(
                columns, rows, RUNTIME_TIMEOUT,
                f"the model has not answered for {state.running_for * 1000:.0f} ms",
            )  # fmt: skip
        if not self.breaker.allow():
            return self._fall_back(
                columns, rows, CIRCUIT_OPEN,
                "the model's circuit breaker is open after repeated failures",
            )  # fmt: skip
        try:
            self.admission.admit(state, rows, deadline.remaining())
        except OverloadedError:
            self.breaker.release_probe()
            raise
        timeout = min(deadline.remaining(), self.predict_timeout_s)
        by_deadline = deadline.remaining() <= self.predict_timeout_s
        try:
            output, info = await submit(timeout)  # raises TimeoutError past ``timeout``
        except TimeoutError:
            hung = _stuck(queue(), self.predict_timeout_s)
            if not by_deadline or hung:
                self.breaker.record_failure()
            else:
                self.breaker.release_probe()
            if by_deadline:
                self.rejections[DEADLINE_EXPIRED] += 1
                raise DeadlineExceededError(
                    f"the request's deadline of {deadline.budget * 1000:.0f} ms passed while it "
                    f"waited for the model (send a larger {TIMEOUT_HEADER} or retry)",
                    field=TIMEOUT_HEADER,
                ) from None
            return self._fall_back(
                columns, rows, RUNTIME_TIMEOUT,
                f"the model did not answer within {timeout * 1000:.0f} ms",
            )  # fmt: skip
        except PredictionError as exc:
            self.breaker.record_failure()
            if self.fallback is None:
                raise
            return self._fall_back(columns, rows, RUNTIME_ERROR, exc.message)
        self.breaker.record_success()
        return Outcome(harden(output, self.policies.output), info, None)

    def _fall_back(self, columns: Columns, rows: int, cause: str, why: str) -> Outcome[Any]:
        if self.fallback is None or self.fallback.mode == "fail_closed":
            self.rejections[cause] += 1
            policy = (
                "its fallback policy is fail_closed" if self.fallback else "it declares no fallback"
            )
            error = ModelUnavailableError(f"{why}; {policy}", field="model")
            error.retry_after = max(1.0, math.ceil(self.breaker.retry_after()))
            raise error
        self.fallbacks[cause] += 1
        output = self.fallback.answer(columns, rows, why)
        return Outcome(harden(output, self.policies.output), None, self.fallback.mode)

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: rejections and fallbacks by reason, breaker state."""
        return {
            "rejections": dict(self.rejections + self.admission.rejections),
            "fallbacks": dict(self.fallbacks),
            "admitted": self.admission.admitted,
            "breaker": self.breaker.state.value,
            "breaker_opened": self.breaker.opened,
        }


def _stuck(state: QueueState, limit: float) -> bool:
    """Every runtime slot busy, the oldest batch for longer than ``limit`` seconds."""
    return state.running_batches >= state.concurrency and state.running_for > limit
