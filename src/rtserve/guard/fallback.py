"""Fallback answers for a model that failed, hung, or whose circuit is open.

``fail_closed`` answers 503; ``fail_open`` answers a declared default for every row; ``rule`` answers
per row with the first matching declared rule (``rtserve.guard.rules``), else the default. The
answers are checked against the model's outputs when the policy is compiled, so a fallback can
never answer a class the model does not have.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from rtserve.bundle.policy import FallbackAnswer, FallbackPolicy
from rtserve.bundle.schema import OutputSpec
from rtserve.errors import ModelUnavailableError, SchemaDefinitionError
from rtserve.guard.rules import Rule
from rtserve.runtimes.base import ModelOutput
from rtserve.types import AnyArray, Columns, Task

#: Response header marking an answer that came from the fallback (its value: the mode).
FALLBACK_HEADER = "rtserve-fallback"


class _Answer:
    """A declared answer as one output row (label index + probabilities, or value)."""

    def __init__(self, answer: FallbackAnswer, outputs: OutputSpec, where: str) -> None:
        self.label: object = None
        self.probabilities: AnyArray | None = None
        self.value: AnyArray | None = None
        if outputs.task is Task.CLASSIFICATION:
            classes = list(outputs.classes or [])
            if answer.label is None:
                raise _invalid(f"{where}: a classifier's fallback answers a label, not a value")
            matching = [c for c in classes if str(c) == str(answer.label)]
            if not matching:
                raise _invalid(
                    f"{where}: label {answer.label!r} is not one of the classes {classes}"
                )
            self.label = matching[0]
            if outputs.probabilities:
                if answer.probabilities is None:
                    one_hot = np.zeros(len(classes))
                    one_hot[classes.index(self.label)] = 1.0
                    self.probabilities = one_hot
                elif len(answer.probabilities) != len(classes):
                    raise _invalid(
                        f"{where}: {len(answer.probabilities)} probabilities for "
                        f"{len(classes)} classes {classes}"
                    )
                else:
                    self.probabilities = np.asarray(answer.probabilities, dtype=np.float64)
        else:
            if answer.value is None:
                raise _invalid(f"{where}: a regressor's fallback answers a value, not a label")
            value = np.atleast_1d(np.asarray(answer.value, dtype=np.float64))
            if value.shape[0] != outputs.width:
                raise _invalid(
                    f"{where}: {value.shape[0]} values for an output of width {outputs.width}"
                )
            self.value = value


class Fallback:
    """A compiled ``FallbackPolicy`` for one model."""

    def __init__(
        self, policy: FallbackPolicy, outputs: OutputSpec, fields: Collection[str]
    ) -> None:
        self.policy = policy
        self.mode = policy.mode
        self._outputs = outputs
        self._default = _Answer(policy.default, outputs, "default") if policy.default else None
        self._rules = [
            (Rule(rule.when, fields), _Answer(rule.answer, outputs, f"rules[{i}]"))
            for i, rule in enumerate(policy.rules)
        ]

    def answer(self, columns: Columns, rows: int, why: str) -> ModelOutput:
        """The fallback outputs for these rows, or ``ModelUnavailableError`` (fail_closed).

        ``why`` (e.g. "the runtime failed: ...") goes into the 503 message.
        """
        if self.mode == "fail_closed":
            raise ModelUnavailableError(f"{why}; its fallback policy is fail_closed", field="model")
        chosen: list[_Answer | None] = [self._default] * rows
        if self.mode == "rule":
            decided = np.zeros(rows, dtype=bool)
            for rule, answer in self._rules:
                hits = rule.matches(columns) & ~decided
                for row in np.flatnonzero(hits):
                    chosen[row] = answer
                decided |= hits
            if any(a is None for a in chosen):
                undecided = [i for i, a in enumerate(chosen) if a is None]
                raise ModelUnavailableError(
                    f"{why}; no fallback rule matches row {undecided[0]} and the policy has no "
                    "default answer",
                    field="model",
                )
        return self._output([a for a in chosen if a is not None])

    def _output(self, answers: list[_Answer]) -> ModelOutput:
        if self._outputs.task is Task.CLASSIFICATION:
            classes = np.asarray(list(self._outputs.classes or []))
            labels = np.array([a.label for a in answers], dtype=classes.dtype)
            probabilities = None
            if self._outputs.probabilities:
                probabilities = (
                    np.stack([a.probabilities for a in answers if a.probabilities is not None])
                    if answers
                    else np.zeros((0, len(classes)))
                )
            return ModelOutput(label=labels, probabilities=probabilities)
        values = (
            np.stack([a.value for a in answers if a.value is not None])
            if answers
            else np.zeros((0, self._outputs.width))
        )
        return ModelOutput(value=values[:, 0] if self._outputs.width == 1 else values)


def _invalid(message: str) -> SchemaDefinitionError:
    return SchemaDefinitionError(f"fallback {message}", field="fallback")
