"""A model name's traffic policy: which versions answer, in what shares, who shadows, and the gate.

A ``RolloutSpec`` is what an operator writes (a YAML file, ``rtserve rollout start``, the
registry); a ``RolloutState`` is where the rollout stands now (running at 25%, paused, rolled
back, promoted) and changes as the promotion gate decides. Both are plain validated values: the
engine applies them, the registry stores them, nothing here serves or stores.

::

    model: fraud
    production: "3"
    canary: {version: "4", weight: 5}  # or ab: {key: header:X-User-Id, split: {"3": 50, "4": 50}}
    shadows: ["5"]
    segments: [country]
    steps: [5, 25, 50, 100]
    dwell_s: 600
    gate: {window_s: 300, min_requests: 200, max_error_rate_increase: 0.01, max_p99_ratio: 1.5}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtserve.errors import RolloutSpecError

#: At most this many versions share traffic in an A/B split (the ``variant`` label stays bounded).
MAX_ARMS = 8
#: At most this many shadow versions per name, and segment fields compared per shadow.
MAX_SHADOWS = 4
MAX_SEGMENT_FIELDS = 3
#: A request key named ``header:NAME`` is read from that request header; any other key is a
#: field of the request's (first) record.
HEADER_KEY_PREFIX = "header:"

Status = Literal["running", "paused", "awaiting_approval", "promoted", "rolled_back", "aborted"]
#: States after which the rollout no longer routes anything (the name's default version answers).
ENDED: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})


#: Most bytes a rollout spec file may have (read before it is parsed).
MAX_SPEC_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CanarySpec(_Strict):
    """A candidate version that gets ``weight`` percent of the name's unpinned requests."""

    version: str = Field(min_length=1, max_length=63)
    weight: float = Field(default=5.0, ge=0.0, le=100.0, description="percent of requests")
    #: What decides who goes to the canary: a field or ``header:NAME``; None: the request id
    #: (a client's retry with the same X-Request-ID lands on the same version).
    key: str | None = None


class ABSpec(_Strict):
    """A sticky split: the same key value always gets the same version."""

    key: str = Field(min_length=1, max_length=128)
    split: dict[str, float]

    @model_validator(mode="after")
    def _shares(self) -> ABSpec:
        if not 2 <= len(self.split) <= MAX_ARMS:
            raise ValueError(f"an A/B split names 2 to {MAX_ARMS} versions, not {len(self.split)}")
        if any(share < 0 for share in self.split.values()):
            raise ValueError("an A/B share is a percentage >= 0")
        total = sum(self.split.values())
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"the A/B shares add up to {total:g}; they must add up to 100")
        return self


class GateSpec(_Strict):
    """When a canary may take the next step, and when it is rolled back.

    Each threshold is judged over the last ``window_s`` seconds and only once both the canary
    and production have ``min_requests`` there; None turns a check off. Rates are compared with
    a one-sided two-proportion test at ``alpha``: a canary breaks the error check only when its
    error rate is significantly above production's plus ``max_error_rate_increase``, never on a
    handful of unlucky requests.
    """

    window_s: float = Field(default=300.0, gt=0.0, le=86_400.0)
    min_requests: int = Field(default=200, ge=1)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    max_error_rate_increase: float | None = Field(default=0.01, ge=0.0, le=1.0)
    max_p99_ratio: float | None = Field(default=2.0, gt=0.0)
    #: Population stability index of the canary's scores against production's.
    max_psi: float | None = Field(default=0.25, gt=0.0)
    #: Disagreement rate of a shadow of the canary version with production (needs the canary
    #: version among ``shadows`` before the canary starts).
    max_disagreement: float | None = Field(default=None, ge=0.0, le=1.0)
    #: Accuracy drop tolerated once labels arrive for answered requests. The gate takes the
    #: labelled figures (``evaluate(quality=...)``); no feedback join feeds them yet, so a gate
    #: that sets this waits (and says why) until one does.
    max_accuracy_drop: float | None = Field(default=None, ge=0.0, le=1.0)


class RolloutSpec(_Strict):
    """Which versions of ``model`` answer, in what shares, who shadows them, and the gate."""

    model: str = Field(min_length=1, max_length=63)
    production: str = Field(min_length=1, max_length=63)
    canary: CanarySpec | None = None
    ab: ABSpec | None = None
    shadows: tuple[str, ...] = ()
    #: Fields whose values split the shadow comparison (top values by count, the rest "other").
    segments: tuple[str, ...] = ()
    #: Canary weights to walk through; the gate must pass for ``dwell_s`` at each step.
    steps: tuple[float, ...] = ()
    dwell_s: float = Field(default=600.0, ge=0.0)
    gate: GateSpec = GateSpec()
    #: When a threshold breaks: roll the canary back to 0% (default) or only pause.
    on_break: Literal["rollback", "pause"] = "rollback"
    #: Shadow copies waiting beyond this are dropped (and counted), never queued without bound.
    shadow_queue: int = Field(default=1024, ge=1, le=1_000_000)
    #: Sticky hashing salt: the same spec id gives the same assignment everywhere, always.
    salt: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        if self.canary is not None and self.ab is not None:
            raise ValueError("give either canary or ab, not both (one split per name)")
        if self.canary is not None and self.canary.version == self.production:
            raise ValueError(f"canary version {self.canary.version!r} is the production version")
        if self.ab is not None and self.production not in self.ab.split:
            raise ValueError(
                f"the A/B split must include the production version {self.production!r}"
            )
        if len(self.shadows) > MAX_SHADOWS or len(set(self.shadows)) != len(self.shadows):
            raise ValueError(f"shadows: at most {MAX_SHADOWS} distinct versions")
        if self.production in self.shadows:
            raise ValueError("the production version cannot shadow itself")
        if len(self.segments) > MAX_SEGMENT_FIELDS:
            raise ValueError(f"segments: at most {MAX_SEGMENT_FIELDS} fields")
        if self.steps:
            if self.canary is None:
                raise ValueError("steps walk a canary's weight; give canary: {version, weight}")
            if any(not 0 < s <= 100 for s in self.steps) or list(self.steps) != sorted(
                set(self.steps)
            ):
                raise ValueError("steps are increasing percentages in (0, 100]")
        return self

    @property
    def versions(self) -> list[str]:
        """Every version this spec routes or shadows to, production first."""
        routed = [self.production]
        if self.canary is not None:
            routed.append(self.canary.version)
        if self.ab is not None:
            routed += [v for v in self.ab.split if v != self.production]
        return routed + [v for v in self.shadows if v not in routed]

    @property
    def start_weight(self) -> float:
        """The canary's weight when the rollout starts: the first step, else its weight."""
        if self.canary is None:
            return 0.0
        return self.steps[0] if self.steps else self.canary.weight


class RolloutState(_Strict):
    """Where a rollout stands: its status, the canary's weight now, and since when."""

    status: Status = "running"
    weight: float = Field(default=0.0, ge=0.0, le=100.0)
    step: int = 0
    since: float = Field(default_factory=time.time)
    reason: str = ""
    #: Grows by one on every change; a change is written only over the generation it read.
    generation: int = 0

    @property
    def ended(self) -> bool:
        """No longer routing: promoted, rolled back or aborted."""
        return self.status in ENDED


def parse_spec(data: Any, *, model: str | None = None) -> RolloutSpec:
    """A validated ``RolloutSpec`` from a parsed YAML/JSON mapping, or ``RolloutSpecError``
    naming the first offending key (``canary.weight``) and the rule it breaks."""
    if isinstance(data, dict) and model is not None:
        data = {"model": model, **data}
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "rollout"
        message = first["msg"].removeprefix("Value error, ")
        raise RolloutSpecError(
            f"rollout spec: {where}: {message}"
            + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""),
            field=where,
        ) from None


def initial_state(spec: RolloutSpec) -> RolloutState:
    """The state a new rollout starts in: running at its first weight."""
    return RolloutState(status="running", weight=spec.start_weight, step=0, reason="started")


def read_yaml(path: str | Path, what: str = "rollout spec") -> Any:
    """A YAML file read with its size bounded first; every error names the file."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise RolloutSpecError(
            f"{what} {source} cannot be read: {exc.strerror}", field=str(source)
        ) from None
    if len(data) > MAX_SPEC_BYTES:
        raise RolloutSpecError(
            f"{what} {source} is larger than {MAX_SPEC_BYTES} bytes", field=str(source)
        )
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise RolloutSpecError(
            f"{what} {source} is not valid YAML: {exc}".replace("\n", " "), field=str(source)
        ) from None


def read_spec_file(path: str | Path) -> list[RolloutSpec]:
    """The specs in a YAML file: one spec, or ``rollouts: [spec, ...]``, each validated, no
    model given twice (``RolloutSpecError`` names the file and the key)."""
    document = read_yaml(path)
    items = document.get("rollouts") if isinstance(document, dict) else None
    if not isinstance(items, list):
        items = [document]
    specs = []
    for item in items:
        try:
            specs.append(parse_spec(item))
        except RolloutSpecError as exc:
            raise RolloutSpecError(f"{path}: {exc.message}", field=exc.field) from None
    names = [s.model for s in specs]
    if len(set(names)) != len(names):
        raise RolloutSpecError(f"{path} gives a model twice: {sorted(names)}", field="model")
    return specs
