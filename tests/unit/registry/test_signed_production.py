"""A model whose policy requires a signature reaches production only signed by a trusted key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from rtserve.bundle.signature import generate_key_pair, load_public_keys
from rtserve.bundle.signer import sign_bundle
from rtserve.errors import RegistryConflictError
from rtserve.registry import Policy, PromotionRequest, Registry


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    private, public = generate_key_pair(tmp_path / "keys", "release")
    _, stranger = generate_key_pair(tmp_path / "keys", "stranger")
    return private, public, stranger


def _signed_copy(bundle: Path, private: Path, target: Path) -> Path:
    shutil.copytree(bundle, target)
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    sign_bundle(target, key)  # type: ignore[arg-type]
    return target


def _registry(tmp_path: Path, trusted: list[Path]) -> Registry:
    reg = Registry.open(tmp_path / "reg", trusted_keys=load_public_keys(trusted))
    reg.init("key:admin")
    reg.grant("key:admin", "key:mae", "maintainer")
    return reg


def test_only_a_version_signed_by_a_trusted_key_may_be_requested_for_production(
    tmp_path, fraud_versions, keys
):
    private, public, _ = keys
    reg = _registry(tmp_path, [public])
    reg.push(fraud_versions["1"], "key:mae")
    reg.push(_signed_copy(fraud_versions["2"], private, tmp_path / "signed-2"), "key:mae")
    reg.set_policy("key:admin", "fraud", Policy(require_signature=True))

    with pytest.raises(RegistryConflictError, match="fraud@1 cannot be promoted to production"):
        reg.promote("fraud", "1", to="production", actor="key:mae")
    request = reg.promote("fraud", "2", to="production", actor="key:mae")

    assert isinstance(request, PromotionRequest)
    assert reg.promote("fraud", "1", to="staging", actor="key:mae").version == "1"  # not gated
    reg.close()


def test_a_signature_by_a_key_the_registry_does_not_trust_is_refused(
    tmp_path, fraud_versions, keys
):
    private, _, stranger = keys
    reg = _registry(tmp_path, [stranger])
    reg.push(_signed_copy(fraud_versions["2"], private, tmp_path / "signed-2"), "key:mae")
    reg.set_policy("key:admin", "fraud", Policy(require_signature=True))

    with pytest.raises(RegistryConflictError) as caught:
        reg.promote("fraud", "2", to="production", actor="key:mae")
    assert caught.value.field == "signature"
    reg.close()


def test_a_registry_without_trusted_keys_says_how_to_give_them(tmp_path, fraud_versions, keys):
    reg = _registry(tmp_path, [])
    reg.push(fraud_versions["1"], "key:mae")
    reg.set_policy("key:admin", "fraud", Policy(require_signature=True))

    with pytest.raises(RegistryConflictError, match="--trusted-key"):
        reg.promote("fraud", "1", to="production", actor="key:mae")
    reg.close()
