"""``--fail-on``: conditions that make ``rtserve compare`` exit 1, so it can guard a CI step.

Grammar (spaces are ignored)::

    gates  := gate ("," gate)*
    gate   := "any_flag" | NAME OP NUMBER
    OP     := "<" | "<=" | ">" | ">="
    NAME   := agreement | disagreement | auc_drop | accuracy_drop | log_loss_increase
            | brier_increase | ece_increase | rmse_increase | mae_increase | value_shift
            | p99_delta | max_delta | invalid_rate | flags

A gate names the condition under which to **fail**: ``agreement<0.98`` fails when fewer than
98 % of labels agree; ``auc_drop>0.01`` when NEW's AUC is more than 0.01 below OLD's. Metric
gates read the overall point value (the differences oriented as in
``rtserve.evaluation.metrics``: positive = NEW worse). ``any_flag`` fails when any segment, or
the overall comparison, is flagged; ``flags>N`` when more than N checks are. A gate whose
number could not be computed (an AUC of rows holding one class) fails too: a check that could
not run has not passed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtserve.evaluation.metrics import BY_DELTA
from rtserve.types import Task

#: The comparison operators a gate may use.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
#: Gates that read something other than one metric's difference.
EXTRA_NAMES = ("agreement", "p99_delta", "max_delta", "invalid_rate", "flags")
ANY_FLAG = "any_flag"
NAMES: tuple[str, ...] = (*BY_DELTA, *EXTRA_NAMES)
_GATE = re.compile(r"^([a-z_0-9]+)(<=|>=|<|>)([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")
FORMS = (
    f"{ANY_FLAG}, or NAME<NUMBER / NAME<=NUMBER / NAME>NUMBER / NAME>=NUMBER with NAME one of "
    f"{', '.join(NAMES)} (e.g. agreement<0.98,auc_drop>0.01,any_flag)"
)


class GateSyntaxError(ValueError):
    """A ``--fail-on`` gate does not parse; the message names it and the accepted forms."""


@dataclass(frozen=True)
class Gate:
    """One parsed gate: ``name op threshold``, or ``any_flag`` (no op)."""

    text: str
    name: str
    op: str | None = None
    threshold: float | None = None

    @property
    def needs_labels(self) -> bool:
        """Whether the gate reads a metric that needs true labels."""
        metric = BY_DELTA.get(self.name)
        return metric is not None and metric.needs_labels

    def task_mismatch(self, task: Task, has_probabilities: bool) -> str | None:
        """Why this gate cannot be read for such models, or None when it can."""
        if self.name in ("agreement", "disagreement") and task is Task.REGRESSION:
            return "regressors have no labels to agree on (use value_shift)"
        metric = BY_DELTA.get(self.name)
        if metric is None:
            return None
        if task not in metric.tasks:
            return f"{self.name} is computed for {', '.join(t.value for t in metric.tasks)} only"
        if metric.needs_probabilities and not has_probabilities:
            return f"{self.name} needs probabilities, which these models do not give"
        return None


@dataclass(frozen=True)
class GateResult:
    """A gate applied: the value it read and whether it broke."""

    gate: Gate
    value: float | None
    broken: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "gate": self.gate.text,
            "value": self.value,
            "broken": self.broken,
            "note": self.note,
        }


def parse_gates(text: str | None) -> list[Gate]:
    """Parse ``--fail-on``.

    Raises:
        GateSyntaxError: an empty gate, an unknown name, a missing or bad operator or number.
    """
    if text is None or not text.strip():
        return []
    gates = []
    for raw in text.split(","):
        compact = re.sub(r"\s+", "", raw)
        if not compact:
            raise GateSyntaxError(f"{text!r} has an empty gate; accepted forms: {FORMS}")
        if compact == ANY_FLAG:
            gates.append(Gate(compact, ANY_FLAG))
            continue
        found = _GATE.match(compact)
        if found is None:
            raise GateSyntaxError(f"gate {raw.strip()!r} does not parse; accepted forms: {FORMS}")
        name, op, number = found.groups()
        if name not in NAMES:
            raise GateSyntaxError(f"gate {raw.strip()!r}: unknown name {name!r}; accepted: {FORMS}")
        threshold = float(number)
        if not math.isfinite(threshold):
            raise GateSyntaxError(f"gate {raw.strip()!r}: the number must be finite")
        gates.append(Gate(compact, name, op, threshold))
    return gates


def evaluate_gates(gates: list[Gate], summary: dict[str, Any]) -> list[GateResult]:
    """Apply each gate to a comparison's summary (``Comparison.to_dict()``)."""
    results = []
    for gate in gates:
        if gate.name == ANY_FLAG:
            count = len(summary["flags"])
            results.append(GateResult(gate, float(count), count > 0))
            continue
        value = _read(gate.name, summary)
        if value is None:
            results.append(GateResult(gate, None, True, "not computed for these rows"))
            continue
        if gate.op is None or gate.threshold is None:  # parse_gates never makes one
            raise ValueError(f"gate {gate.text} has no comparison")
        results.append(GateResult(gate, value, OPERATORS[gate.op](value, gate.threshold)))
    return results


def _read(name: str, summary: dict[str, Any]) -> float | None:
    overall = summary["overall"]
    if name == "agreement":
        return _number(overall["agreement"])
    if name == "flags":
        return float(len(summary["flags"]))
    if name == "invalid_rate":
        data = summary["data"]
        return data["rows_invalid"] / data["rows_read"] if data["rows_read"] else None
    if name in ("p99_delta", "max_delta"):
        headline = overall["deltas"].get("headline")
        return None if headline is None else _number(headline[name.removesuffix("_delta")])
    for check in overall["checks"]:
        if check["delta"] == name:
            return _number(check["value"])
    return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
