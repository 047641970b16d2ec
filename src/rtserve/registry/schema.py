"""The registry's tables (SQLAlchemy Core), as of the newest migration (each migration keeps its
own frozen copy of what it creates).

Times are stored as ISO-8601 UTC text and JSON as canonical text, so that an audit entry hashes to
the same value on SQLite and PostgreSQL and a row read back is byte-for-byte what was hashed.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: One row per model: who created it and its promotion policy (JSON, see ``Policy``).
models = sa.Table(
    "registry_models",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("policy", sa.Text, nullable=False),
)

#: Immutable versions: a name@version is bound to one bundle digest forever.
versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("name", sa.String(63), sa.ForeignKey("registry_models.name"), primary_key=True),
    sa.Column("version", sa.String(63), primary_key=True),
    sa.Column("digest", sa.String(80), nullable=False, index=True),
    sa.Column("artifact", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("pushed_by", sa.String(255), nullable=False),
    sa.Column("card", sa.Text, nullable=False),
    sa.Column("archived_at", sa.String(32), nullable=True),
)

#: Stage and alias pointers; ``generation`` grows by one on every move (cheap to poll).
pointers = sa.Table(
    "registry_pointers",
    metadata,
    sa.Column("name", sa.String(63), sa.ForeignKey("registry_models.name"), primary_key=True),
    sa.Column("pointer", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("version", sa.String(63), nullable=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
)

#: Every pointer move ever made: from, to, who, when, why, and how (promote, rollback ...).
pointer_history = sa.Table(
    "registry_pointer_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("pointer", sa.String(63), nullable=False),
    sa.Column("from_version", sa.String(63), nullable=True),
    sa.Column("to_version", sa.String(63), nullable=True),
    sa.Column("how", sa.String(16), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_registry_pointer_history_pointer", "name", "pointer", "id"),
)

#: Promotion requests to a stage that needs approval.
requests = sa.Table(
    "registry_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("version", sa.String(63), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("requester", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("required", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("closed_at", sa.String(32), nullable=True),
    sa.Column("closed_by", sa.String(255), nullable=True),
)

#: One decision per approver per request: who, when, why and what evidence they looked at.
approvals = sa.Table(
    "registry_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("registry_requests.id"), nullable=False),
    sa.Column("approver", sa.String(255), nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.UniqueConstraint("request_id", "approver", name="uq_registry_approvals_one_per_approver"),
)

#: Registry roles of principals (``key:<name>``, ``jwt:<sub>``); one row per role held.
roles = sa.Table(
    "registry_roles",
    metadata,
    sa.Column("principal", sa.String(255), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("granted_by", sa.String(255), nullable=False),
    sa.Column("granted_at", sa.String(32), nullable=False),
)

#: One rollout per model name (the newest; an ended one is replaced by the next start): the spec
#: and state as canonical JSON, and a ``generation`` that grows by one on every change, so a
#: gate writes only over the state it read (compare-and-set) and servers poll it cheaply.
rollouts = sa.Table(
    "registry_rollouts",
    metadata,
    sa.Column("name", sa.String(63), sa.ForeignKey("registry_models.name"), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("started_by", sa.String(255), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

#: The append-only audit log; each row holds the hash of the one before it.
audit = sa.Table(
    "registry_audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(160), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("before", sa.Text, nullable=False),
    sa.Column("after", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

#: One row (id 1): the chain's last sequence number and hash. Every write transaction locks it
#: first, which serializes writers on PostgreSQL, and lets ``verify`` notice a deleted tail.
audit_head = sa.Table(
    "registry_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
