"""Redaction: PII values leave the process only as keyed hashes, or not at all."""

from __future__ import annotations

from rtserve.observability.redaction import DROPPED, Redactor

RECORD = {"email": "ann@example.org", "amount": 12.5, "country": "DE"}


def test_the_keyed_hash_is_stable_under_one_key_and_differs_under_another():
    a, b, other = Redactor(b"k1"), Redactor(b"k1"), Redactor(b"k2")
    assert a.hash("ann@example.org") == b.hash("ann@example.org")
    assert a.hash("ann@example.org") != other.hash("ann@example.org")
    assert a.hash("ann@example.org").startswith("hmac:")
    assert "ann" not in a.hash("ann@example.org")


def test_hash_mode_replaces_only_pii_fields_and_drop_mode_removes_them():
    hashed = Redactor(b"k").record(RECORD, {"email"})
    assert hashed["email"].startswith("hmac:")
    assert hashed["amount"] == 12.5
    dropped = Redactor(b"k", "drop").record(RECORD, {"email"})
    assert dropped == {"amount": 12.5, "country": "DE"}
    assert Redactor(b"k", "drop").value("x") == DROPPED


def test_input_hash_ignores_key_order_and_needs_the_key_only_when_pii_is_involved():
    r1, r2 = Redactor(b"k1"), Redactor(b"k2")
    reordered = dict(reversed(list(RECORD.items())))
    assert r1.input_hash(RECORD, {"email"}) == r1.input_hash(reordered, {"email"})
    assert r1.input_hash(RECORD, {"email"}) != r2.input_hash(RECORD, {"email"})
    assert r1.input_hash(RECORD, set()) == r2.input_hash(RECORD, set())
    assert r1.input_hash(RECORD, set()) != r1.input_hash({**RECORD, "amount": 13}, set())


def test_the_log_processor_redacts_registered_pii_keys_at_the_top_and_one_level_down():
    redactor = Redactor(b"k")
    redactor.register({"email"})
    event = redactor.processor(
        None, "info", {"event": "x", "email": "ann@example.org", "record": dict(RECORD)}
    )
    assert event["email"].startswith("hmac:")
    assert event["record"]["email"].startswith("hmac:")
    assert event["record"]["country"] == "DE"


def test_a_twin_with_another_mode_shares_key_and_pii_names():
    base = Redactor(b"k")
    twin = base.with_mode("drop")
    base.register({"ssn"})
    assert twin.pii_fields == {"ssn"}
    assert twin.hash("v") == base.hash("v")


def test_the_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RTSERVE_REDACTION_KEY", "s3cret")
    assert Redactor.from_env().hash("v") == Redactor(b"s3cret").hash("v")
    assert not Redactor.from_env().random_key
    monkeypatch.delenv("RTSERVE_REDACTION_KEY")
    assert Redactor.from_env().random_key


def test_a_decoder_error_quoting_a_pii_input_is_replaced_by_one_naming_only_the_input():
    from rtserve.errors import FieldViolation, MalformedRequestError, ValidationError
    from rtserve.observability.redaction import withhold_pii

    quoted = MalformedRequestError(
        "inputs[3].data (input 'email'): element 0 is 'ann@example.org' but FP64 data are numbers",
        field="inputs[3].data",
    )
    replaced = withhold_pii(quoted, {"email"})
    assert isinstance(replaced, MalformedRequestError)
    assert "ann@example.org" not in replaced.message
    assert "'email'" in replaced.message
    assert replaced.field == "inputs[3].data"
    other = MalformedRequestError("inputs[1] (input 'amount'): element 0 is 'x'", field="inputs[1]")
    assert withhold_pii(other, {"email"}) is None
    validation = ValidationError(
        [FieldViolation("email", "type", "email: <value withheld: pii field>")]
    )
    assert withhold_pii(validation, {"email"}) is None  # the validator already withholds values
