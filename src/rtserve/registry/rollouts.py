"""Rollouts as registry rows: the JSON text stored for a spec and a state, the record read back,
and the rules for who may move a rollout where.

Two kinds of writers change a rollout. People (``maintainer``) pause, resume and abort it; the
server's promotion gate steps, pauses, rolls back or promotes it, writing only over the
generation it read (compare-and-set), so that of two workers or replicas deciding at once
exactly one decision lands. The state machine both follow lives here, apart from the storage.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from typing import Any, Literal

from rtserve.errors import (
    RegistryConflictError,
    RegistryInputError,
    RegistryStorageError,
    RolloutSpecError,
)
from rtserve.registry.chain import canonical
from rtserve.registry.records import RolloutRecord
from rtserve.rollout.spec import RolloutSpec, RolloutState, parse_spec

#: The audit action of each status the promotion gate may write (``advance_rollout``).
GATE_ACTIONS: dict[str, str] = {
    "running": "rollout-step",
    "rolled_back": "rollout-rollback",
    "paused": "rollout-pause",
    "awaiting_approval": "rollout-await-approval",
    "promoted": "rollout-promoted",
}
#: What a person may do to a rollout (``set_rollout_status``).
Change = Literal["pause", "resume", "abort"]
CHANGES: tuple[Change, ...] = ("pause", "resume", "abort")
#: Every audit action a rollout writes.
ROLLOUT_ACTIONS = frozenset(
    {"rollout-start", *GATE_ACTIONS.values(), *(f"rollout-{c}" for c in CHANGES)}
)
#: Longest state reason kept (characters), as for audit reasons.
MAX_REASON = 4000


def spec_text(spec: RolloutSpec) -> str:
    """The canonical JSON stored for ``spec``; refuses numbers JSON cannot hold (inf, NaN)."""
    try:
        return canonical(spec.model_dump(mode="json"))
    except ValueError as exc:
        raise RegistryInputError(
            f"rollout spec of {spec.model!r} holds a number JSON cannot store (inf or NaN): "
            "give every threshold and duration as a finite number, or leave it out",
            field="spec",
        ) from exc


def state_text(state: RolloutState) -> str:
    """The canonical JSON stored for ``state``; its generation is the row's own column."""
    return canonical(state.model_dump(mode="json", exclude={"generation"}))


def state_document(state: RolloutState) -> dict[str, Any]:
    """``state`` as the audit log records it (generation included)."""
    document: dict[str, Any] = state.model_dump(mode="json")
    return document


def figures_document(figures: dict[str, Any]) -> dict[str, Any]:
    """The gate's figures as stored: a JSON object, as given where JSON can say it.

    A gate decision must land even when a figure is infinite (a p99 ratio over a production p99
    of 0) or a numpy scalar: those become the strings ``"inf"``, ``"-inf"``, ``"nan"`` and plain
    numbers. Anything else JSON cannot hold is a ``RegistryInputError`` naming where it is.
    """
    if not isinstance(figures, dict):
        raise RegistryInputError(
            f"figures must be a JSON object (a dict of the gate's numbers), not "
            f"{type(figures).__name__}",
            field="figures",
        )
    document: dict[str, Any] = _jsonable(figures, "figures")
    return document


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise RegistryInputError(
        f"{where} is a {type(value).__name__}, which the audit log cannot store: give numbers, "
        "strings, booleans, None, lists and dicts",
        field="figures",
    )


def record(row: Any) -> RolloutRecord:
    """A stored row as a ``RolloutRecord`` (its state carries the row's generation)."""
    try:
        spec = parse_spec(json.loads(row.spec))
        state = RolloutState.model_validate({**json.loads(row.state), "generation": row.generation})
    except (ValueError, TypeError, RolloutSpecError) as exc:  # edited by hand: not JSON, a rule
        raise RegistryStorageError(
            f"the stored rollout of {row.name!r} cannot be read ({exc}); abort it and start a new "
            "one, or restore the row",
            field="rollout",
        ) from exc
    return RolloutRecord(
        name=row.name, spec=spec, state=state, started_by=row.started_by,
        started_at=row.started_at, updated_by=row.updated_by, updated_at=row.updated_at,
    )  # fmt: skip


def describe(found: RolloutRecord) -> str:
    """One phrase naming a rollout for messages: what it routes, where it stands, whose it is."""
    spec, state = found.spec, found.state
    if spec.canary is not None:
        what = f"canary {spec.model}@{spec.canary.version} at {state.weight:g}%"
    elif spec.ab is not None:
        arms = ", ".join(f"{v}={share:g}%" for v, share in spec.ab.split.items())
        what = f"A/B split {arms}"
    else:
        what = f"shadows {', '.join(spec.shadows) or 'none'}"
    return (
        f"{what}, {state.status} (generation {state.generation}, started by {found.started_by} "
        f"at {found.started_at})"
    )


def gate_action(current: RolloutRecord, state: RolloutState) -> str:
    """The audit action for the gate writing ``state`` over ``current``, or a refusal."""
    if current.state.ended:
        raise RegistryConflictError(
            f"the rollout of {current.name} has ended ({current.state.status} at generation "
            f"{current.generation}); an ended rollout does not change: start a new one with "
            f"`rtserve rollout start {current.name} ...`",
            field="status",
        )
    action = GATE_ACTIONS.get(state.status)
    if action is None:
        raise RegistryInputError(
            f"the promotion gate cannot set status {state.status!r}; it writes one of "
            f"{', '.join(GATE_ACTIONS)} (aborting is a person's decision: "
            "`rtserve rollout abort NAME`)",
            field="status",
        )
    return action


def person_change(
    current: RolloutRecord, change: str, *, actor: str, reason: str
) -> tuple[str, RolloutState]:
    """The audit action and the new state for a person's ``pause``/``resume``/``abort``.

    ``since`` is reset on every change, so a resumed canary dwells its whole time again.
    """
    if change not in CHANGES:
        raise RegistryInputError(
            f"rollout status change {change!r} is not one of {', '.join(CHANGES)}", field="status"
        )
    status = current.state.status
    why = reason.strip()[:MAX_REASON] or f"{change} by {actor}"
    if change == "pause" and status == "running":
        new: dict[str, Any] = {"status": "paused"}
    elif change == "resume" and status == "paused":
        new = {"status": "running"}
    elif change == "abort" and not current.state.ended:
        new = {"status": "aborted", "weight": 0.0}
    else:
        raise RegistryConflictError(
            f"cannot {change} the rollout of {current.name}: it is {status} "
            f"({_allowed(change)}); `rtserve rollout status {current.name}` shows it",
            field="status",
        )
    state = current.state.model_copy(update={**new, "since": time.time(), "reason": why})
    return f"rollout-{change}", state


def _allowed(change: str) -> str:
    return {
        "pause": "only a running rollout can be paused",
        "resume": "only a paused rollout can be resumed",
        "abort": "an ended rollout cannot be aborted; start a new one",
    }[change]
