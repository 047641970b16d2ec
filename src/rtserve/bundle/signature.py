"""Detached Ed25519 signatures over a bundle's digest: who vouches for this exact bundle.

The digest covers the manifest and, through the hashes it lists, every file (see ``integrity``),
so a signature over the digest covers the whole bundle. It lives in ``rtserve.sig`` beside
``rtserve.yaml``: the one file besides the manifest that the digest does not hash (a digest cannot
cover its own signature), and one that archives carry. What is signed is ``DOMAIN`` followed by
the digest, so an rtserve signature can never pass for a signature of anything else made with the
same key.

Keys are Ed25519 through ``cryptography`` (already installed with ``pyjwt[crypto]``): PKCS#8 PEM
private keys (``rtserve keygen`` or ``openssl genpkey -algorithm ed25519``) and
SubjectPublicKeyInfo PEM public keys. A key is known by its fingerprint, ``sha256:`` of its 32
raw public bytes, which is what verification matches on; ``key_id`` is a label for people and
is never trusted. ``cryptography`` is imported on first use, so opening an unsigned bundle with no
trusted keys never imports it.

The server and the registry call ``load_public_keys`` once at start and ``check_signature`` on
every bundle they are about to serve; ``rtserve.bundle.signer`` signs a bundle on disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rtserve.bundle.paths import read_bounded
from rtserve.errors import BundleTooLargeError, SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

#: The signature file, at the bundle's root beside ``rtserve.yaml``; not hashed into the digest.
SIGNATURE_FILE = "rtserve.sig"
#: The ``format`` value of a signature file this version reads and writes.
SIGNATURE_FORMAT = "rtserve.signature/v1"
#: The only signature algorithm: Ed25519 (deterministic, no parameters to get wrong).
ALGORITHM = "ed25519"
#: Prefix of the signed message, so that a bundle signature means nothing in any other context.
DOMAIN = b"rtserve.bundle.v1:"
#: Largest ``rtserve.sig`` read (``rtserve sign`` writes about 400 bytes).
MAX_SIGNATURE_BYTES = 4096
#: Largest key file read (a PEM Ed25519 key is about 120 bytes).
MAX_KEY_FILE_BYTES = 16 << 10
#: Longest ``key_id`` label.
MAX_KEY_ID_CHARS = 128

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_FIELDS = ("format", "digest", "algorithm", "key_id", "key_fingerprint", "signature")
_RESIGN = "sign the bundle again with `rtserve sign BUNDLE --key KEY.pem`"


class SignedBundle(Protocol):
    """What a signature check reads of a bundle (``rtserve.bundle.bundle.Bundle`` has it all)."""

    @property
    def path(self) -> Path:
        """The bundle's directory, where ``rtserve.sig`` sits beside ``rtserve.yaml``."""

    @property
    def name(self) -> str:
        """The model name, for messages."""

    @property
    def version(self) -> str:
        """The version label, for messages."""

    @property
    def digest(self) -> str:
        """The ``sha256:<hex>`` digest the hashes were verified against."""


@dataclass(frozen=True)
class TrustedKey:
    """An Ed25519 public key whose signatures are accepted, known by its fingerprint."""

    fingerprint: str
    public_key: Ed25519PublicKey
    source: str  # where it was read from, for messages


@dataclass(frozen=True)
class Signature:
    """The parsed content of ``rtserve.sig``: which digest, signed by which key."""

    digest: str
    key_id: str
    key_fingerprint: str
    signature: bytes

    def to_json(self) -> str:
        """The file's content: one JSON object with sorted keys and a trailing newline."""
        document = {
            "format": SIGNATURE_FORMAT,
            "digest": self.digest,
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "key_fingerprint": self.key_fingerprint,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"


def signed_message(digest: str) -> bytes:
    """The bytes an Ed25519 key signs for a bundle: ``DOMAIN`` + the ``sha256:<hex>`` digest."""
    return DOMAIN + digest.encode("ascii")


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the key's 32 raw public bytes: how a key is named and matched."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def default_key_id(public_key: Ed25519PublicKey) -> str:
    """The label used when the signer gives none: ``ed25519:`` and 16 hex of the fingerprint."""
    return "ed25519:" + fingerprint(public_key).removeprefix("sha256:")[:16]


# --- keys -----------------------------------------------------------------------------------


def load_public_keys(paths: Iterable[str | Path]) -> list[TrustedKey]:
    """The trusted keys in PEM files (one key per file), in order, without duplicates.

    Raises:
        SignatureError: (reason ``bad_key``) a file that is missing, too large, not a PEM
            Ed25519 public key, or a private key (pass its public half instead).
    """
    keys: dict[str, TrustedKey] = {}
    for item in paths:
        path = Path(item)
        data = _read_key_file(path)
        key = _parse_public_key(data, path)
        keys.setdefault(key.fingerprint, key)
    return list(keys.values())


def trusted_keys_from(items: Iterable[TrustedKey | str | Path] | None) -> list[TrustedKey]:
    """``TrustedKey`` values as given and key files loaded (see ``load_public_keys``)."""
    keys: dict[str, TrustedKey] = {}
    for item in items or ():
        for key in [item] if isinstance(item, TrustedKey) else load_public_keys([item]):
            keys.setdefault(key.fingerprint, key)
    return list(keys.values())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The unencrypted PKCS#8 PEM Ed25519 private key in ``path``.

    Raises:
        SignatureError: (reason ``bad_key``) missing, too large, encrypted, or not Ed25519.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _bad_key(
            path,
            "is encrypted; rtserve sign reads unencrypted keys (keep the file mode 0600, or "
            "decrypt a copy with `openssl pkey -in KEY -out PLAIN.pem`)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (that is a public key; sign with its private half)" if b"PUBLIC" in data else ""
        raise _bad_key(
            path,
            "is not a PEM private key" + hint + "; make one with `rtserve keygen --out DIR` or "
            "`openssl genpkey -algorithm ed25519 -out KEY.pem`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise _bad_key(
            path,
            f"holds a {type(key).__name__.removeprefix('_')} key; bundles are signed with "
            "Ed25519 keys (`rtserve keygen --out DIR`)",
        )
    return key


def generate_key_pair(directory: str | Path, name: str = "rtserve-signing") -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``NAME.pem`` (private, mode 0600) and ``NAME.pub.pem``.

    Existing files are never overwritten: a signing key that is lost or replaced by accident
    cannot be recovered. The folder is created with mode 0700 when it does not exist.

    Raises:
        SignatureError: (reason ``bad_key``) either file exists already, or cannot be written.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(directory)
    private_path, public_path = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise _bad_key(path, "exists already; choose another --out folder or name")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(private_path, private_pem, 0o600)
        try:
            _write_new(public_path, public_pem, 0o644)
        except BaseException:
            private_path.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _bad_key(folder, f"cannot hold the new key pair ({exc.strerror or exc})") from exc
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never briefly readable by others)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, mode), "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have cleared bits of a public key's 0644


def _read_key_file(path: Path) -> bytes:
    """A key file's bytes: a regular file (a link to one is fine: secret mounts use them)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise _bad_key(path, f"cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _bad_key(path, "is not a regular file")
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise _bad_key(
            path,
            f"is over {MAX_KEY_FILE_BYTES} bytes; an Ed25519 PEM key is about 120 bytes, so this "
            "is not one",
        )
    return data


def _parse_public_key(data: bytes, path: Path) -> TrustedKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if b"PRIVATE KEY" in data:
        raise _bad_key(
            path,
            "is a private key; trust its public half instead (`rtserve keygen` writes it as "
            "NAME.pub.pem; `openssl pkey -in KEY.pem -pubout` prints it) and keep the private "
            "key off serving machines",
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise _bad_key(
            path, "is not a PEM public key (-----BEGIN PUBLIC KEY-----, as rtserve keygen writes)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise _bad_key(
            path,
            f"holds a {type(key).__name__.removeprefix('_')} key; only Ed25519 keys are "
            "trusted for bundle signatures",
        )
    return TrustedKey(fingerprint(key), key, str(path))


def _bad_key(path: Path, problem: str) -> SignatureError:
    return SignatureError(f"key file {path} {problem}", reason="bad_key", field="key")


# --- signing ----------------------------------------------------------------------------------


def sign_digest(
    digest: str, private_key: Ed25519PrivateKey, *, key_id: str | None = None
) -> Signature:
    """A signature over ``digest`` (``sha256:<hex>``) by ``private_key``; nothing is written."""
    if not _SHA256.fullmatch(digest):
        raise SignatureError(
            f"{digest[:80]!r} is not a bundle digest (sha256:<64 hex>); sign a sealed bundle",
            reason="malformed",
            field="digest",
        )
    public_key = private_key.public_key()
    label = default_key_id(public_key) if key_id is None else _check_key_id(key_id, "--key-id")
    return Signature(
        digest=digest,
        key_id=label,
        key_fingerprint=fingerprint(public_key),
        signature=private_key.sign(signed_message(digest)),
    )


def write_signature(directory: Path, signature: Signature) -> Path:
    """Write ``rtserve.sig`` into a bundle directory at once (a new file renamed over any old)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{SIGNATURE_FILE}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(signature.to_json())
        os.chmod(temporary, 0o644)
        target = directory / SIGNATURE_FILE
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# --- reading and checking -----------------------------------------------------------------


def read_signature(directory: Path) -> Signature | None:
    """The parsed ``rtserve.sig`` of a bundle directory, or None when it has none.

    Raises:
        SignatureError: (reason ``malformed``) over ``MAX_SIGNATURE_BYTES``, not JSON, or not
            an ``rtserve.signature/v1`` document; the message never quotes more than a value.
        UnsafePathError: the file is a link or not a regular file.
    """
    try:
        raw = read_bounded(
            directory, SIGNATURE_FILE, field=SIGNATURE_FILE, limit=MAX_SIGNATURE_BYTES
        )
    except FileNotFoundError:
        return None
    except BundleTooLargeError:
        raise _malformed(
            f"is over the limit of {MAX_SIGNATURE_BYTES} bytes (rtserve sign writes about 400), "
            "so it was not written by rtserve sign"
        ) from None
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _malformed("is not a JSON document") from None
    return _parse_document(document)


def check_signature(
    bundle: SignedBundle, trusted_keys: Sequence[TrustedKey], *, require: bool = False
) -> Signature | None:
    """Enforce the signature policy on an opened bundle; the verified signature, or None.

    With ``require``, the bundle must carry a valid signature over its digest by one of
    ``trusted_keys``. Without it, an unsigned bundle passes, but a signature that is present is
    checked whenever trusted keys are given (a bad one is refused, never ignored). With no
    trusted keys and no ``require`` nothing is read.

    The bundle's hashes are not re-checked here: ``Bundle.open`` (with ``check``) did that, and a
    digest is only worth signing if it matches the files.

    Raises:
        SignatureError: with ``reason`` ``no_trusted_keys`` (required but none given),
            ``unsigned``, ``malformed``, ``unknown_key``, ``digest_mismatch`` (the bundle
            changed after it was signed) or ``bad_signature``.
    """
    if require and not trusted_keys:
        raise SignatureError(
            "a signature is required but no trusted public key is configured, so no bundle can "
            "be accepted; pass the signer's public key (--trusted-key PUB.pem, trusted_keys=[...])",
            reason="no_trusted_keys",
            field="trusted_keys",
        )
    if not trusted_keys:
        return None
    signature = read_signature(bundle.path)
    if signature is None:
        if not require:
            return None
        raise SignatureError(
            f"bundle {bundle.name}:{bundle.version} ({bundle.digest[:23]}…) is unsigned and a "
            f"signature is required; {_RESIGN} (its {SIGNATURE_FILE} sits beside rtserve.yaml)",
            reason="unsigned",
            field=SIGNATURE_FILE,
        )
    by_fingerprint = {key.fingerprint: key for key in trusted_keys}
    key = by_fingerprint.get(signature.key_fingerprint)
    if key is None:
        raise SignatureError(
            f"bundle {bundle.name}:{bundle.version} is signed by key {signature.key_id!r} "
            f"({signature.key_fingerprint[:23]}…), which is none of the {len(trusted_keys)} "
            f"trusted key(s) ({', '.join(k.fingerprint[:23] + '…' for k in trusted_keys[:5])}); "
            "add the signer's public key to the trusted keys if you trust it",
            reason="unknown_key",
            field=SIGNATURE_FILE,
        )
    if signature.digest != bundle.digest:
        raise SignatureError(
            f"bundle {bundle.name}:{bundle.version}: the signature is for digest "
            f"{signature.digest[:23]}… but the bundle's digest is {bundle.digest[:23]}…; the "
            "bundle changed after it was signed (an edit, or a reseal): if the change is yours, "
            + _RESIGN,
            reason="digest_mismatch",
            field=SIGNATURE_FILE,
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.public_key.verify(signature.signature, signed_message(bundle.digest))
    except InvalidSignature:
        raise SignatureError(
            f"bundle {bundle.name}:{bundle.version}: the signature in {SIGNATURE_FILE} does not "
            f"verify with the trusted key {signature.key_fingerprint[:23]}… ({key.source}); the "
            "signature file was altered or made with another key, so the bundle is refused",
            reason="bad_signature",
            field=SIGNATURE_FILE,
        ) from None
    return signature


def describe_signature(
    bundle: SignedBundle, trusted_keys: Sequence[TrustedKey] = ()
) -> dict[str, object]:
    """A JSON-ready account of the bundle's signature for ``inspect``/``verify``; never raises
    for the signature's sake (a bad one is described, with the reason)."""
    try:
        signature = read_signature(bundle.path)
    except SignatureError as exc:
        return {"signed": True, "valid": False, "reason": exc.reason, "error": exc.message}
    if signature is None:
        return {"signed": False}
    document: dict[str, object] = {
        "signed": True,
        "key_id": signature.key_id,
        "key_fingerprint": signature.key_fingerprint,
        "signed_digest": signature.digest,
        "matches_digest": signature.digest == bundle.digest,
    }
    if not trusted_keys:
        document["valid"] = None  # not checked: no trusted keys given
        return document
    try:
        check_signature(bundle, trusted_keys)
    except SignatureError as exc:
        document.update(valid=False, reason=exc.reason, error=exc.message)
    else:
        document["valid"] = True
    return document


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (parsers disagree on which copy counts)."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _malformed(f"repeats the key {key[:40]!r}")
        document[key] = value
    return document


def _parse_document(document: object) -> Signature:
    if not isinstance(document, dict):
        raise _malformed("is not a JSON object")
    missing = [key for key in _FIELDS if key not in document]
    extra = sorted(str(key)[:40] for key in document if key not in _FIELDS)
    if missing or extra:
        raise _malformed(
            f"must hold exactly the keys {', '.join(_FIELDS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra[:5])}" if extra else "")
        )
    if document["format"] != SIGNATURE_FORMAT:
        raise _malformed(
            f"has format {_shown(document['format'])}, not {SIGNATURE_FORMAT!r}; it was made by "
            "another tool or a newer rtserve"
        )
    if document["algorithm"] != ALGORITHM:
        raise _malformed(f"has algorithm {_shown(document['algorithm'])}, not {ALGORITHM!r}")
    for key in ("digest", "key_fingerprint"):
        value = document[key]
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise _malformed(f"{key} {_shown(value)} is not sha256:<64 lowercase hex>")
    key_id = document["key_id"]
    if not isinstance(key_id, str):
        raise _malformed(f"key_id {_shown(key_id)} is not a string")
    try:
        _check_key_id(key_id, "key_id")
    except SignatureError as exc:
        raise _malformed(exc.message) from None
    encoded = document["signature"]
    try:
        if not isinstance(encoded, str):
            raise ValueError
        signature = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):  # non-ASCII text is a UnicodeEncodeError, a ValueError
        raise _malformed("signature is not base64 text") from None
    if len(signature) != 64:
        raise _malformed(f"signature is {len(signature)} bytes; an Ed25519 signature is 64")
    return Signature(document["digest"], key_id, document["key_fingerprint"], signature)


def _check_key_id(key_id: str, field: str) -> str:
    if not key_id or len(key_id) > MAX_KEY_ID_CHARS or not key_id.isprintable():
        raise SignatureError(
            f"{field} {_shown(key_id)} must be 1 to {MAX_KEY_ID_CHARS} printable characters",
            reason="malformed",
            field=field,
        )
    return key_id


def _shown(value: object) -> str:
    text = repr(value)
    return text[:60] + "…" if len(text) > 60 else text


def _malformed(problem: str) -> SignatureError:
    return SignatureError(
        f"{SIGNATURE_FILE} {problem}; {_RESIGN}", reason="malformed", field=SIGNATURE_FILE
    )
