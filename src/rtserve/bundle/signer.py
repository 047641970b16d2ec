"""Sign a bundle on disk: verify it, then write its ``rtserve.sig`` (see ``signature``).

Kept apart from ``signature`` because signing opens and repacks bundles, while ``bundle`` (which
opens them) calls ``signature`` to check them: one module each way keeps the package acyclic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rtserve.bundle.archive import is_archive, pack
from rtserve.bundle.bundle import Bundle
from rtserve.bundle.signature import Signature, sign_digest, write_signature

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def sign_bundle(
    source: str | Path, private_key: Ed25519PrivateKey, *, key_id: str | None = None
) -> Signature:
    """Verify a bundle (directory or ``.tar.gz``), then write its ``rtserve.sig`` in place.

    Every hash is checked first: a bundle that changed since it was built is never signed. An
    archive is rewritten whole with the signature added (written beside it, then renamed). A
    signature already there is replaced: re-signing after ``rtserve reseal`` or a key rotation.

    Raises:
        IntegrityError: the bundle changed after it was built (it is not signed).
        SignatureError: ``key_id`` is not 1 to 128 printable characters.
    """
    path = Path(source)
    bundle = Bundle.open(path)
    signature = sign_digest(bundle.digest, private_key, key_id=key_id)
    write_signature(bundle.path, signature)
    if is_archive(path):
        pack(bundle.path, path)
    return signature
