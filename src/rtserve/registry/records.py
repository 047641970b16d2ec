"""What the registry returns: frozen records with a JSON form (``to_dict``) for the CLI and API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rtserve.rollout.spec import RolloutSpec, RolloutState

#: Stages a version can be promoted to; ``archived`` is a version state, set by ``archive``.
STAGES = ("staging", "production")
ARCHIVED = "archived"
#: Stages whose promotion needs approval by someone other than the requester.
GATED_STAGES = frozenset({"production"})

Role = Literal["viewer", "maintainer", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "maintainer", "approver", "admin")

RequestStatus = Literal["pending", "approved", "rejected"]


@dataclass(frozen=True)
class ModelCard:
    """What a version is for and how it did at build; all fields but ``metrics`` are free text."""

    owner: str = ""
    intended_use: str = ""
    training_data: str = ""
    limitations: str = ""
    description: str = ""
    #: Figures at build, from the bundle's validation sample (and labels when given at push).
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Policy:
    """A model's promotion policy: how many approvals, and who may give them.

    ``approver_roles`` are registry roles (``admin`` always qualifies); ``approvers``, when not
    empty, restricts approval to those principals (who must still hold an approving role).
    ``require_signature`` asks that production versions be signed by one of the registry's
    trusted keys (checked when the promotion is requested).
    """

    required_approvals: int = 1
    approver_roles: tuple[str, ...] = ("approver",)
    approvers: tuple[str, ...] = ()
    require_signature: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists)."""
        return {
            "required_approvals": self.required_approvals,
            "approver_roles": list(self.approver_roles),
            "approvers": list(self.approvers),
            "require_signature": self.require_signature,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Read the stored form back."""
        return cls(
            required_approvals=int(data.get("required_approvals", 1)),
            approver_roles=tuple(data.get("approver_roles", ("approver",))),
            approvers=tuple(data.get("approvers", ())),
            require_signature=bool(data.get("require_signature", False)),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version: its bundle digest, where the artifact is, who pushed it, its card."""

    name: str
    version: str
    digest: str
    artifact: str
    size: int
    created_at: str
    pushed_by: str
    card: ModelCard
    archived_at: str | None = None
    #: Stages and aliases pointing at this version when it was read.
    pointers: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["card"] = self.card.to_dict()
        data["pointers"] = list(self.pointers)
        return data


@dataclass(frozen=True)
class Pointer:
    """Where a stage or alias points now; ``generation`` grows by one on every move."""

    name: str
    pointer: str
    kind: Literal["stage", "alias"]
    version: str | None
    generation: int
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PointerMove:
    """One entry of a pointer's history."""

    name: str
    pointer: str
    from_version: str | None
    to_version: str | None
    how: str
    generation: int
    actor: str
    at: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Approval:
    """One approver's decision on a request, with their comment and evidence."""

    approver: str
    decision: Literal["approve", "reject"]
    comment: str
    evidence: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PromotionRequest:
    """A request to move a gated stage to a version, and the decisions on it so far."""

    id: int
    name: str
    version: str
    stage: str
    requester: str
    reason: str
    status: RequestStatus
    required: int
    created_at: str
    closed_at: str | None
    closed_by: str | None
    approvals: tuple[Approval, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["approvals"] = [a.to_dict() for a in self.approvals]
        return data


@dataclass(frozen=True)
class AuditEntry:
    """One link of the audit chain."""

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    reason: str
    before: Any
    after: Any
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the audit chain."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    #: The first sequence number at which the chain breaks (None when it verifies).
    first_bad_seq: int | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSummary:
    """A model in ``list``: its versions count and where its stages point."""

    name: str
    versions: int
    latest: str | None
    stages: dict[str, str | None]
    aliases: dict[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class RolloutRecord:
    """A model name's rollout as stored: the spec, where it stands, who started and last changed it.

    ``state.generation`` is the row's generation: pass it back as ``expect_generation`` to change
    the state only if nobody else changed it meanwhile.
    """

    name: str
    spec: RolloutSpec
    state: RolloutState
    started_by: str
    started_at: str
    updated_by: str
    updated_at: str

    @property
    def generation(self) -> int:
        """Grows by one on every change of the row (a new start included)."""
        return self.state.generation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the spec and state as their JSON documents)."""
        return {
            "name": self.name,
            "spec": self.spec.model_dump(mode="json"),
            "state": self.state.model_dump(mode="json"),
            "generation": self.generation,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }
