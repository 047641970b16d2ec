"""The audit chain: every action is recorded, and an edited, deleted or reordered row is found."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from rtserve.errors import AuditChainError, RegistryInputError
from rtserve.registry import schema


@pytest.fixture
def busy(registry, fraud_versions):
    """A registry with a push, a promotion, an approval, a rollback and a server event."""
    registry.push(fraud_versions["1"], "key:mae", reason="first")
    registry.push(fraud_versions["2"], "key:mae")
    for version in ("1", "2"):
        request = registry.promote("fraud", version, to="production", actor="key:mae")
        registry.approve(request.id, actor="key:ann", comment="ok")
    registry.rollback("fraud", actor="key:mae", reason="latency")
    registry.audit_event("swap", actor="server:pod-1", subject="fraud@1", reason="follow",
                         before={"version": "2"}, after={"version": "1"})  # fmt: skip
    return registry


def _execute(registry, statement):
    with registry.engine.begin() as conn:
        conn.execute(statement)


def test_every_action_is_audited_with_actor_reason_and_before_after(busy):
    actions = [(e.action, e.actor, e.subject) for e in busy.audit()]
    assert ("push", "key:mae", "fraud@1") in actions
    assert ("promote-request", "key:mae", "fraud@1") in actions
    assert ("approve", "key:ann", "fraud@1") in actions
    assert ("promote", "key:ann", "fraud@production") in actions
    assert ("rollback", "key:mae", "fraud@production") in actions
    assert ("swap", "server:pod-1", "fraud@1") in actions
    rollback = next(e for e in busy.audit() if e.action == "rollback")
    assert rollback.before["version"] == "2"
    assert rollback.after["version"] == "1"
    assert rollback.reason == "latency"


def test_each_entry_carries_the_hash_of_the_previous_one(busy):
    entries = busy.audit()
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = busy.verify_audit()
    assert report.ok
    assert report.entries == len(entries)
    assert report.head_hash == entries[-1].hash


def test_an_edited_row_is_found_and_named(busy):
    _execute(busy, sa.update(schema.audit).where(schema.audit.c.seq == 5)
             .values(actor="key:someone-else"))  # fmt: skip
    report = busy.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == 5
    with pytest.raises(AuditChainError) as caught:
        busy.check_audit()
    assert caught.value.seq == 5


def test_an_edited_before_after_document_is_found(busy):
    _execute(busy, sa.update(schema.audit).where(schema.audit.c.action == "rollback")
             .values(after='{"generation":4,"version":"3"}'))  # fmt: skip
    assert not busy.verify_audit().ok


def test_a_deleted_row_is_found(busy):
    _execute(busy, sa.delete(schema.audit).where(schema.audit.c.seq == 4))
    report = busy.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == 4


def test_deleting_the_newest_rows_is_found_by_the_head(busy):
    last = busy.audit()[-1].seq
    _execute(busy, sa.delete(schema.audit).where(schema.audit.c.seq == last))
    report = busy.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == last


def test_two_rows_with_swapped_content_are_found(busy):
    entries = busy.audit()
    a, b = entries[3], entries[4]
    for seq, other in ((a.seq, b), (b.seq, a)):
        _execute(busy, sa.update(schema.audit).where(schema.audit.c.seq == seq).values(
            at=other.at, actor=other.actor, action=other.action, subject=other.subject,
            reason=other.reason, before=schema_json(other.before), after=schema_json(other.after),
            prev_hash=other.prev_hash, hash=other.hash))  # fmt: skip
    report = busy.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == a.seq


def schema_json(value):
    from rtserve.registry.chain import canonical

    return canonical(value)


def test_a_rewritten_chain_is_found_against_a_kept_head_hash(busy):
    kept = busy.verify_audit().head_hash
    busy.audit_event("load", actor="server:pod-1", subject="fraud@1")
    assert busy.verify_audit(expect_head=kept).ok is False
    assert busy.verify_audit(expect_head=busy.verify_audit().head_hash).ok


def test_only_server_events_may_be_appended_from_outside(busy):
    with pytest.raises(RegistryInputError, match="server event"):
        busy.audit_event("promote", actor="server:x", subject="fraud@1")


def test_a_failed_action_leaves_no_audit_entry(busy):
    before = len(busy.audit())
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal
        busy.promote("fraud", "9", to="staging", actor="key:mae")
    assert len(busy.audit()) == before
    assert busy.verify_audit().ok
