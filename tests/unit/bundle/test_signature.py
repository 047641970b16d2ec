"""Specification: a signed bundle proves who vouched for its digest; anything else is refused.

A signature is ``rtserve.sig`` beside ``rtserve.yaml``: Ed25519 over ``rtserve.bundle.v1:`` +
the digest. Every way to get an untrusted bundle past a server that requires signatures (no
signature, another key, a change after signing with every hash recomputed, an edited or hostile
signature file) is refused with a ``SignatureError`` whose ``reason`` names the way.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import rtserve
from rtserve import Bundle
from rtserve.bundle.manifest import MANIFEST_FILE, read_manifest
from rtserve.bundle.signature import (
    DOMAIN,
    MAX_SIGNATURE_BYTES,
    SIGNATURE_FILE,
    TrustedKey,
    check_signature,
    describe_signature,
    fingerprint,
    generate_key_pair,
    load_private_key,
    load_public_keys,
    read_signature,
)
from rtserve.bundle.signer import sign_bundle
from rtserve.errors import (
    BundleTooLargeError,
    IntegrityError,
    SignatureError,
    UnsafeArchiveError,
)


class KeyPair:
    """A key pair written as ``rtserve keygen`` writes it."""

    def __init__(self, folder: Path, name: str) -> None:
        self.private_path, self.public_path = generate_key_pair(folder, name)
        self.private = load_private_key(self.private_path)
        self.fingerprint = fingerprint(self.private.public_key())


@pytest.fixture
def signer(tmp_path: Path) -> KeyPair:
    return KeyPair(tmp_path / "keys", "signer")


@pytest.fixture
def other(tmp_path: Path) -> KeyPair:
    return KeyPair(tmp_path / "keys", "other")


@pytest.fixture
def signed_bundle(fraud_bundle_copy: Path, signer: KeyPair) -> Path:
    sign_bundle(fraud_bundle_copy, signer.private)
    return fraud_bundle_copy


def _refused(path: Path, keys: list[Path], *, require: bool = True) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        Bundle.open(path, trusted_keys=keys, require_signature=require)
    return caught.value


def _signature_document(bundle: Path) -> dict[str, str]:
    document: dict[str, str] = json.loads((bundle / SIGNATURE_FILE).read_text())
    return document


def _write_signature_document(bundle: Path, document: dict[str, str]) -> None:
    (bundle / SIGNATURE_FILE).write_text(json.dumps(document))


def _change_model_and_recompute_every_hash(bundle: Path) -> None:
    """What an attacker with write access does: edit a file, then re-seal the manifest."""
    model = bundle / "model/model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    Bundle.seal(bundle, read_manifest(bundle))


# --- accepted ---------------------------------------------------------------------------------


def test_a_signed_bundle_opens_when_its_signers_key_is_trusted_and_a_signature_required(
    signed_bundle: Path, signer: KeyPair
) -> None:
    bundle = Bundle.open(signed_bundle, trusted_keys=[signer.public_path], require_signature=True)

    verified = check_signature(bundle, load_public_keys([signer.public_path]), require=True)
    assert verified is not None
    assert verified.digest == bundle.digest
    assert verified.key_fingerprint == signer.fingerprint
    assert verified.key_id == "ed25519:" + signer.fingerprint.removeprefix("sha256:")[:16]


def test_signing_writes_only_the_signature_file_and_leaves_the_digest_as_it_was(
    fraud_bundle_copy: Path, signer: KeyPair
) -> None:
    before = Bundle.open(fraud_bundle_copy).digest
    manifest_before = (fraud_bundle_copy / MANIFEST_FILE).read_bytes()

    sign_bundle(fraud_bundle_copy, signer.private, key_id="release-2024")

    after = Bundle.open(fraud_bundle_copy)
    assert after.digest == before
    assert (fraud_bundle_copy / MANIFEST_FILE).read_bytes() == manifest_before
    assert SIGNATURE_FILE not in after.manifest.files
    document = _signature_document(fraud_bundle_copy)
    assert document["format"] == "rtserve.signature/v1"
    assert document["algorithm"] == "ed25519"
    assert document["digest"] == before
    assert document["key_id"] == "release-2024"
    assert document["key_fingerprint"] == signer.fingerprint
    after.verify()


def test_the_signature_is_over_the_domain_prefixed_digest(
    signed_bundle: Path, signer: KeyPair
) -> None:
    document = _signature_document(signed_bundle)
    raw = base64.b64decode(document["signature"])

    signer.private.public_key().verify(raw, DOMAIN + document["digest"].encode())


def test_a_signed_archive_carries_its_signature_and_verifies(
    signed_bundle: Path, signer: KeyPair, tmp_path: Path
) -> None:
    Bundle.open(signed_bundle).save(tmp_path / "fraud-1.tar.gz")
    with tarfile.open(tmp_path / "fraud-1.tar.gz") as tar:
        assert SIGNATURE_FILE in tar.getnames()

    opened = Bundle.open(
        tmp_path / "fraud-1.tar.gz", trusted_keys=[signer.public_path], require_signature=True
    )
    predictor = rtserve.load(
        tmp_path / "fraud-1.tar.gz", trusted_keys=[signer.public_path], require_signature=True
    )
    assert predictor.digest == opened.digest


def test_an_archive_can_be_signed_in_place(
    fraud_bundle_dir: Path, signer: KeyPair, tmp_path: Path
) -> None:
    archive = tmp_path / "fraud-1.tar.gz"
    Bundle.open(fraud_bundle_dir).save(archive)
    with pytest.raises(SignatureError):
        Bundle.open(archive, trusted_keys=[signer.public_path], require_signature=True)

    signature = sign_bundle(archive, signer.private)

    opened = Bundle.open(archive, trusted_keys=[signer.public_path], require_signature=True)
    assert signature.digest == opened.digest
    assert not list(tmp_path.glob("*.partial"))


def test_a_copy_of_a_signed_bundle_stays_signed(
    signed_bundle: Path, signer: KeyPair, tmp_path: Path
) -> None:
    copy = Bundle.open(signed_bundle).save(tmp_path / "copy")

    assert (copy.path / SIGNATURE_FILE).is_file()
    Bundle.open(copy.path, trusted_keys=[signer.public_path], require_signature=True)


def test_any_of_several_trusted_keys_may_have_signed(
    signed_bundle: Path, signer: KeyPair, other: KeyPair
) -> None:
    Bundle.open(
        signed_bundle,
        trusted_keys=[other.public_path, signer.public_path],
        require_signature=True,
    )
    keys = load_public_keys([other.public_path, signer.public_path, other.public_path])
    assert [key.fingerprint for key in keys] == [other.fingerprint, signer.fingerprint]


def test_trusted_keys_may_be_given_as_loaded_keys(signed_bundle: Path, signer: KeyPair) -> None:
    public = signer.private.public_key()
    key = TrustedKey(fingerprint(public), public, "in memory")

    rtserve.load(signed_bundle, trusted_keys=[key], require_signature=True)
    rtserve.load(Bundle.open(signed_bundle), trusted_keys=[key], require_signature=True)


def test_signing_again_replaces_the_signature(
    signed_bundle: Path, signer: KeyPair, other: KeyPair
) -> None:
    sign_bundle(signed_bundle, other.private)

    Bundle.open(signed_bundle, trusted_keys=[other.public_path], require_signature=True)
    assert _refused(signed_bundle, [signer.public_path]).reason == "unknown_key"
    assert [p.name for p in signed_bundle.iterdir() if p.name.startswith(".")] == []


# --- the policy -------------------------------------------------------------------------------


def test_an_unsigned_bundle_is_refused_when_a_signature_is_required(
    fraud_bundle_copy: Path, signer: KeyPair
) -> None:
    error = _refused(fraud_bundle_copy, [signer.public_path])

    assert error.reason == "unsigned"
    assert error.code == "signature"
    assert "unsigned" in error.message
    assert "rtserve sign" in error.message
    with pytest.raises(SignatureError, match="unsigned"):
        rtserve.load(fraud_bundle_copy, trusted_keys=[signer.public_path], require_signature=True)


def test_an_unsigned_bundle_opens_when_keys_are_given_but_no_signature_is_required(
    fraud_bundle_copy: Path, signer: KeyPair
) -> None:
    Bundle.open(fraud_bundle_copy, trusted_keys=[signer.public_path])


def test_requiring_a_signature_without_any_trusted_key_is_refused(signed_bundle: Path) -> None:
    error = _refused(signed_bundle, [])

    assert error.reason == "no_trusted_keys"
    assert error.field == "trusted_keys"


def test_a_bundle_signed_by_an_untrusted_key_is_refused_naming_the_key(
    signed_bundle: Path, signer: KeyPair, other: KeyPair
) -> None:
    error = _refused(signed_bundle, [other.public_path])

    assert error.reason == "unknown_key"
    assert signer.fingerprint[:23] in error.message
    assert other.fingerprint[:23] in error.message


def test_a_present_but_untrusted_signature_is_refused_even_when_none_is_required(
    signed_bundle: Path, other: KeyPair
) -> None:
    assert _refused(signed_bundle, [other.public_path], require=False).reason == "unknown_key"


def test_a_signature_by_another_key_claiming_the_trusted_fingerprint_is_refused(
    signed_bundle: Path, signer: KeyPair, other: KeyPair
) -> None:
    sign_bundle(signed_bundle, other.private)
    document = _signature_document(signed_bundle)
    document["key_fingerprint"] = signer.fingerprint
    document["key_id"] = "signer"
    _write_signature_document(signed_bundle, document)

    assert _refused(signed_bundle, [signer.public_path]).reason == "bad_signature"


def test_a_change_after_signing_is_refused_even_with_every_hash_recomputed(
    signed_bundle: Path, signer: KeyPair
) -> None:
    signed_digest = _signature_document(signed_bundle)["digest"]
    _change_model_and_recompute_every_hash(signed_bundle)
    assert Bundle.open(signed_bundle).digest != signed_digest  # the hashes alone now pass

    error = _refused(signed_bundle, [signer.public_path])

    assert error.reason == "digest_mismatch"
    assert signed_digest[:23] in error.message
    assert _refused(signed_bundle, [signer.public_path], require=False).reason == (
        "digest_mismatch"
    )


def test_a_change_after_signing_with_the_signed_digest_rewritten_too_is_refused(
    signed_bundle: Path, signer: KeyPair
) -> None:
    _change_model_and_recompute_every_hash(signed_bundle)
    document = _signature_document(signed_bundle)
    document["digest"] = Bundle.open(signed_bundle).digest
    _write_signature_document(signed_bundle, document)

    assert _refused(signed_bundle, [signer.public_path]).reason == "bad_signature"


def test_a_signature_with_one_flipped_bit_is_refused(signed_bundle: Path, signer: KeyPair) -> None:
    document = _signature_document(signed_bundle)
    raw = bytearray(base64.b64decode(document["signature"]))
    raw[10] ^= 0x01
    document["signature"] = base64.b64encode(bytes(raw)).decode()
    _write_signature_document(signed_bundle, document)

    error = _refused(signed_bundle, [signer.public_path])

    assert error.reason == "bad_signature"
    assert "does not verify" in error.message


def test_a_signature_over_the_bare_digest_without_the_domain_prefix_is_refused(
    signed_bundle: Path, signer: KeyPair
) -> None:
    document = _signature_document(signed_bundle)
    bare = signer.private.sign(document["digest"].encode())
    document["signature"] = base64.b64encode(bare).decode()
    _write_signature_document(signed_bundle, document)

    assert _refused(signed_bundle, [signer.public_path]).reason == "bad_signature"


def test_the_key_id_label_is_not_what_makes_a_key_trusted(
    signed_bundle: Path, signer: KeyPair, other: KeyPair
) -> None:
    document = _signature_document(signed_bundle)
    document["key_id"] = "ed25519:" + other.fingerprint.removeprefix("sha256:")[:16]
    _write_signature_document(signed_bundle, document)

    Bundle.open(signed_bundle, trusted_keys=[signer.public_path], require_signature=True)
    assert _refused(signed_bundle, [other.public_path]).reason == "unknown_key"


def test_without_trusted_keys_a_signature_is_reported_but_not_enforced(
    signed_bundle: Path, signer: KeyPair
) -> None:
    (signed_bundle / SIGNATURE_FILE).write_text("not json")
    Bundle.open(signed_bundle)  # nothing to check it against, and none required

    report = describe_signature(Bundle.open(signed_bundle))

    assert report["signed"] is True
    assert report["valid"] is False
    assert report["reason"] == "malformed"


def test_the_description_says_who_signed_and_whether_it_verified(
    signed_bundle: Path, signer: KeyPair, other: KeyPair, fraud_bundle_dir: Path
) -> None:
    bundle = Bundle.open(signed_bundle)

    unchecked = describe_signature(bundle)
    checked = describe_signature(bundle, load_public_keys([signer.public_path]))
    untrusted = describe_signature(bundle, load_public_keys([other.public_path]))

    assert unchecked["key_fingerprint"] == signer.fingerprint
    assert unchecked["matches_digest"] is True
    assert unchecked["valid"] is None
    assert checked["valid"] is True
    assert untrusted["valid"] is False
    assert untrusted["reason"] == "unknown_key"
    assert describe_signature(Bundle.open(fraud_bundle_dir)) == {"signed": False}


# --- hostile signature files ------------------------------------------------------------------


GARBAGE = (
    "not json",
    "not utf-8",
    "empty",
    "a list",
    "deeply nested",
    "missing key",
    "extra key",
    "repeated key",
    "other format",
    "other algorithm",
    "digest not sha256",
    "fingerprint not a string",
    "signature not base64",
    "signature not text",
    "signature too short",
    "key id with a control character",
    "key id too long",
)


def _garbage_documents(valid: dict[str, str]) -> dict[str, bytes]:
    def edited(**changes: object) -> bytes:
        return json.dumps({**valid, **changes}).encode()

    without_key = {k: v for k, v in valid.items() if k != "key_fingerprint"}
    return {
        "not json": b"this is not json",
        "not utf-8": b"\xff\xfe\x00garbage",
        "empty": b"",
        "a list": b"[1, 2, 3]",
        "deeply nested": b"[" * 3000 + b"]" * 3000,
        "missing key": json.dumps(without_key).encode(),
        "extra key": edited(comment="hi"),
        "repeated key": json.dumps(valid)[:-1].encode()
        + b', "digest": "sha256:'
        + b"0" * 64
        + b'"}',
        "other format": edited(format="rtserve.signature/v9"),
        "other algorithm": edited(algorithm="rsa"),
        "digest not sha256": edited(digest="md5:abc"),
        "fingerprint not a string": edited(key_fingerprint=42),
        "signature not base64": edited(signature="!!!notbase64!!!"),
        "signature not text": edited(signature=[1, 2]),
        "signature too short": edited(signature=base64.b64encode(b"x" * 10).decode()),
        "key id with a control character": edited(key_id="ok\x1b[31mred"),
        "key id too long": edited(key_id="k" * 500),
    }


@pytest.mark.parametrize("case", GARBAGE)
def test_a_garbage_signature_file_is_refused_as_malformed_without_quoting_it(
    signed_bundle: Path, signer: KeyPair, case: str
) -> None:
    garbage = _garbage_documents(_signature_document(signed_bundle))[case]
    (signed_bundle / SIGNATURE_FILE).write_bytes(garbage)

    error = _refused(signed_bundle, [signer.public_path], require=False)

    assert error.reason == "malformed"
    assert error.field == SIGNATURE_FILE
    assert error.message.startswith(f"{SIGNATURE_FILE} ")
    assert len(error.message) < 400


def test_an_oversized_signature_file_is_refused_unread(
    signed_bundle: Path, signer: KeyPair
) -> None:
    (signed_bundle / SIGNATURE_FILE).write_bytes(b" " * (MAX_SIGNATURE_BYTES + 1))

    error = _refused(signed_bundle, [signer.public_path])

    assert error.reason == "malformed"
    assert str(MAX_SIGNATURE_BYTES) in error.message


def test_a_signature_file_that_is_a_link_is_refused(signed_bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.sig"
    shutil.move(signed_bundle / SIGNATURE_FILE, outside)
    (signed_bundle / SIGNATURE_FILE).symlink_to(outside)

    with pytest.raises(IntegrityError, match="symbolic link"):
        Bundle.open(signed_bundle)


def test_only_the_root_signature_file_is_exempt_from_hashing(signed_bundle: Path) -> None:
    shutil.copy(signed_bundle / SIGNATURE_FILE, signed_bundle / "model" / SIGNATURE_FILE)

    with pytest.raises(IntegrityError, match=f"model/{SIGNATURE_FILE}"):
        Bundle.open(signed_bundle)


def _archive(path: Path, bundle_dir: Path, extra: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(bundle_dir.rglob("*")):
            if file.is_file():
                data = file.read_bytes()
                info = tarfile.TarInfo(file.relative_to(bundle_dir).as_posix())
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_with_an_oversized_signature_entry_is_refused_before_unpacking(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    archive = _archive(
        tmp_path / "big.tar.gz",
        fraud_bundle_dir,
        {SIGNATURE_FILE: b" " * (MAX_SIGNATURE_BYTES + 1)},
    )

    with pytest.raises(BundleTooLargeError, match=SIGNATURE_FILE):
        Bundle.open(archive)


def test_an_archive_with_a_signature_entry_away_from_the_manifest_is_refused(
    fraud_bundle_dir: Path, tmp_path: Path
) -> None:
    archive = _archive(
        tmp_path / "nested.tar.gz", fraud_bundle_dir, {f"model/{SIGNATURE_FILE}": b"{}"}
    )

    with pytest.raises(UnsafeArchiveError, match="not one of the files"):
        Bundle.open(archive)


def test_a_signature_entry_before_the_manifest_in_an_archive_is_accepted(
    signed_bundle: Path, signer: KeyPair, tmp_path: Path
) -> None:
    archive = tmp_path / "first.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in [SIGNATURE_FILE, MANIFEST_FILE, *read_manifest(signed_bundle).files]:
            tar.add(signed_bundle / name, arcname=name)

    Bundle.open(archive, trusted_keys=[signer.public_path], require_signature=True)


def test_a_modified_bundle_is_never_signed(fraud_bundle_copy: Path, signer: KeyPair) -> None:
    (fraud_bundle_copy / "profile.json").write_text("{}")

    with pytest.raises(IntegrityError):
        sign_bundle(fraud_bundle_copy, signer.private)
    assert read_signature(fraud_bundle_copy) is None


# --- keys -------------------------------------------------------------------------------------


def test_a_new_private_key_is_readable_by_its_owner_only(signer: KeyPair) -> None:
    assert stat.S_IMODE(signer.private_path.stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in signer.public_path.read_bytes()


def test_a_key_pair_is_never_overwritten(signer: KeyPair) -> None:
    before = signer.private_path.read_bytes()

    with pytest.raises(SignatureError, match="exists already"):
        generate_key_pair(signer.private_path.parent, "signer")
    assert signer.private_path.read_bytes() == before


def test_an_openssl_style_pkcs8_key_signs(fraud_bundle_copy: Path, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "openssl.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "openssl.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    sign_bundle(fraud_bundle_copy, load_private_key(pem))

    Bundle.open(fraud_bundle_copy, trusted_keys=[public], require_signature=True)


def _p256_files(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "p256.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "p256.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"garbage", "is not a PEM public key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "is a private key"),
        (b"A" * (64 << 10), "is over"),
    ],
)
def test_a_trusted_key_file_that_is_no_public_ed25519_key_is_refused(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)

    with pytest.raises(SignatureError, match=problem) as caught:
        load_public_keys([path])
    assert caught.value.reason == "bad_key"


def test_a_trusted_key_of_another_algorithm_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    _, p256_public = _p256_files(tmp_path)

    with pytest.raises(SignatureError, match="only Ed25519"):
        load_public_keys([p256_public])
    with pytest.raises(SignatureError, match="cannot be read"):
        load_public_keys([tmp_path / "absent.pem"])


def test_a_signing_key_that_is_encrypted_public_or_not_ed25519_is_refused(
    tmp_path: Path, signer: KeyPair
) -> None:
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    p256_private, _ = _p256_files(tmp_path)

    with pytest.raises(SignatureError, match="is encrypted"):
        load_private_key(encrypted)
    with pytest.raises(SignatureError, match="that is a public key"):
        load_private_key(signer.public_path)
    with pytest.raises(SignatureError, match="Ed25519"):
        load_private_key(p256_private)
