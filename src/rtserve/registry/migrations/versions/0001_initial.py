"""The initial registry schema: models, versions, pointers and history, requests, approvals,
roles, and the audit chain with its head row.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The chain starts from this "previous hash" (64 zeros).
GENESIS = "0" * 64


def upgrade() -> None:
    """Create every table as of revision 0001 (a frozen copy, not ``schema.metadata``)."""
    op.create_table(
        "registry_models",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
    )
    op.create_table(
        "registry_versions",
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
    op.create_table(
        "registry_pointers",
        sa.Column("name", sa.String(63), sa.ForeignKey("registry_models.name"), primary_key=True),
        sa.Column("pointer", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("version", sa.String(63), nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )
    op.create_table(
        "registry_pointer_history",
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
    )
    op.create_index(
        "ix_registry_pointer_history_pointer",
        "registry_pointer_history",
        ["name", "pointer", "id"],
    )
    op.create_table(
        "registry_requests",
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
    op.create_table(
        "registry_approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("registry_requests.id"), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.UniqueConstraint(
            "request_id", "approver", name="uq_registry_approvals_one_per_approver"
        ),
    )
    op.create_table(
        "registry_roles",
        sa.Column("principal", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("granted_by", sa.String(255), nullable=False),
        sa.Column("granted_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "registry_audit",
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
    head = op.create_table(
        "registry_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    """Drop every registry table (data is lost: export the audit log first)."""
    for table in (
        "registry_audit_head",
        "registry_audit",
        "registry_roles",
        "registry_approvals",
        "registry_requests",
        "registry_pointer_history",
        "registry_pointers",
        "registry_versions",
        "registry_models",
    ):
        op.drop_table(table)
