"""The model registry: immutable versions, stage and alias pointers, approvals, the audit chain.

Trust model: this API takes an explicit ``actor`` (a principal id such as ``key:alice`` or
``jwt:bob``) and trusts it. The CLI and the server authenticate the caller with rtserve's auth
(API keys, JWT) before they call it; a script with write access to the database is trusted as
whoever it says it is, and the audit chain records exactly that. What an actor may do is decided
here, from the registry roles stored in the database (``grant``), and each model's policy.

Every change runs in one write-locked transaction (see ``rtserve.registry.database``) that also
appends its audit entry, so a change and its audit record commit together or not at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from rtserve.bundle.bundle import Bundle
from rtserve.bundle.naming import check_name, check_version, version_order_key
from rtserve.bundle.signature import TrustedKey, check_signature
from rtserve.errors import (
    AuditChainError,
    BundleFormatError,
    RegistryConflictError,
    RegistryInputError,
    RegistryNotFoundError,
    RegistryPermissionError,
    SignatureError,
)
from rtserve.registry import schema
from rtserve.registry.card import build_card
from rtserve.registry.chain import canonical, entry_hash, verify_chain
from rtserve.registry.database import (
    create_engine,
    migrate,
    read_transaction,
    safe_url,
    write_transaction,
)
from rtserve.registry.records import (
    ARCHIVED,
    GATED_STAGES,
    ROLES,
    STAGES,
    Approval,
    AuditEntry,
    ChainReport,
    ModelCard,
    ModelSummary,
    ModelVersion,
    Pointer,
    PointerMove,
    Policy,
    PromotionRequest,
    RolloutRecord,
)
from rtserve.registry.rollouts import (
    describe,
    figures_document,
    gate_action,
    person_change,
    spec_text,
    state_document,
    state_text,
)
from rtserve.registry.rollouts import record as rollout_record
from rtserve.registry.store import ArtifactStore
from rtserve.rollout.spec import RolloutSpec, RolloutState, initial_state

#: Events a server appends with ``audit_event`` (registry actions are audited by the registry).
SERVER_EVENTS = frozenset({"load", "unload", "swap", "refused-load", "warmup-failed"})
#: Longest reason, comment or evidence text kept (characters).
MAX_TEXT = 4000
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_PRINCIPAL = re.compile(r"[a-z]+:[^\s]{1,240}")
#: Which roles satisfy a need: admin holds every role; maintainers and approvers may read.
_SATISFIES: dict[str, frozenset[str]] = {
    "viewer": frozenset(ROLES),
    "maintainer": frozenset({"maintainer", "admin"}),
    "approver": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),
}


def now() -> str:
    """The current UTC time as ISO-8601 text with microseconds (what the tables store)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Registry:
    """A registry on a database URL and an artifact store URL.

    Open with ``Registry.open(directory)`` (SQLite ``registry.db`` and ``artifacts/`` inside it)
    or ``Registry.open(url=..., store=...)``. Opening migrates the schema to the newest revision.
    """

    def __init__(
        self,
        engine: Engine,
        store: ArtifactStore,
        migrated: list[str],
        trusted_keys: Sequence[TrustedKey] = (),
    ) -> None:
        self.engine = engine
        self.store = store
        #: Alembic revisions applied when this registry was opened (empty: already current).
        self.migrated = migrated
        #: Public keys a production version must be signed by, when its policy asks for it.
        self.trusted_keys = list(trusted_keys)

    @classmethod
    def open(
        cls, directory: str | Path | None = None, *, url: str | None = None,
        store: str | None = None, trusted_keys: Sequence[TrustedKey] = (),
    ) -> Registry:  # fmt: skip
        """Open (creating and migrating if needed) a registry.

        ``directory``: a local registry, ``registry.db`` and ``artifacts/`` inside it. Or ``url``
        (``sqlite:///...`` / ``postgresql://...``) with ``store`` (a directory or fsspec URL).
        ``trusted_keys`` (``rtserve.bundle.signature.load_public_keys``) are what a model whose
        policy has ``require_signature`` must be signed by to be promoted to production.
        """
        if directory is not None:
            root = Path(directory)
            root.mkdir(parents=True, exist_ok=True)
            url = url or f"sqlite:///{root / 'registry.db'}"
            store = store or str(root / "artifacts")
        if url is None or store is None:
            raise RegistryInputError(
                "a registry needs a directory, or both a database URL and an artifact store "
                "(e.g. --registry ./registry, or --registry-url postgresql://... --store s3://...)",
                field="registry",
            )
        engine = create_engine(url)
        return cls(engine, ArtifactStore(store), migrate(engine), trusted_keys)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Registry({safe_url(str(self.engine.url))!r}, store={self.store.url!r})"

    # --- roles ---------------------------------------------------------------------------

    def init(self, actor: str) -> None:
        """Make ``actor`` the first admin; refused once the registry has one."""
        _check_principal(actor)
        with write_transaction(self.engine) as conn:
            admins = self._holders(conn, "admin")
            if admins:
                raise RegistryConflictError(
                    f"the registry is already initialised (admins: {', '.join(admins)}); ask an "
                    "admin to grant you a role with `rtserve registry grant`",
                    field="actor",
                )
            conn.execute(sa.insert(schema.roles).values(
                principal=actor, role="admin", granted_by=actor, granted_at=now()))  # fmt: skip
            self._audit(conn, actor, "init", "registry", "first admin", None,
                        {"principal": actor, "role": "admin"})  # fmt: skip

    def grant(self, actor: str, principal: str, role: str, *, reason: str = "") -> None:
        """Give ``principal`` a registry role (admin only)."""
        _check_principal(principal)
        _check_role(role)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "admin", f"granting {role!r}")
            held = self._roles_of(conn, principal)
            if role in held:
                return
            conn.execute(sa.insert(schema.roles).values(
                principal=principal, role=role, granted_by=actor, granted_at=now()))  # fmt: skip
            self._audit(conn, actor, "grant", principal, reason, sorted(held),
                        sorted({*held, role}))  # fmt: skip

    def revoke(self, actor: str, principal: str, role: str, *, reason: str = "") -> None:
        """Take a registry role from ``principal`` (admin only; the last admin stays)."""
        _check_role(role)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "admin", f"revoking {role!r}")
            held = self._roles_of(conn, principal)
            if role not in held:
                return
            if role == "admin" and self._holders(conn, "admin") == [principal]:
                raise RegistryConflictError(
                    f"{principal!r} is the last admin; grant admin to someone else first",
                    field="principal",
                )
            conn.execute(sa.delete(schema.roles).where(
                schema.roles.c.principal == principal, schema.roles.c.role == role))  # fmt: skip
            self._audit(conn, actor, "revoke", principal, reason, sorted(held),
                        sorted(held - {role}))  # fmt: skip

    def roles(self, principal: str | None = None) -> dict[str, list[str]]:
        """Registry roles by principal (of one principal when given)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(schema.roles.c.principal, schema.roles.c.role)
            if principal is not None:
                query = query.where(schema.roles.c.principal == principal)
            out: dict[str, list[str]] = {}
            for row in conn.execute(query.order_by(schema.roles.c.principal, schema.roles.c.role)):
                out.setdefault(row.principal, []).append(row.role)
            return out

    # --- versions --------------------------------------------------------------------------

    def push(
        self,
        source: str | Path | Bundle,
        actor: str,
        *,
        owner: str = "",
        intended_use: str = "",
        training_data: str = "",
        limitations: str = "",
        labels: Sequence[Any] | None = None,
        reason: str = "",
    ) -> ModelVersion:
        """Store a verified bundle as ``name@version`` (from its manifest); idempotent by digest.

        The same bundle again returns the existing version and changes nothing. Another bundle
        under an existing ``name@version`` is refused. All or nothing: on any failure neither a
        row nor a stored artifact remains.
        """
        with read_transaction(self.engine) as conn:  # fail fast, before verifying and packing
            self._require(conn, actor, "maintainer", "pushing a version")
        bundle = source if isinstance(source, Bundle) else Bundle.open(source)
        bundle.verify()
        if bundle.version in STAGES or bundle.version == ARCHIVED:
            raise RegistryInputError(
                f"version label {bundle.version!r} is a stage name; `name@{bundle.version}` would "
                "be ambiguous: rebuild with another version label",
                field="version",
            )
        existing = self._find_version(bundle.name, bundle.version)
        if existing is not None:
            return self._same_or_conflict(existing, bundle)
        card = build_card(bundle, owner=owner, intended_use=intended_use,
                          training_data=training_data, limitations=limitations,
                          labels=labels)  # fmt: skip
        incoming, size = self.store.upload(bundle)
        published = False
        try:
            with write_transaction(self.engine) as conn:
                self._require(conn, actor, "maintainer", "pushing a version")
                existing = self._version_row(conn, bundle.name, bundle.version)
                if existing is not None:  # another process pushed it meanwhile
                    self.store.discard(incoming)
                    return self._same_or_conflict(_version(existing), bundle)
                published = self.store.publish(incoming, bundle.digest)
                at = now()
                if conn.execute(sa.select(schema.models.c.name).where(
                        schema.models.c.name == bundle.name)).first() is None:  # fmt: skip
                    conn.execute(sa.insert(schema.models).values(
                        name=bundle.name, created_at=at, created_by=actor,
                        policy=canonical(Policy().to_dict())))  # fmt: skip
                row = {
                    "name": bundle.name, "version": bundle.version, "digest": bundle.digest,
                    "artifact": self.store.key(bundle.digest), "size": size, "created_at": at,
                    "pushed_by": actor, "card": canonical(card.to_dict()), "archived_at": None,
                }  # fmt: skip
                conn.execute(sa.insert(schema.versions).values(**row))
                self._audit(conn, actor, "push", f"{bundle.name}@{bundle.version}", reason, None,
                            {"digest": bundle.digest, "size": size})  # fmt: skip
        except BaseException:
            self.store.discard(incoming)
            if published:
                self.store.discard(self.store.key(bundle.digest))
            raise
        return self.version(bundle.name, bundle.version)

    def _same_or_conflict(self, existing: ModelVersion, bundle: Bundle) -> ModelVersion:
        if existing.digest == bundle.digest:
            return existing
        raise RegistryConflictError(
            f"{existing.ref} is already {existing.digest} (pushed by {existing.pushed_by} at "
            f"{existing.created_at}); this bundle is {bundle.digest}: versions are immutable, so "
            "build it under a new version label",
            field="version",
        )

    def models(self) -> list[ModelSummary]:
        """Every model with its version count, newest version, stages and aliases."""
        with read_transaction(self.engine) as conn:
            names = [r.name for r in conn.execute(
                sa.select(schema.models.c.name).order_by(schema.models.c.name))]  # fmt: skip
            out = []
            for name in names:
                labels = [r.version for r in conn.execute(sa.select(schema.versions.c.version)
                          .where(schema.versions.c.name == name))]  # fmt: skip
                labels.sort(key=version_order_key)
                ptrs = self._pointers(conn, name)
                out.append(ModelSummary(
                    name=name, versions=len(labels), latest=labels[-1] if labels else None,
                    stages={s: ptrs[s].version if s in ptrs else None for s in STAGES},
                    aliases={p.pointer: p.version for p in ptrs.values() if p.kind == "alias"},
                ))  # fmt: skip
            return out

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest label first."""
        with read_transaction(self.engine) as conn:
            self._model_row(conn, name)
            ptrs = self._pointers(conn, name)
            rows = conn.execute(sa.select(schema.versions).where(schema.versions.c.name == name))
            found = [_version(r, ptrs) for r in rows]
        return sorted(found, key=lambda v: version_order_key(v.version))

    def version(self, name: str, ref: str) -> ModelVersion:
        """The version ``ref`` names: a stage, an alias, or a version label (in that order)."""
        with read_transaction(self.engine) as conn:
            return self._resolve(conn, name, ref)

    def resolve(self, spec: str) -> ModelVersion:
        """``NAME@VERSION|@STAGE|@ALIAS`` (``NAME`` alone: production) -> the version."""
        name, _, ref = spec.partition("@")
        return self.version(name, ref or "production")

    def bundle_path(self, spec: str, cache_dir: Path | None = None) -> Path:
        """A local ``.tar.gz`` of the bundle ``spec`` resolves to (``Bundle.open`` reads it)."""
        return self.store.local_path(self.resolve(spec).digest, cache_dir)

    def pointer(self, name: str, pointer: str) -> Pointer:
        """Where a stage or alias of ``name`` points, with its generation (cheap to poll)."""
        with read_transaction(self.engine) as conn:
            self._model_row(conn, name)
            found = self._pointers(conn, name).get(pointer)
        if found is None:
            return Pointer(
                name, pointer, "stage" if pointer in STAGES else "alias", None, 0, "", ""
            )
        return found

    def pointers(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Pointer | None]:
        """Many pointers in one read: ``{(name, pointer): Pointer or None}`` (for polling)."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(schema.pointers)).all()
        found = {(r.name, r.pointer): _pointer(r) for r in rows}
        return {ref: found.get(ref) for ref in refs}

    def history(self, name: str, pointer: str | None = None) -> list[PointerMove]:
        """Every move of ``name``'s pointers (of one pointer when given), oldest first."""
        with read_transaction(self.engine) as conn:
            return self._history(conn, name, pointer)

    def show(self, spec: str) -> dict[str, Any]:
        """Everything about ``NAME[@REF]``: the version (or all), card, pointers, requests, history."""
        name, _, ref = spec.partition("@")
        with read_transaction(self.engine) as conn:
            model = self._model_row(conn, name)
            ptrs = self._pointers(conn, name)
            doc: dict[str, Any] = {"name": name, "policy": json.loads(model.policy),
                                   "pointers": {k: p.to_dict() for k, p in ptrs.items()}}  # fmt: skip
            if ref:
                found = self._resolve(conn, name, ref)
                doc["version"] = found.to_dict()
                doc["requests"] = [r.to_dict() for r in self._requests(conn, name, found.version)]
            else:
                rows = conn.execute(
                    sa.select(schema.versions).where(schema.versions.c.name == name)
                )
                versions = sorted((_version(r, ptrs) for r in rows),
                                  key=lambda v: version_order_key(v.version))  # fmt: skip
                doc["versions"] = [v.to_dict() for v in versions]
                doc["requests"] = [r.to_dict() for r in self._requests(conn, name, None)]
            doc["history"] = [m.to_dict() for m in self._history(conn, name, None)]
        return doc

    # --- policy ----------------------------------------------------------------------------

    def policy(self, name: str) -> Policy:
        """The promotion policy of ``name``."""
        with read_transaction(self.engine) as conn:
            return Policy.from_dict(json.loads(self._model_row(conn, name).policy))

    def set_policy(self, actor: str, name: str, policy: Policy, *, reason: str = "") -> Policy:
        """Replace ``name``'s promotion policy (admin only)."""
        if policy.required_approvals < 1:
            raise RegistryInputError(
                f"required_approvals {policy.required_approvals} is below 1: a production "
                "promotion always needs an approver other than its requester",
                field="required_approvals",
            )
        for role in policy.approver_roles:
            _check_role(role)
        for principal in policy.approvers:
            _check_principal(principal)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "admin", "changing a policy")
            before = json.loads(self._model_row(conn, name).policy)
            conn.execute(sa.update(schema.models).where(schema.models.c.name == name)
                         .values(policy=canonical(policy.to_dict())))  # fmt: skip
            self._audit(conn, actor, "policy", name, reason, before, policy.to_dict())
        return policy

    # --- promotion ---------------------------------------------------------------------------

    def promote(
        self, name: str, version: str, *, to: str, actor: str, reason: str = ""
    ) -> PromotionRequest | Pointer:
        """Move stage ``to`` to ``version``: at once for ``staging``; for ``production`` a pending
        request that approvers decide on (returned; the pointer moves when it is approved)."""
        if to == ARCHIVED:
            raise RegistryInputError(
                f"use `archive {name} {version}` to archive a version, not promote --to archived",
                field="stage",
            )
        _check_stage(to)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", f"promoting to {to}")
            row = self._live_version(conn, name, version)
            if to not in GATED_STAGES:
                return self._move(conn, name, to, row.version, actor, reason, how="promote")
            policy = Policy.from_dict(json.loads(self._model_row(conn, name).policy))
            if policy.require_signature:
                self._require_signed(name, version, row.digest)
            pending = conn.execute(sa.select(schema.requests.c.id).where(
                schema.requests.c.name == name, schema.requests.c.version == version,
                schema.requests.c.stage == to, schema.requests.c.status == "pending")).first()  # fmt: skip
            if pending is not None:
                raise RegistryConflictError(
                    f"request {pending.id} to promote {name}@{version} to {to} is already "
                    f"pending; approve or reject it (`rtserve registry show {name}@{version}`)",
                    field="version",
                )
            at = now()
            request_id = conn.execute(sa.insert(schema.requests).values(
                name=name, version=version, stage=to, requester=actor, reason=_text(reason),
                status="pending", required=policy.required_approvals, created_at=at,
            ).returning(schema.requests.c.id)).scalar_one()  # fmt: skip
            self._audit(conn, actor, "promote-request", f"{name}@{version}", reason, None,
                        {"request": request_id, "stage": to,
                         "required": policy.required_approvals})  # fmt: skip
            return self._request(conn, request_id)

    def approve(
        self, request_id: int, *, actor: str, comment: str, evidence: str = ""
    ) -> PromotionRequest:
        """Approve a pending request; the stage moves when the policy's count is reached."""
        return self._decide(request_id, actor, "approve", comment, evidence)

    def reject(
        self, request_id: int, *, actor: str, comment: str, evidence: str = ""
    ) -> PromotionRequest:
        """Reject (close) a pending request; the stage does not move."""
        return self._decide(request_id, actor, "reject", comment, evidence)

    def request(self, request_id: int) -> PromotionRequest:
        """One promotion request with its decisions."""
        with read_transaction(self.engine) as conn:
            return self._request(conn, request_id)

    def requests(
        self, name: str | None = None, *, status: str | None = None
    ) -> list[PromotionRequest]:
        """Promotion requests (of one model, of one status), oldest first."""
        with read_transaction(self.engine) as conn:
            query = sa.select(schema.requests.c.id).order_by(schema.requests.c.id)
            if name is not None:
                query = query.where(schema.requests.c.name == name)
            if status is not None:
                query = query.where(schema.requests.c.status == status)
            return [self._request(conn, r.id) for r in conn.execute(query)]

    def _decide(
        self, request_id: int, actor: str, decision: str, comment: str, evidence: str
    ) -> PromotionRequest:
        if not comment.strip():
            raise RegistryInputError(
                f"{decision} needs a comment saying why (e.g. --comment 'AUC +0.02 on the "
                "holdout, compare report attached'); it is kept with the approval",
                field="comment",
            )
        with write_transaction(self.engine) as conn:
            req = self._request(conn, request_id)
            policy = Policy.from_dict(json.loads(self._model_row(conn, req.name).policy))
            self._require_approver(conn, actor, req, policy, decision)
            if req.status != "pending":
                raise RegistryConflictError(
                    f"request {request_id} is already {req.status} (by {req.closed_by} at "
                    f"{req.closed_at}); open a new one with `promote`",
                    field="request",
                )
            if any(a.approver == actor for a in req.approvals):
                raise RegistryConflictError(
                    f"{actor!r} already decided on request {request_id}; each approver counts once",
                    field="actor",
                )
            at = now()
            conn.execute(sa.insert(schema.approvals).values(
                request_id=request_id, approver=actor, decision=decision,
                comment=_text(comment), evidence=_text(evidence), at=at))  # fmt: skip
            subject = f"{req.name}@{req.version}"
            self._audit(conn, actor, decision, subject, comment,
                        {"request": request_id, "status": req.status},
                        {"request": request_id, "evidence": evidence})  # fmt: skip
            approvals = sum(a.decision == "approve" for a in req.approvals) + (
                decision == "approve"
            )
            if decision == "reject":
                self._close(conn, request_id, "rejected", actor, at)
            elif approvals >= req.required:
                self._live_version(conn, req.name, req.version)
                self._close(conn, request_id, "approved", actor, at)
                self._move(conn, req.name, req.stage, req.version, actor,
                           f"request {request_id}: {req.reason}".rstrip(": "), how="promote")  # fmt: skip
            return self._request(conn, request_id)

    def _require_approver(
        self, conn: Connection, actor: str, req: PromotionRequest, policy: Policy, decision: str
    ) -> None:
        held = self._roles_of(conn, actor)
        allowed_roles = {*policy.approver_roles, "admin"}
        if not held & allowed_roles:
            raise RegistryPermissionError(
                f"{decision} on {req.name} needs one of the roles {sorted(allowed_roles)}; "
                f"{actor!r} holds: {', '.join(sorted(held)) or 'none'} (an admin grants roles)",
                field="actor",
            )
        if actor == req.requester:
            raise RegistryPermissionError(
                f"{actor!r} requested this promotion (request {req.id}) and cannot {decision} "
                "it: separation of duties needs another approver",
                field="actor",
            )
        if policy.approvers and actor not in policy.approvers:
            raise RegistryPermissionError(
                f"{req.name}'s policy names its approvers ({', '.join(policy.approvers)}); "
                f"{actor!r} is not one of them",
                field="actor",
            )

    def _close(self, conn: Connection, request_id: int, status: str, actor: str, at: str) -> None:
        conn.execute(sa.update(schema.requests).where(schema.requests.c.id == request_id)
                     .values(status=status, closed_at=at, closed_by=actor))  # fmt: skip

    def rollback(
        self, name: str, *, stage: str = "production", actor: str, reason: str = ""
    ) -> Pointer:
        """Move ``stage`` back to the version it held before the current one.

        Promotions push onto a pointer's stack and rollbacks pop it, so rolling back twice after
        v1 -> v2 -> v3 serves v1, not v3 again. No approval: the target already held the stage.
        """
        _check_stage(stage)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", f"rolling back {stage}")
            self._model_row(conn, name)
            stack = _stack(self._history(conn, name, stage))
            if len(stack) < 2:
                raise RegistryConflictError(
                    f"{name}@{stage} has no earlier version to roll back to (its history: "
                    f"{', '.join(v or '-' for v in stack) or 'empty'})",
                    field="stage",
                )
            target = stack[-2]
            if target is None:
                raise RegistryConflictError(
                    f"the version {name}@{stage} held before was archived; promote a version "
                    f"with `rtserve registry promote {name} VERSION --to {stage}`",
                    field="stage",
                )
            self._live_version(conn, name, target)
            return self._move(conn, name, stage, target, actor, reason, how="rollback")

    def archive(self, name: str, version: str, *, actor: str, reason: str = "") -> ModelVersion:
        """Archive a version: it can no longer be promoted, and staging/aliases leave it.

        Refused while production points at it (promote or roll back first) and while a rollout
        that has not ended routes or shadows to it.
        """
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", "archiving a version")
            row = self._live_version(conn, name, version)
            live = self._rollout_row(conn, name)
            rollout = None if live is None else rollout_record(live)
            if rollout is not None and not rollout.state.ended and version in rollout.spec.versions:
                raise RegistryConflictError(
                    f"{name}@{version} is in the rollout of {describe(rollout)}; abort it "
                    f"(`rtserve rollout abort {name}`) or let it end before archiving",
                    field="version",
                )
            for ptr in self._pointers(conn, name).values():
                if ptr.version != version:
                    continue
                if ptr.pointer in GATED_STAGES:
                    raise RegistryConflictError(
                        f"{name}@{version} is {ptr.pointer}; promote another version or "
                        f"`rollback {name}` before archiving it",
                        field="version",
                    )
                self._move(conn, name, ptr.pointer, None, actor, reason or "archived",
                           how="archive")  # fmt: skip
            at = now()
            conn.execute(sa.update(schema.versions).where(
                schema.versions.c.name == name, schema.versions.c.version == version,
            ).values(archived_at=at))  # fmt: skip
            for pending in conn.execute(sa.select(schema.requests.c.id).where(
                    schema.requests.c.name == name, schema.requests.c.version == version,
                    schema.requests.c.status == "pending")).all():  # fmt: skip
                self._close(conn, pending.id, "rejected", actor, at)
            self._audit(conn, actor, "archive", f"{name}@{version}", reason,
                        {"archived_at": None}, {"archived_at": at})  # fmt: skip
            del row
        return self.version(name, version)

    def set_alias(
        self, name: str, alias: str, version: str, *, actor: str, reason: str = ""
    ) -> Pointer:
        """Point a free alias (``champion``, ``challenger`` ...) at ``version``."""
        _check_alias(alias)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", "setting an alias")
            self._live_version(conn, name, version)
            if self._version_row(conn, name, alias) is not None:
                raise RegistryInputError(
                    f"alias {alias!r} is also a version label of {name}; `{name}@{alias}` would "
                    "be ambiguous: choose another alias",
                    field="alias",
                )
            return self._move(conn, name, alias, version, actor, reason, how="alias", kind="alias")

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "") -> Pointer:
        """Clear an alias (it stays in the history)."""
        _check_alias(alias)
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", "removing an alias")
            if alias not in self._pointers(conn, name):
                raise RegistryNotFoundError(f"{name} has no alias {alias!r}", field="alias")
            return self._move(conn, name, alias, None, actor, reason, how="alias", kind="alias")

    # --- rollouts ------------------------------------------------------------------------------

    def rollout(self, name: str) -> RolloutRecord | None:
        """``name``'s rollout (the newest, ended or not), or None when it never had one."""
        with read_transaction(self.engine) as conn:
            self._model_row(conn, name)
            row = self._rollout_row(conn, name)
        return None if row is None else rollout_record(row)

    def rollouts(self, names: Sequence[str]) -> dict[str, RolloutRecord | None]:
        """Many names' rollouts in one read, for a server polling every few seconds (compare
        ``generation``); a name without a rollout, or unknown to the registry, maps to None."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(schema.rollouts).where(schema.rollouts.c.name.in_(wanted))
            ).all()
        found = {r.name: rollout_record(r) for r in rows}
        return {name: found.get(name) for name in wanted}

    def start_rollout(self, spec: RolloutSpec, *, actor: str, reason: str = "") -> RolloutRecord:
        """Start ``spec`` for its model: running at its first weight (``initial_state``).

        Needs ``maintainer``. Every version the spec routes or shadows must be in the registry
        and not archived, and ``spec.production`` must be where the ``production`` stage points
        (when it is set). Refused while the name's rollout has not ended; an ended one is
        replaced, its decisions kept in the audit log. The generation is 1 for a name's first
        rollout and keeps growing across later ones, so a gate's write based on a replaced
        rollout can never land on the new one.
        """
        text = spec_text(spec)
        name = spec.model
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", "starting a rollout")
            self._model_row(conn, name)
            for version in spec.versions:
                self._rollout_version(conn, name, version)
            production = self._pointers(conn, name).get("production")
            if production is not None and production.version not in (None, spec.production):
                raise RegistryConflictError(
                    f"the rollout's production version is {spec.production!r}, but "
                    f"{name}@production is {production.version!r}: set production: "
                    f'"{production.version}" in the spec (`rtserve rollout start` without '
                    f"--production takes the stage's), or promote {name}@{spec.production} to "
                    "production first",
                    field="production",
                )
            row = self._rollout_row(conn, name)
            previous = None if row is None else rollout_record(row)
            if previous is not None and not previous.state.ended:
                raise RegistryConflictError(
                    f"{name} already has a rollout that has not ended: {describe(previous)}; "
                    f"abort it first with `rtserve rollout abort {name}`",
                    field="name",
                )
            generation = 1 if previous is None else previous.generation + 1
            state = initial_state(spec).model_copy(update={"generation": generation})
            at = now()
            values = {"spec": text, "state": state_text(state), "generation": generation,
                      "started_by": actor, "started_at": at, "updated_by": actor,
                      "updated_at": at}  # fmt: skip
            if previous is None:
                conn.execute(sa.insert(schema.rollouts).values(name=name, **values))
            else:
                conn.execute(sa.update(schema.rollouts).where(schema.rollouts.c.name == name)
                             .values(**values))  # fmt: skip
            before = None if previous is None else {
                "spec": json.loads(row.spec), "state": state_document(previous.state)}  # fmt: skip
            self._audit(conn, actor, "rollout-start", name, reason, before,
                        {"spec": json.loads(text), "state": state_document(state)})  # fmt: skip
        return RolloutRecord(name, spec, state, actor, at, actor, at)

    def advance_rollout(
        self, name: str, state: RolloutState, *, actor: str, expect_generation: int,
        reason: str = "", figures: dict[str, Any] | None = None,
    ) -> RolloutRecord:  # fmt: skip
        """Write the promotion gate's decision: ``state`` at generation ``expect_generation + 1``,
        only if the stored generation is still ``expect_generation`` (compare-and-set).

        No role check: like ``audit_event``, the server is trusted by running on the registry.
        ``RegistryConflictError`` when another worker or replica changed the rollout first (read
        it again and decide again) or when it has ended. The audit entry (``rollout-step``,
        ``-rollback``, ``-pause``, ``-await-approval``, ``-promoted``, by the new status) keeps
        the new state and ``figures``, the gate's numbers behind the decision, as given.
        """
        _check_principal(actor)
        document = figures_document({} if figures is None else figures)
        with write_transaction(self.engine) as conn:
            current = self._current_rollout(conn, name)
            if current.generation != expect_generation:
                raise RegistryConflictError(
                    f"the rollout of {name} is at generation {current.generation}, not "
                    f"{expect_generation}: {current.updated_by} changed it at "
                    f"{current.updated_at}; read it again and decide on what it is now",
                    field="generation",
                )
            action = gate_action(current, state)
            new = state.model_copy(update={"generation": expect_generation + 1})
            at = self._write_rollout(conn, name, new, actor, expect_generation)
            self._audit(conn, actor, action, name, reason,
                        {"state": state_document(current.state)},
                        {"state": state_document(new), "figures": document})  # fmt: skip
        return replace(current, state=new, updated_by=actor, updated_at=at)

    def set_rollout_status(
        self, name: str, status: str, *, actor: str, reason: str = ""
    ) -> RolloutRecord:
        """A person's ``pause`` (running -> paused), ``resume`` (paused -> running, the dwell
        starts again) or ``abort`` (any rollout not ended -> aborted, canary weight 0).

        Needs ``maintainer``; an impossible change is a ``RegistryConflictError`` naming the
        current status. A gate deciding meanwhile finds the generation moved and re-reads.
        """
        with write_transaction(self.engine) as conn:
            self._require(conn, actor, "maintainer", f"changing a rollout ({status})")
            current = self._current_rollout(conn, name)
            action, new = person_change(current, status, actor=actor, reason=reason)
            new = new.model_copy(update={"generation": current.generation + 1})
            at = self._write_rollout(conn, name, new, actor, current.generation)
            self._audit(conn, actor, action, name, reason,
                        {"state": state_document(current.state)},
                        {"state": state_document(new)})  # fmt: skip
        return replace(current, state=new, updated_by=actor, updated_at=at)

    def _rollout_row(self, conn: Connection, name: str) -> Any:
        return conn.execute(
            sa.select(schema.rollouts).where(schema.rollouts.c.name == name)
        ).first()

    def _current_rollout(self, conn: Connection, name: str) -> RolloutRecord:
        self._model_row(conn, name)
        row = self._rollout_row(conn, name)
        if row is None:
            raise RegistryNotFoundError(
                f"{name} has no rollout; start one with `rtserve rollout start {name} --canary "
                "VERSION` (or --spec FILE.yaml)",
                field="name",
            )
        return rollout_record(row)

    def _write_rollout(
        self, conn: Connection, name: str, state: RolloutState, actor: str, expect: int
    ) -> str:
        """Store ``state`` over generation ``expect``; returns the time written."""
        at = now()
        written = conn.execute(sa.update(schema.rollouts).where(
            schema.rollouts.c.name == name, schema.rollouts.c.generation == expect,
        ).values(state=state_text(state), generation=state.generation, updated_by=actor,
                 updated_at=at))  # fmt: skip
        if written.rowcount != 1:  # the write lock makes this unreachable; kept as the guard
            raise RegistryConflictError(
                f"the rollout of {name} changed while this write was being made; read it again",
                field="generation",
            )
        return at

    def _rollout_version(self, conn: Connection, name: str, version: str) -> None:
        row = self._version_row(conn, name, version)
        if row is None:
            raise RegistryNotFoundError(
                f"the rollout names {name}@{version}, which is not in the registry; push it "
                f"first (`rtserve registry push BUNDLE`); `rtserve registry show {name}` lists "
                "the versions",
                field="version",
            )
        if row.archived_at is not None:
            raise RegistryConflictError(
                f"{name}@{version} was archived at {row.archived_at}; a rollout cannot route or "
                "shadow requests to an archived version: push a new version",
                field="version",
            )

    # --- audit -------------------------------------------------------------------------------

    def audit_event(
        self, action: str, *, actor: str, subject: str, reason: str = "",
        before: Any = None, after: Any = None,
    ) -> AuditEntry:  # fmt: skip
        """Append a server event (``load``, ``unload``, ``swap``, ``refused-load``,
        ``warmup-failed``) to the audit chain; ``subject`` is ``name@version``."""
        if action not in SERVER_EVENTS:
            raise RegistryInputError(
                f"audit event {action!r} is not a server event; use one of "
                f"{', '.join(sorted(SERVER_EVENTS))} (registry actions audit themselves)",
                field="action",
            )
        with write_transaction(self.engine) as conn:
            return self._audit(conn, actor, action, subject, reason, before, after)

    def audit(
        self, *, subject: str | None = None, since_seq: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        """Audit entries in sequence order (those whose subject starts with ``subject``)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(schema.audit).where(schema.audit.c.seq > since_seq)
            if subject is not None:
                query = query.where(sa.or_(schema.audit.c.subject == subject,
                                           schema.audit.c.subject.startswith(f"{subject}@")))  # fmt: skip
            query = query.order_by(schema.audit.c.seq)
            if limit is not None:
                query = query.limit(limit)
            return [_entry(r) for r in conn.execute(query)]

    def verify_audit(self, *, expect_head: str | None = None) -> ChainReport:
        """Check the whole chain; with ``expect_head`` also that its head is that hash."""
        with read_transaction(self.engine) as conn:
            head = conn.execute(
                sa.select(schema.audit_head).where(schema.audit_head.c.id == 1)
            ).one()
            rows = conn.execute(sa.select(schema.audit).order_by(schema.audit.c.seq))
            report = verify_chain(_entries(rows), head.seq, head.hash)
        if report.ok and expect_head is not None and expect_head != report.head_hash:
            return ChainReport(False, report.entries, report.head_seq, report.head_hash,
                               first_bad_seq=None, problem=f"the head hash is {report.head_hash}, "
                               f"not the expected {expect_head}: the log was rewritten or "
                               "truncated since that hash was recorded")  # fmt: skip
        return report

    def check_audit(self, *, expect_head: str | None = None) -> ChainReport:
        """``verify_audit``, raising ``AuditChainError`` when the chain is broken."""
        report = self.verify_audit(expect_head=expect_head)
        if not report.ok:
            raise AuditChainError(f"audit chain broken: {report.problem}", seq=report.first_bad_seq)
        return report

    # --- internals ---------------------------------------------------------------------------

    def _audit(
        self, conn: Connection, actor: str, action: str, subject: str, reason: str,
        before: Any, after: Any,
    ) -> AuditEntry:  # fmt: skip
        head = conn.execute(sa.select(schema.audit_head).where(schema.audit_head.c.id == 1)).one()
        seq = head.seq + 1
        fields: dict[str, Any] = {
            "seq": seq, "at": now(), "actor": actor, "action": action, "subject": subject,
            "reason": _text(reason), "before": json.loads(canonical(before)),
            "after": json.loads(canonical(after)), "prev_hash": head.hash,
        }  # fmt: skip
        digest = entry_hash(**fields)
        conn.execute(sa.insert(schema.audit).values(
            **{**fields, "before": canonical(fields["before"]), "after": canonical(fields["after"])},
            hash=digest))  # fmt: skip
        conn.execute(sa.update(schema.audit_head).where(schema.audit_head.c.id == 1)
                     .values(seq=seq, hash=digest))  # fmt: skip
        return AuditEntry(**fields, hash=digest)

    def _move(
        self, conn: Connection, name: str, pointer: str, version: str | None, actor: str,
        reason: str, *, how: str, kind: str = "stage",
    ) -> Pointer:  # fmt: skip
        current = self._pointers(conn, name).get(pointer)
        before = current.version if current else None
        generation = (current.generation if current else 0) + 1
        at = now()
        values = {"kind": kind, "version": version, "generation": generation,
                  "updated_at": at, "updated_by": actor}  # fmt: skip
        if current is None:
            conn.execute(sa.insert(schema.pointers).values(name=name, pointer=pointer, **values))
        else:
            conn.execute(sa.update(schema.pointers).where(
                schema.pointers.c.name == name, schema.pointers.c.pointer == pointer,
            ).values(**values))  # fmt: skip
        conn.execute(sa.insert(schema.pointer_history).values(
            name=name, pointer=pointer, from_version=before, to_version=version, how=how,
            generation=generation, actor=actor, at=at, reason=_text(reason)))  # fmt: skip
        self._audit(conn, actor, how, f"{name}@{pointer}", reason,
                    {"version": before, "generation": generation - 1},
                    {"version": version, "generation": generation})  # fmt: skip
        return Pointer(name, pointer, "alias" if kind == "alias" else "stage", version,
                       generation, at, actor)  # fmt: skip

    def _require_signed(self, name: str, version: str, digest: str) -> None:
        """Refuse a production request for a bundle not signed by one of ``trusted_keys``."""
        if not self.trusted_keys:
            raise RegistryConflictError(
                f"{name}'s policy requires production versions to be signed, but this registry "
                "was opened without trusted keys: pass --trusted-key PUB.pem "
                "(Registry.open(..., trusted_keys=load_public_keys([...])))",
                field="trusted_keys",
            )
        bundle = Bundle.open(self.store.local_path(digest))
        try:
            check_signature(bundle, self.trusted_keys, require=True)
        except SignatureError as exc:
            raise RegistryConflictError(
                f"{name}@{version} cannot be promoted to production: {exc.message} "
                "(its policy requires a signature; sign it with `rtserve sign` and push it as a "
                "new version)",
                field="signature",
            ) from exc

    def _require(self, conn: Connection, actor: str, role: str, what: str) -> None:
        _check_principal(actor)
        held = self._roles_of(conn, actor)
        if held & _SATISFIES[role]:
            return
        if not self._holders(conn, "admin"):
            hint = "the registry has no admin yet: run `rtserve registry init` first"
        else:
            hint = f"ask an admin for it (`rtserve registry grant {actor} {role}`)"
        raise RegistryPermissionError(
            f"{what} needs the registry role {role!r}; {actor!r} holds: "
            f"{', '.join(sorted(held)) or 'none'}; {hint}",
            field="actor",
        )

    def _roles_of(self, conn: Connection, principal: str) -> set[str]:
        return {r.role for r in conn.execute(sa.select(schema.roles.c.role).where(
            schema.roles.c.principal == principal))}  # fmt: skip

    def _holders(self, conn: Connection, role: str) -> list[str]:
        return sorted(r.principal for r in conn.execute(sa.select(schema.roles.c.principal)
                      .where(schema.roles.c.role == role)))  # fmt: skip

    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(sa.select(schema.models).where(schema.models.c.name == name)).first()
        if row is None:
            raise RegistryNotFoundError(
                f"model {name!r} is not in the registry; `rtserve registry list` shows the "
                "models, `rtserve registry push BUNDLE` adds one",
                field="name",
            )
        return row

    def _find_version(self, name: str, version: str) -> ModelVersion | None:
        with read_transaction(self.engine) as conn:
            row = self._version_row(conn, name, version)
            return None if row is None else _version(row)

    def _version_row(self, conn: Connection, name: str, version: str) -> Any:
        return conn.execute(sa.select(schema.versions).where(
            schema.versions.c.name == name, schema.versions.c.version == version)).first()  # fmt: skip

    def _live_version(self, conn: Connection, name: str, version: str) -> Any:
        self._model_row(conn, name)
        row = self._version_row(conn, name, version)
        if row is None:
            raise RegistryNotFoundError(
                f"{name}@{version} is not in the registry; `rtserve registry show {name}` lists "
                "its versions",
                field="version",
            )
        if row.archived_at is not None:
            raise RegistryConflictError(
                f"{name}@{version} was archived at {row.archived_at}; archived versions cannot "
                "be promoted or aliased: push a new version",
                field="version",
            )
        return row

    def _resolve(self, conn: Connection, name: str, ref: str) -> ModelVersion:
        self._model_row(conn, name)
        ptrs = self._pointers(conn, name)
        label = ref
        if ref in ptrs:
            if ptrs[ref].version is None:
                raise RegistryNotFoundError(
                    f"{name}@{ref} points at no version (cleared by {ptrs[ref].updated_by} at "
                    f"{ptrs[ref].updated_at})",
                    field="version",
                )
            label = ptrs[ref].version or ""
        elif ref in STAGES:
            raise RegistryNotFoundError(
                f"no version of {name} is in {ref} yet; promote one with "
                f"`rtserve registry promote {name} VERSION --to {ref}`",
                field="version",
            )
        row = self._version_row(conn, name, label)
        if row is None:
            raise RegistryNotFoundError(
                f"{name}@{ref} is neither a version, a stage nor an alias of {name}; "
                f"`rtserve registry show {name}` lists them",
                field="version",
            )
        return _version(row, ptrs)

    def _pointers(self, conn: Connection, name: str) -> dict[str, Pointer]:
        rows = conn.execute(sa.select(schema.pointers).where(schema.pointers.c.name == name))
        return {r.pointer: _pointer(r) for r in rows}

    def _history(self, conn: Connection, name: str, pointer: str | None) -> list[PointerMove]:
        query = sa.select(schema.pointer_history).where(schema.pointer_history.c.name == name)
        if pointer is not None:
            query = query.where(schema.pointer_history.c.pointer == pointer)
        return [
            PointerMove(
                r.name,
                r.pointer,
                r.from_version,
                r.to_version,
                r.how,
                r.generation,
                r.actor,
                r.at,
                r.reason,
            )
            for r in conn.execute(query.order_by(schema.pointer_history.c.id))
        ]

    def _requests(self, conn: Connection, name: str, version: str | None) -> list[PromotionRequest]:
        query = sa.select(schema.requests.c.id).where(schema.requests.c.name == name)
        if version is not None:
            query = query.where(schema.requests.c.version == version)
        return [
            self._request(conn, r.id) for r in conn.execute(query.order_by(schema.requests.c.id))
        ]

    def _request(self, conn: Connection, request_id: int) -> PromotionRequest:
        row = conn.execute(
            sa.select(schema.requests).where(schema.requests.c.id == request_id)
        ).first()
        if row is None:
            raise RegistryNotFoundError(
                f"promotion request {request_id} does not exist; `rtserve registry show NAME` "
                "lists a model's requests",
                field="request",
            )
        decisions = tuple(
            Approval(a.approver, a.decision, a.comment, a.evidence, a.at)
            for a in conn.execute(sa.select(schema.approvals).where(
                schema.approvals.c.request_id == request_id).order_by(schema.approvals.c.id))
        )  # fmt: skip
        return PromotionRequest(
            id=row.id, name=row.name, version=row.version, stage=row.stage,
            requester=row.requester, reason=row.reason, status=row.status,
            required=row.required, created_at=row.created_at, closed_at=row.closed_at,
            closed_by=row.closed_by, approvals=decisions,
        )  # fmt: skip


def _stack(moves: Sequence[PointerMove]) -> list[str | None]:
    """Replay a stage's history: promotions push, rollbacks pop; the top is the current version."""
    stack: list[str | None] = []
    for move in moves:
        if move.how == "rollback" and len(stack) >= 2:
            stack.pop()
        elif move.how == "archive":
            stack = [v for v in stack if v != move.from_version]
            stack.append(None)
        else:
            stack.append(move.to_version)
    return stack


def _version(row: Any, ptrs: dict[str, Pointer] | None = None) -> ModelVersion:
    names = tuple(sorted(p.pointer for p in (ptrs or {}).values() if p.version == row.version))
    return ModelVersion(
        name=row.name, version=row.version, digest=row.digest, artifact=row.artifact,
        size=row.size, created_at=row.created_at, pushed_by=row.pushed_by,
        card=ModelCard(**json.loads(row.card)), archived_at=row.archived_at, pointers=names,
    )  # fmt: skip


def _pointer(row: Any) -> Pointer:
    return Pointer(row.name, row.pointer, row.kind, row.version, row.generation,
                   row.updated_at, row.updated_by)  # fmt: skip


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, at=row.at, actor=row.actor, action=row.action, subject=row.subject,
        reason=row.reason, before=json.loads(row.before), after=json.loads(row.after),
        prev_hash=row.prev_hash, hash=row.hash,
    )  # fmt: skip


def _entries(rows: Any) -> Iterator[AuditEntry]:
    for row in rows:
        try:
            yield _entry(row)
        except (json.JSONDecodeError, TypeError):  # an edit that broke the JSON: hash fails
            yield AuditEntry(row.seq, row.at, row.actor, row.action, row.subject, row.reason,
                             row.before, row.after, row.prev_hash, "")  # fmt: skip


def _text(value: str) -> str:
    return value.strip()[:MAX_TEXT]


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise RegistryInputError(
            f"stage {stage!r} is not one of {', '.join(STAGES)} (archive a version with "
            "`archive`; free names are aliases: `alias set`)",
            field="stage",
        )


def _check_alias(alias: str) -> None:
    if alias in STAGES or alias == ARCHIVED or not _ALIAS.fullmatch(alias):
        raise RegistryInputError(
            f"alias {alias!r} is invalid: use 1-63 lowercase letters, digits, '_' or '-', "
            f"starting with a letter, and not a stage name ({', '.join((*STAGES, ARCHIVED))})",
            field="alias",
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise RegistryInputError(
            f"role {role!r} is not a registry role; use one of {', '.join(ROLES)}", field="role"
        )


def _check_principal(principal: str) -> None:
    if not isinstance(principal, str) or not _PRINCIPAL.fullmatch(principal):
        raise RegistryInputError(
            f"principal {principal!r} is invalid: use KIND:ID as the server names callers, "
            "e.g. 'key:alice' (an API key's name) or 'jwt:bob' (a token's sub)",
            field="actor",
        )


def check_spec(spec: str) -> tuple[str, str]:
    """Split ``NAME[@REF]`` and check the name (the ref is checked when resolved)."""
    name, _, ref = spec.partition("@")
    try:
        check_name(name)
        if ref:
            check_version(ref)
    except BundleFormatError as exc:
        raise RegistryInputError(exc.message, field=exc.field) from None
    return name, ref
