"""`rtserve keygen`, `rtserve sign` and `rtserve verify --trusted-key --require-signature`.

A refusal is exit code 1 and one ``error:`` line naming the reason, never a traceback.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rtserve import Bundle
from rtserve.bundle.signature import MAX_SIGNATURE_BYTES, SIGNATURE_FILE
from tests.unit.cli.conftest import Invoke


@pytest.fixture
def keys(rtserve_cli: Invoke, tmp_path: Path) -> tuple[Path, Path]:
    result = rtserve_cli("keygen", "--out", tmp_path / "keys", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    return Path(document["private_key"]), Path(document["public_key"])


@pytest.fixture
def other_public_key(rtserve_cli: Invoke, tmp_path: Path) -> Path:
    result = rtserve_cli("keygen", "--out", tmp_path / "other", "--name", "other")
    assert result.exit_code == 0, result.output
    return tmp_path / "other" / "other.pub.pem"


def _one_error_line(result_output: str, *texts: str) -> None:
    lines = [line for line in result_output.splitlines() if line.strip()]
    assert len(lines) == 1, result_output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result_output
    for text in texts:
        assert text in lines[0], text


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_its_public_key(
    rtserve_cli: Invoke, tmp_path: Path
) -> None:
    result = rtserve_cli("keygen", "--out", tmp_path / "keys")

    assert result.exit_code == 0, result.output
    private = tmp_path / "keys" / "rtserve-signing.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert (tmp_path / "keys" / "rtserve-signing.pub.pem").is_file()
    assert "fingerprint  sha256:" in result.stdout


def test_keygen_never_overwrites_a_key(rtserve_cli: Invoke, keys: tuple[Path, Path]) -> None:
    private, _ = keys
    before = private.read_bytes()

    result = rtserve_cli("keygen", "--out", private.parent)

    assert result.exit_code == 1
    _one_error_line(result.stderr, "exists already")
    assert private.read_bytes() == before


def test_sign_then_verify_with_the_public_key_and_a_required_signature_passes(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys

    signed = rtserve_cli("sign", fraud_bundle_copy, "--key", private, "--key-id", "ci-release")
    verified = rtserve_cli(
        "verify", fraud_bundle_copy, "--trusted-key", public, "--require-signature"
    )

    assert signed.exit_code == 0, signed.output
    assert Bundle.open(fraud_bundle_copy).digest in signed.stdout
    assert "ci-release" in signed.stdout
    assert verified.exit_code == 0, verified.output
    assert "signature: verified, key ci-release (sha256:" in verified.stdout


def test_verify_json_reports_the_verified_signature(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    assert rtserve_cli("sign", fraud_bundle_copy, "--key", private).exit_code == 0

    result = rtserve_cli(
        "verify", fraud_bundle_copy, "--trusted-key", public, "--require-signature", "--json"
    )

    assert result.exit_code == 0, result.output
    signature = json.loads(result.stdout)["signature"]
    assert signature["valid"] is True
    assert signature["matches_digest"] is True


def test_a_signed_archive_verifies(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    archive = tmp_path / "fraud-1.tar.gz"
    Bundle.open(fraud_bundle_dir).save(archive)

    signed = rtserve_cli("sign", archive, "--key", private)
    verified = rtserve_cli("verify", archive, "--trusted-key", public, "--require-signature")

    assert signed.exit_code == 0, signed.output
    assert verified.exit_code == 0, verified.output


def test_an_unsigned_bundle_fails_verify_when_a_signature_is_required(
    rtserve_cli: Invoke, fraud_bundle_dir: Path, keys: tuple[Path, Path]
) -> None:
    _, public = keys

    result = rtserve_cli("verify", fraud_bundle_dir, "--trusted-key", public, "--require-signature")

    assert result.exit_code == 1
    _one_error_line(result.stderr, "unsigned", "rtserve sign")


def test_requiring_a_signature_without_a_trusted_key_fails(
    rtserve_cli: Invoke, fraud_bundle_dir: Path
) -> None:
    result = rtserve_cli("verify", fraud_bundle_dir, "--require-signature")

    assert result.exit_code == 1
    _one_error_line(result.stderr, "no trusted public key")


def test_a_bundle_signed_with_another_key_fails_verify(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path], other_public_key: Path
) -> None:
    private, _ = keys
    assert rtserve_cli("sign", fraud_bundle_copy, "--key", private).exit_code == 0

    result = rtserve_cli("verify", fraud_bundle_copy, "--trusted-key", other_public_key)

    assert result.exit_code == 1
    _one_error_line(result.stderr, "none of the 1 trusted key")


def test_any_of_several_trusted_keys_verifies(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path], other_public_key: Path
) -> None:
    private, public = keys
    assert rtserve_cli("sign", fraud_bundle_copy, "--key", private).exit_code == 0

    result = rtserve_cli(
        "verify",
        fraud_bundle_copy,
        "--trusted-key",
        other_public_key,
        "--trusted-key",
        public,
        "--require-signature",
    )

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff garbage", b"[" * 5000, b"{}", b" " * (MAX_SIGNATURE_BYTES + 1)],
    ids=["binary", "deeply-nested", "empty-object", "oversized"],
)
def test_a_garbage_signature_file_fails_verify_in_one_line(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path], content: bytes
) -> None:
    private, public = keys
    assert rtserve_cli("sign", fraud_bundle_copy, "--key", private).exit_code == 0
    (fraud_bundle_copy / SIGNATURE_FILE).write_bytes(content)

    result = rtserve_cli("verify", fraud_bundle_copy, "--trusted-key", public)

    assert result.exit_code == 1
    _one_error_line(result.stderr, SIGNATURE_FILE)


def test_a_bad_key_file_fails_sign_and_verify_in_one_line(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys

    signed_with_public = rtserve_cli("sign", fraud_bundle_copy, "--key", public)
    trusting_private = rtserve_cli("verify", fraud_bundle_copy, "--trusted-key", private)

    assert signed_with_public.exit_code == 1
    _one_error_line(signed_with_public.stderr, "not a PEM private key")
    assert trusting_private.exit_code == 1
    _one_error_line(trusting_private.stderr, "is a private key")
    assert not (fraud_bundle_copy / SIGNATURE_FILE).exists()


def test_sign_warns_about_a_private_key_others_can_read(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path]
) -> None:
    private, _ = keys
    private.chmod(0o644)

    result = rtserve_cli("sign", fraud_bundle_copy, "--key", private)

    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr
    assert "chmod 600" in result.stderr


def test_inspect_shows_the_signer_without_checking_it(
    rtserve_cli: Invoke, fraud_bundle_copy: Path, keys: tuple[Path, Path]
) -> None:
    private, _ = keys
    unsigned = rtserve_cli("inspect", fraud_bundle_copy)
    assert rtserve_cli("sign", fraud_bundle_copy, "--key", private, "--key-id", "ci").exit_code == 0

    signed = rtserve_cli("inspect", fraud_bundle_copy)
    document = json.loads(rtserve_cli("inspect", fraud_bundle_copy, "--json").stdout)

    assert "signature    unsigned" in unsigned.stdout
    assert "signature    signed by key ci (sha256:" in signed.stdout
    assert "not checked" in signed.stdout
    assert document["signature"]["key_id"] == "ci"
    assert document["signature"]["valid"] is None


def test_help_lists_sign_and_keygen_with_examples(rtserve_cli: Invoke) -> None:
    for command in ("sign", "keygen"):
        result = rtserve_cli(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.stdout
        assert f"rtserve {command} " in result.stdout
    verify_help = rtserve_cli("verify", "--help").stdout
    assert "--trusted-key" in verify_help
    assert "--require-signature" in verify_help


def test_help_does_not_load_the_crypto_library() -> None:
    code = (
        "import sys\nfrom rtserve.cli.main import main\nsys.argv = ['rtserve', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'cryptography' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )

    assert "sign" in result.stdout
    assert result.stdout.splitlines()[-1] == "LOADED False"
