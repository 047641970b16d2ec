"""The one redaction step: values of fields flagged ``pii`` leave the process only as keyed hashes.

A keyed hash (HMAC-SHA256) lets an operator who holds the key check whether a log line or a
decision concerns a known value, while nobody without the key can recover or brute-force it. The
key comes from ``RTSERVE_REDACTION_KEY`` (set it, identical on every worker and restart, for hashes
that stay comparable); without it each process draws a random key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Collection, Iterable, Mapping, MutableMapping
from functools import cache
from typing import Any, Literal

import msgspec

from rtserve.errors import InputError, ValidationError

KEY_ENV = "RTSERVE_REDACTION_KEY"
#: What replaces a dropped value.
DROPPED = "[redacted]"
RedactionMode = Literal["hash", "drop"]


class Redactor:
    """Replaces values of PII fields by ``hmac:<hex>`` (mode ``hash``) or drops them (``drop``).

    Args:
        key: the HMAC key; a random one when None (hashes then differ per process).
        mode: ``hash`` keeps a keyed hash, ``drop`` keeps nothing.
    """

    def __init__(self, key: bytes | None = None, mode: RedactionMode = "hash") -> None:
        self.random_key = key is None
        self._key = key if key is not None else secrets.token_bytes(32)
        self.mode: RedactionMode = mode
        #: PII field names of every served schema (the log processor redacts these keys).
        self.pii_fields: set[str] = set()

    @property
    def key(self) -> bytes:
        """The HMAC key (the decision-log writer process gets it, to hash as this process does)."""
        return self._key

    @classmethod
    def from_env(cls, mode: RedactionMode = "hash") -> Redactor:
        """A redactor keyed by ``RTSERVE_REDACTION_KEY`` (random when unset)."""
        raw = os.environ.get(KEY_ENV)
        return cls(raw.encode() if raw else None, mode)

    def with_mode(self, mode: RedactionMode) -> Redactor:
        """A redactor with the same key and PII names but another mode."""
        twin = Redactor(self._key, mode)
        twin.random_key = self.random_key
        twin.pii_fields = self.pii_fields  # shared on purpose: one list of PII names per process
        return twin

    def register(self, names: Iterable[str]) -> None:
        """Remember PII field names of a newly served schema."""
        self.pii_fields.update(names)

    def hash(self, value: Any) -> str:
        """``hmac:<hex>`` of a value's canonical JSON under this redactor's key."""
        digest = hmac.new(self._key, _canonical(value), hashlib.sha256).hexdigest()
        return f"hmac:{digest[:32]}"

    def value(self, value: Any) -> Any:
        """One PII value as it may leave the process (None stays None: absence is not PII)."""
        if value is None:
            return None
        return self.hash(value) if self.mode == "hash" else DROPPED

    def record(self, record: Mapping[str, Any], pii: Collection[str]) -> dict[str, Any]:
        """A copy of ``record`` with the PII fields hashed, or left out in ``drop`` mode."""
        if self.mode == "drop":
            return {k: v for k, v in record.items() if k not in pii}
        return {k: (self.value(v) if k in pii else v) for k, v in record.items()}

    def input_hash(self, record: Mapping[str, Any], pii: Collection[str]) -> str:
        """``sha256:<hex>`` of the record's canonical JSON, PII values replaced by keyed hashes.

        Without PII fields anyone can recompute it from the input; with them, only a holder of
        the key can.
        """
        hashed = (
            {k: (self.hash(v) if k in pii and v is not None else v) for k, v in record.items()}
            if pii
            else record
        )
        return "sha256:" + hashlib.sha256(_canonical(hashed)).hexdigest()

    def processor(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor: values under PII keys (top level or one level down) redacted."""
        names = self.pii_fields
        if not names:
            return event_dict
        for key, value in list(event_dict.items()):
            if key in names:
                event_dict[key] = self.value(value)
            elif isinstance(value, Mapping) and names.intersection(value):
                event_dict[key] = self.record(value, names)
        return event_dict


def withhold_pii(error: InputError, pii: Collection[str]) -> InputError | None:
    """A copy of a protocol-level input error without its message when it concerns a PII field.

    The validator already withholds PII values in its violations; decoders of the wire formats
    (which know no schema) may quote a malformed value, e.g. ``element 0 is 'ann@x.org' but FP64
    data are numbers``. Returns None when the error does not concern a PII field.
    """
    if isinstance(error, ValidationError) or not pii:
        return None
    named = sorted(
        name for name in pii if f"'{name}'" in error.message or (error.field or "") == name
    )
    if not named:
        return None
    message = (
        f"{error.field or 'input'}: input {named[0]!r} is malformed (check its datatype and "
        "shape); the message is withheld because the field is flagged pii"
    )
    try:
        return type(error)(message, field=error.field)
    except TypeError:  # a subclass with another constructor: keep the type family
        return InputError(message, field=error.field)


@cache
def default_redactor() -> Redactor:
    """The process's redactor, keyed from ``RTSERVE_REDACTION_KEY`` on first use.

    One per process so that the log chain and the server share one key and one list of PII
    field names.
    """
    return Redactor.from_env()


def _canonical(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys; NaN as null) to hash."""
    return msgspec.json.encode(value, order="sorted")
