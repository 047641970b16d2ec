"""The model registry: versions, stages and aliases, approvals, model cards, an audit chain.

The registry stores bundles; it never serves them. A server (or anyone) resolves
``NAME@STAGE`` with ``Registry.resolve``, polls ``Registry.pointer``/``pointers`` (each move
bumps a ``generation``), fetches the artifact with ``Registry.bundle_path``, and reports what it
did with ``Registry.audit_event``. Rollouts (a name's canary, A/B split and shadows, see
``rtserve.rollout``) are stored here too: ``Registry.rollouts`` to poll, ``advance_rollout`` for
the promotion gate's compare-and-set decisions. See docs/registry.md.
"""

from __future__ import annotations

from rtserve.registry.records import (
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
from rtserve.registry.registry import SERVER_EVENTS, Registry
from rtserve.registry.rollouts import ROLLOUT_ACTIONS

__all__ = [
    "ROLES",
    "ROLLOUT_ACTIONS",
    "SERVER_EVENTS",
    "STAGES",
    "Approval",
    "AuditEntry",
    "ChainReport",
    "ModelCard",
    "ModelSummary",
    "ModelVersion",
    "Pointer",
    "PointerMove",
    "Policy",
    "PromotionRequest",
    "Registry",
    "RolloutRecord",
]
