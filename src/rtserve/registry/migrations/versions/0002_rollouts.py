"""Rollouts: one row per model name with its traffic policy (spec), where it stands (state) and a
generation for compare-and-set writes by the promotion gate.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``registry_rollouts`` as of revision 0002 (a frozen copy, not ``schema.metadata``)."""
    op.create_table(
        "registry_rollouts",
        sa.Column("name", sa.String(63), sa.ForeignKey("registry_models.name"), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    """Drop the rollouts (their decisions stay in the audit log)."""
    op.drop_table("registry_rollouts")
