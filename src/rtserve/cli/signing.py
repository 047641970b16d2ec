"""Signing commands: ``keygen`` (an Ed25519 key pair) and ``sign`` (a bundle's ``rtserve.sig``).

Verification is ``rtserve verify BUNDLE --trusted-key PUB.pem --require-signature`` (in
``bundle_commands``); the format and the rules are in ``rtserve.bundle.signature``. The
``cryptography`` library is imported inside the commands, so that ``rtserve --help`` stays fast.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.options import JsonFlag
from rtserve.cli.output import print_json, print_note, print_warning, stdout

#: File name stem of the key pair ``rtserve keygen`` writes when no ``--name`` is given.
DEFAULT_KEY_NAME = "rtserve-signing"

TrustedKeys = Annotated[
    list[Path] | None,
    typer.Option(
        "--trusted-key",
        metavar="PUB.pem",
        dir_okay=False,
        help="A public key (PEM) whose bundle signatures are accepted; repeat for several. A "
        "signature that is present must verify with one of them.",
        show_default=False,
    ),
]
RequireSignature = Annotated[
    bool,
    typer.Option(
        "--require-signature",
        help="Refuse a bundle unless it is signed over its digest by one of the --trusted-key keys.",
    ),
]


def keygen(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the two key files (created, mode 0700).", show_default=False
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="File name stem: NAME.pem and NAME.pub.pem.")
    ] = DEFAULT_KEY_NAME,
    json_output: JsonFlag = False,
) -> None:
    """Write a new Ed25519 signing key (NAME.pem, mode 0600) and its public key (NAME.pub.pem).

    Keep NAME.pem where bundles are built and signed; give NAME.pub.pem to every server and to
    `rtserve verify --trusted-key`. Existing files are never overwritten. `openssl genpkey
    -algorithm ed25519 -out NAME.pem` makes an equivalent private key.

    Example:

        rtserve keygen --out ~/.rtserve/keys
    """
    from rtserve.bundle.signature import fingerprint, generate_key_pair, load_private_key

    if not name or "/" in name or name.startswith("."):
        raise typer.BadParameter(f"{name!r} is not a plain file name stem", param_hint="--name")
    private_path, public_path = generate_key_pair(out, name)
    key_fingerprint = fingerprint(load_private_key(private_path).public_key())
    if json_output:
        print_json(
            {
                "private_key": str(private_path),
                "public_key": str(public_path),
                "key_fingerprint": key_fingerprint,
            }
        )
        return
    console = stdout()
    console.print(f"private key  {private_path} (mode 0600: keep it secret)", soft_wrap=True)
    console.print(f"public key   {public_path} (give it to servers: --trusted-key)", soft_wrap=True)
    console.print(f"fingerprint  {key_fingerprint}", soft_wrap=True)


def sign(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory or .tar.gz to sign.", show_default=False)
    ],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            metavar="KEY.pem",
            dir_okay=False,
            help="Ed25519 private key (PEM), e.g. from `rtserve keygen`.",
            show_default=False,
        ),
    ],
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id",
            metavar="ID",
            help="A label for the key, shown by inspect and in refusals (default: ed25519: and "
            "16 hex of its fingerprint). Keys are matched by fingerprint, never by this label.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Sign a bundle's digest with an Ed25519 key, writing rtserve.sig beside rtserve.yaml.

    Every hash is checked first, so a modified bundle is never signed. The digest covers the
    manifest and every file, so the signature covers the whole bundle; an archive is rewritten
    with the signature inside. Signing again (after `rtserve reseal`, or with a new key)
    replaces the old signature.

    Example:

        rtserve sign bundles/fraud-1 --key ~/.rtserve/keys/rtserve-signing.pem
    """
    from rtserve.bundle.signature import SIGNATURE_FILE, load_private_key
    from rtserve.bundle.signer import sign_bundle

    private_key = load_private_key(key)
    _warn_if_readable_by_others(key)
    signature = sign_bundle(bundle, private_key, key_id=key_id)
    if json_output:
        print_json(
            {
                "path": str(bundle),
                "digest": signature.digest,
                "key_id": signature.key_id,
                "key_fingerprint": signature.key_fingerprint,
            }
        )
        return
    where = bundle if bundle.is_file() else bundle / SIGNATURE_FILE
    console = stdout()
    console.print(f"[bold green]signed[/] {signature.digest}", soft_wrap=True)
    console.print(f"key          {signature.key_id} ({signature.key_fingerprint})", soft_wrap=True)
    print_note(f"wrote {where}")


def signature_line(description: dict[str, object]) -> str:
    """One line for ``inspect``/``verify`` from ``rtserve.bundle.signature.describe_signature``."""
    if not description.get("signed"):
        return "unsigned"
    if "key_id" not in description:
        return f"unreadable: {description.get('error')}"
    who = f"key {description['key_id']} ({description['key_fingerprint']})"
    valid = description.get("valid")
    if valid is True:
        return f"verified, {who}"
    if valid is False:
        return f"INVALID ({description.get('reason')}), {who}"
    if not description.get("matches_digest"):
        return f"signed by {who} for another digest (the bundle changed after signing); not checked"
    return f"signed by {who}; not checked (pass --trusted-key to verify it)"


def _warn_if_readable_by_others(key: Path) -> None:
    """A private key others can read is as good as published; say so (ssh refuses outright)."""
    try:
        mode = key.stat().st_mode
    except OSError:  # pragma: no cover - it was just read
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print_warning(
            f"{key} can be read by other users (mode {stat.S_IMODE(mode):o}); anyone who can "
            f"read it can sign bundles your servers trust: chmod 600 {key}"
        )


def register(app: typer.Typer) -> None:
    """Add ``keygen`` and ``sign`` to the root command."""
    app.command("keygen")(keygen)
    app.command("sign")(sign)
