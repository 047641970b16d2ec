"""Serving policies a bundle may declare: what to answer when the model fails, how to harden outputs.

Both are plain data in ``rtserve.yaml`` (keys ``fallback`` and ``output``); the server's
configuration (``Settings.policies``) may override them per model name. ``rtserve.guard`` compiles
and applies them; nothing here runs.

.. code-block:: yaml

    fallback:
      mode: rule                  # fail_closed | fail_open | rule
      rules:
        - when: "amount > 1000 and not card_present"
          answer: {label: 1}
      default: {label: 0}         # fail_open's answer; a rule policy's answer when none matches
    output:
      round_probabilities: 2      # decimals
      top_k: 1                    # probabilities of the other classes are reported as 0
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FallbackAnswer(BaseModel):
    """A declared answer: ``label`` (and optional ``probabilities``) or ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | int | bool | float | None = None
    probabilities: list[float] | None = None
    value: float | list[float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FallbackAnswer:
        if (self.label is None) == (self.value is None):
            raise ValueError("a fallback answer has either a label (classifiers) or a value")
        if self.probabilities is not None and self.label is None:
            raise ValueError("probabilities belong to a label answer")
        return self


class FallbackRule(BaseModel):
    """``answer`` for the rows where the expression ``when`` over input fields holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(min_length=1)
    answer: FallbackAnswer


class FallbackPolicy(BaseModel):
    """What a model answers when its runtime fails, hangs, or its circuit is open.

    ``fail_closed``: 503. ``fail_open``: ``default`` for every row. ``rule``: the first matching
    rule's answer per row, ``default`` for the rest (503 when a row matches none and there is no
    default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["fail_closed", "fail_open", "rule"] = "fail_closed"
    default: FallbackAnswer | None = None
    rules: list[FallbackRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> FallbackPolicy:
        if self.mode == "fail_open" and self.default is None:
            raise ValueError("fail_open needs a default answer")
        if self.mode == "rule" and not self.rules:
            raise ValueError("a rule policy needs at least one rule")
        return self


class OutputPolicy(BaseModel):
    """Output hardening against model extraction, applied to every answer in both APIs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round_probabilities: int | None = Field(default=None, ge=0, le=12)
    top_k: int | None = Field(default=None, ge=1)
