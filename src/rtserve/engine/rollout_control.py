"""The promotion gate at work: read rollouts, apply them, judge canaries, step or roll back.

Every ``interval_s`` the controller reads the rollouts of the names it watches from a
``RolloutStore`` (a spec file, or the registry), makes sure every version they name is loaded,
applies them to ``Rollouts`` and judges each running canary with ``rtserve.rollout.gate``:

- ``break`` (a threshold broke, beyond statistical doubt): back to 0% (or paused: ``on_break``);
- ``pass`` for ``dwell_s`` at a step: the next step; after the last, promotion (a registry files
  a production request that approvers decide; a spec file promotes at once);
- ``wait``: not enough requests in the window yet.

Each decision is written with the figures that drove it, over the state generation it read:
with several workers or replicas on one registry, the first to decide wins and the others read
its decision on their next look (the registry's audit log keeps every one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rtserve.engine.manager import ModelManager
from rtserve.engine.rollout import LiveRollout, Rollouts
from rtserve.errors import (
    NotFoundError,
    RegistryConflictError,
    RolloutConflictError,
    RtserveError,
)
from rtserve.observability.threads import name_os_thread
from rtserve.rollout.gate import GateResult, evaluate
from rtserve.rollout.spec import RolloutSpec, RolloutState, initial_state, read_spec_file
from rtserve.rollout.split import CANARY, PRODUCTION
from rtserve.settings import Settings

if TYPE_CHECKING:  # the registry (SQLAlchemy, Alembic) is imported only when serving from one
    from rtserve.engine.follower import RegistryFollower
    from rtserve.registry import Registry

logger = logging.getLogger("rtserve.rollout")


@dataclass(frozen=True)
class StoredRollout:
    """A rollout as a store holds it."""

    spec: RolloutSpec
    state: RolloutState


class RolloutStore(Protocol):
    """Where rollouts live: read them, and write a decision over the generation read."""

    def read(self, names: Sequence[str]) -> dict[str, StoredRollout | None]:
        """The rollout of each name (None: none)."""

    def advance(
        self,
        name: str,
        state: RolloutState,
        *,
        expect_generation: int,
        reason: str,
        figures: dict[str, Any],
    ) -> RolloutState:
        """Write ``state`` if the stored generation is still ``expect_generation``; raise
        ``RolloutConflictError`` if someone else decided first."""

    def request_promotion(self, stored: StoredRollout, reason: str) -> str:
        """Ask for the canary to become production; returns the state to go to
        (``awaiting_approval``, or ``promoted`` when done at once)."""


@dataclass
class FileRolloutStore:
    """Rollouts from a spec file; their states live in this process (each worker decides on
    its own traffic, with the same thresholds)."""

    specs: dict[str, RolloutSpec]
    states: dict[str, RolloutState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, path: str | Path) -> FileRolloutStore:
        """The store for the specs in ``path``."""
        return cls({spec.model: spec for spec in read_spec_file(path)})

    def read(self, names: Sequence[str]) -> dict[str, StoredRollout | None]:
        """The rollout of each name; a name's state starts when it is first read."""
        with self._lock:
            found: dict[str, StoredRollout | None] = {}
            for name in names:
                spec = self.specs.get(name)
                if spec is None:
                    found[name] = None
                    continue
                state = self.states.setdefault(name, initial_state(spec).model_copy(
                    update={"generation": 1}))  # fmt: skip
                found[name] = StoredRollout(spec, state)
            return found

    def advance(
        self,
        name: str,
        state: RolloutState,
        *,
        expect_generation: int,
        reason: str,
        figures: dict[str, Any],
    ) -> RolloutState:
        """Compare-and-set in memory."""
        with self._lock:
            current = self.states[name]
            if current.generation != expect_generation:
                raise RolloutConflictError(
                    f"rollout of {name} changed meanwhile (generation {current.generation})",
                    field="generation",
                )
            written = state.model_copy(update={"generation": expect_generation + 1})
            self.states[name] = written
            return written

    def request_promotion(self, stored: StoredRollout, reason: str) -> str:
        """A spec file needs no approval: the canary is promoted at once."""
        return "promoted"


#: Makes ``name@version`` resident (loads it from where the versions come from) or raises.
EnsureVersion = Callable[[str, str], object]
#: Told after each look at a rollout (metrics gauges).
LookHook = Callable[[LiveRollout], None]


class RolloutController:
    """Reads rollouts, keeps their versions loaded, applies them and runs the gate."""

    def __init__(
        self,
        rollouts: Rollouts,
        manager: ModelManager,
        store: RolloutStore,
        names: Sequence[str],
        *,
        interval_s: float = 2.0,
        ensure_version: EnsureVersion | None = None,
        on_decision: Callable[[str, str], None] | None = None,
    ) -> None:
        self.rollouts = rollouts
        self.manager = manager
        self.store = store
        self.names = list(names)
        self.interval_s = interval_s
        self.ensure_version = ensure_version
        self.on_decision = on_decision
        self.on_look: LookHook | None = None
        #: Per name: why its rollout is not applied (a version that cannot be loaded ...).
        self.problems = rollouts.problems
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Tick every ``interval_s`` in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._run, name="rtserve-rollout", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        name_os_thread()
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the gate must never stop serving
                logger.exception("rollout controller tick failed; serving goes on")

    # --- one look ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Read every watched rollout once, apply it, and judge the running canaries."""
        for name, stored in self.store.read(self.names).items():
            if stored is None:
                self.rollouts.remove(name)
                continue
            if not self._resident(stored.spec, self._needed(stored)):
                continue
            live = self.rollouts.apply(stored.spec, stored.state)
            self._judge(live, stored)
            if self.on_look is not None:
                self.on_look(live)

    def _needed(self, stored: StoredRollout) -> list[str]:
        """The versions the rollout still routes or shadows to: none once it ended, only the
        canary once its promotion moved the default version (the old one is retired)."""
        spec, state = stored.spec, stored.state
        if state.ended:
            return []
        canary = spec.canary.version if spec.canary is not None else None
        if state.status == "awaiting_approval" and self.manager.default_version(spec.model) in (
            canary,
        ):
            return [v for v in spec.versions if v != spec.production]
        return spec.versions

    def _resident(self, spec: RolloutSpec, versions: list[str]) -> bool:
        """Whether every version given is loaded (loading what is not)."""
        for version in versions:
            try:
                self.manager.get(spec.model, version)
                continue
            except NotFoundError:
                pass
            try:
                if self.ensure_version is None:
                    raise RolloutConflictError(
                        f"version {version} of {spec.model} is not served here; give its bundle "
                        "to `rtserve serve` beside the others",
                        field="version",
                    )
                self.ensure_version(spec.model, version)
            except RtserveError as exc:
                if self.problems.get(spec.model) != exc.message:
                    logger.error("rollout of %s not applied: %s", spec.model, exc.message)
                self.problems[spec.model] = exc.message
                self.rollouts.remove(spec.model)
                return False
        self.problems.pop(spec.model, None)
        return True

    def _judge(self, live: LiveRollout, stored: StoredRollout) -> None:
        spec, state = stored.spec, stored.state
        if state.status == "awaiting_approval" and spec.canary is not None:
            if self.manager.default_version(spec.model) == spec.canary.version:
                self._decide(live, stored, state.model_copy(update={
                    "status": "promoted", "since": time.time(),
                    "reason": f"{spec.canary.version} is production"}), {})  # fmt: skip
            return
        if state.status != "running" or spec.canary is None:
            return
        agreement = None
        shadow = live.shadows.get(spec.canary.version)
        if shadow is not None:
            agreement = shadow.agreement(spec.gate.window_s)
        result = evaluate(spec.gate, live.figures(CANARY), live.figures(PRODUCTION), agreement)
        live.last_gate = result
        if result.verdict == "break":
            rollback = spec.on_break == "rollback"
            self._decide(live, stored, state.model_copy(update={
                "status": "rolled_back" if rollback else "paused",
                "weight": 0.0 if rollback else state.weight, "since": time.time(),
                "reason": result.describe()}), result.to_dict())  # fmt: skip
        elif result.verdict == "pass" and spec.steps and self._dwelt(spec, state):
            self._step(live, stored, result)

    def _dwelt(self, spec: RolloutSpec, state: RolloutState) -> bool:
        return time.time() - state.since >= spec.dwell_s

    def _step(self, live: LiveRollout, stored: StoredRollout, result: GateResult) -> None:
        spec, state = stored.spec, stored.state
        following = state.step + 1
        if following < len(spec.steps) and spec.steps[following] < 100:
            weight = spec.steps[following]
            self._decide(live, stored, state.model_copy(update={
                "weight": weight, "step": following, "since": time.time(),
                "reason": f"gate passed at {state.weight:g}% for {spec.dwell_s:g}s: "
                          f"{result.describe()}"}), result.to_dict())  # fmt: skip
            return
        reason = (
            f"gate passed at every step up to {state.weight:g}%: {result.describe()}; "
            f"promoting {spec.model}@{spec.canary.version if spec.canary else ''} to production"
        )
        try:
            status = self.store.request_promotion(stored, reason)
        except RtserveError as exc:
            logger.error("promotion of the %s canary refused: %s", spec.model, exc.message)
            status = "paused"
            reason = f"promotion refused: {exc.message}"
        if status == "promoted" and spec.canary is not None:
            self.manager.install(self.manager.get(spec.model, spec.canary.version))
        self._decide(live, stored, state.model_copy(update={
            "status": status, "weight": 100.0 if status != "paused" else state.weight,
            "step": following, "since": time.time(), "reason": reason}),
            result.to_dict())  # fmt: skip

    def _decide(
        self,
        live: LiveRollout,
        stored: StoredRollout,
        state: RolloutState,
        figures: dict[str, Any],
    ) -> None:
        name = stored.spec.model
        try:
            written = self.store.advance(
                name,
                state,
                expect_generation=stored.state.generation,
                reason=state.reason,
                figures=figures,
            )
        except RolloutConflictError:  # someone else decided first: read theirs next time
            logger.info("rollout of %s changed elsewhere; re-reading", name)
            return
        except RtserveError as exc:
            logger.error("rollout decision for %s not written: %s", name, exc.message)
            return
        self.rollouts.apply(stored.spec, written)
        live.decisions.append(
            {
                "at": time.time(),
                "status": written.status,
                "weight": written.weight,
                "reason": written.reason,
                "generation": written.generation,
            }
        )
        logger.warning(
            "rollout of %s: %s at %g%% (%s)", name, written.status, written.weight, written.reason
        )
        if self.on_decision is not None:
            self.on_decision(name, written.status)


class RegistryRolloutStore:
    """Rollouts stored in the model registry, shared by every worker and replica that follows
    it; decisions are written compare-and-set and audited there."""

    def __init__(self, registry: Registry, actor: str) -> None:
        self.registry = registry
        self.actor = actor

    def read(self, names: Sequence[str]) -> dict[str, StoredRollout | None]:
        """One read of every name's rollout."""
        return {
            name: None if record is None else StoredRollout(record.spec, record.state)
            for name, record in self.registry.rollouts(names).items()
        }

    def advance(
        self,
        name: str,
        state: RolloutState,
        *,
        expect_generation: int,
        reason: str,
        figures: dict[str, Any],
    ) -> RolloutState:
        """``Registry.advance_rollout``; a lost race becomes ``RolloutConflictError``."""
        try:
            record = self.registry.advance_rollout(
                name,
                state,
                actor=self.actor,
                expect_generation=expect_generation,
                reason=reason,
                figures=figures,
            )
        except RegistryConflictError as exc:
            raise RolloutConflictError(exc.message, field="generation") from exc
        return record.state

    def request_promotion(self, stored: StoredRollout, reason: str) -> str:
        """File the production promotion request in the name of whoever started the rollout
        (approvers decide, as for any promotion); one already pending is waited for."""
        spec = stored.spec
        if spec.canary is None:
            raise RolloutConflictError("only a canary is promoted", field="canary")
        record = self.registry.rollout(spec.model)
        actor = record.started_by if record is not None else self.actor
        pending = self.registry.requests(spec.model, status="pending")
        if any(r.version == spec.canary.version and r.stage == "production" for r in pending):
            return "awaiting_approval"  # filed already (by another worker or replica)
        outcome = self.registry.promote(
            spec.model, spec.canary.version, to="production", actor=actor, reason=reason
        )
        from rtserve.registry.records import Pointer

        return "promoted" if isinstance(outcome, Pointer) else "awaiting_approval"


def start_rollouts(
    settings: Settings,
    rollouts: Rollouts,
    manager: ModelManager,
    follower: RegistryFollower | None,
    *,
    on_decision: Callable[[str, str], None] | None = None,
    on_look: LookHook | None = None,
) -> RolloutController | None:
    """The controller the settings ask for, started (None when no rollout can apply).

    A spec file (``rollout.file``) governs the names it lists, whose versions must all be among
    the bundles served; with a registry, the followed names' stored rollouts apply, and a
    version they name is loaded from the registry beside the default one.
    """
    config = settings.rollout
    controller: RolloutController | None = None
    if config.file:
        store = FileRolloutStore.from_file(config.file)
        controller = RolloutController(rollouts, manager, store, list(store.specs),
                                       interval_s=config.interval_s)  # fmt: skip
    elif follower is not None and config.from_registry:
        controller = RolloutController(
            rollouts, manager, RegistryRolloutStore(follower.registry, settings.registry.actor),
            list(follower.followed), interval_s=config.interval_s,
            ensure_version=follower.load_version)  # fmt: skip
    if controller is None:
        return None
    controller.on_decision, controller.on_look = on_decision, on_look
    rollouts.start()
    controller.tick()  # applied before start-up ends, so readiness never precedes the split
    controller.start()
    return controller
