"""The audit log's hash chain: canonical JSON, entry hashes, and verification.

Each entry's ``hash`` is the sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of
its fields *including* ``prev_hash``, the hash of the entry before it (64 zeros for the first).
Editing a field changes that entry's hash; deleting or reordering rows breaks a ``prev_hash``
link or the sequence; deleting the newest rows leaves the head row (last seq and hash) pointing
past the end. A writer with full database access could rewrite the whole chain from a point on:
record the head hash that ``verify`` reports somewhere else and compare (``--expect-head``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from rtserve.registry.records import AuditEntry, ChainReport

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    """Canonical JSON text: sorted keys, compact separators, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    reason: str,
    before: Any,
    after: Any,
    prev_hash: str,
) -> str:
    """sha256 (hex) over the canonical JSON of one entry's fields and the previous hash."""
    body = {
        "seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
        "reason": reason, "before": before, "after": after, "prev_hash": prev_hash,
    }  # fmt: skip
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], head_seq: int, head_hash: str) -> ChainReport:
    """Check every link, in sequence order; the report names the first broken sequence number."""
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return _broken(count, head_seq, head_hash, expected_seq,
                           f"entry {expected_seq} is missing (the next one is {entry.seq})")  # fmt: skip
        if entry.prev_hash != expected_prev:
            return _broken(count, head_seq, head_hash, entry.seq,
                           f"entry {entry.seq} does not follow entry {entry.seq - 1} (prev_hash "
                           "differs): a row was deleted, reordered or edited")  # fmt: skip
        recomputed = entry_hash(
            seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
            subject=entry.subject, reason=entry.reason, before=entry.before, after=entry.after,
            prev_hash=entry.prev_hash,
        )  # fmt: skip
        if recomputed != entry.hash:
            return _broken(count, head_seq, head_hash, entry.seq,
                           f"entry {entry.seq} was edited (its content no longer hashes to its "
                           "recorded hash)")  # fmt: skip
        expected_prev = entry.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    if last_seq != head_seq or expected_prev != head_hash:
        return _broken(count, head_seq, head_hash, last_seq + 1,
                       f"the log ends at entry {last_seq} but its head says {head_seq}: the "
                       "newest entries were deleted, or the head was edited")  # fmt: skip
    return ChainReport(True, count, head_seq, head_hash)


def _broken(count: int, head_seq: int, head_hash: str, seq: int, problem: str) -> ChainReport:
    return ChainReport(False, count, head_seq, head_hash, first_bad_seq=seq, problem=problem)
