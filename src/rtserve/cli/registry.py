"""``rtserve registry ...``: push, list, show, promote, approve, reject, rollback, archive, audit.

Who is acting: with ``--config FILE`` whose ``auth`` is enabled, the caller is authenticated the
way the server does it (``--api-key`` / ``RTSERVE_REGISTRY_API_KEY`` or ``--token`` /
``RTSERVE_REGISTRY_TOKEN``) and acts as ``key:<name>`` or ``jwt:<sub>``. Without authentication
the actor is ``--actor`` (or ``user:<login name>``), trusted as given: anyone who can write the
registry database can do the same from Python, and the audit chain records who they said they
were. The registry package is imported inside each command, so ``rtserve --help`` stays fast.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rtserve.cli.output import print_json, print_note
from rtserve.errors import RegistryInputError

if TYPE_CHECKING:
    from rtserve.registry import Registry

app = typer.Typer(
    name="registry",
    help="The model registry: versions, stages, approvals and the audit log.",
    no_args_is_help=True,
)
alias_app = typer.Typer(
    name="alias", help="Free aliases (champion, challenger ...).", no_args_is_help=True
)
app.add_typer(alias_app)


#: Arguments most registry commands take, declared once.
ModelName = Annotated[str, typer.Argument(help="Model name.")]
VersionLabel = Annotated[str, typer.Argument(help="Version label.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]


@dataclass
class RegistryContext:
    """Where the registry is and who acts, from the group's options (``rtserve rollout`` too)."""

    directory: Path | None
    url: str | None
    store: str | None
    config: Path | None
    api_key: str | None
    token: str | None
    actor: str | None
    json: bool
    trusted_keys: list[Path]

    def open(self) -> Registry:
        """The registry the options name (migrated on open)."""
        from rtserve.registry import Registry

        if self.directory is None and self.url is None:
            raise RegistryInputError(
                "no registry given: pass --registry DIR (SQLite and artifacts in DIR), or "
                "--registry-url URL with --store URL (or set RTSERVE_REGISTRY)",
                field="registry",
            )
        from rtserve.bundle.signature import load_public_keys

        return Registry.open(
            self.directory,
            url=self.url,
            store=self.store,
            trusted_keys=load_public_keys(self.trusted_keys),
        )

    def who(self) -> str:
        """The acting principal: authenticated when the config's auth is on, else as claimed."""
        if self.config is not None:
            from rtserve.guard.auth import Authenticator
            from rtserve.settings import Settings

            auth = Settings.load(self.config).auth
            if auth.enabled:
                headers: dict[str, str] = {}
                if self.api_key:
                    headers["x-api-key"] = self.api_key
                elif self.token:
                    headers["authorization"] = f"Bearer {self.token}"
                identity = Authenticator.from_settings(auth).authenticate(headers).identity
                if self.actor is not None and self.actor != identity:
                    raise RegistryInputError(
                        f"--actor {self.actor!r} differs from the authenticated {identity!r}; "
                        "with authentication on, the credentials say who acts: drop --actor",
                        field="actor",
                    )
                return identity
        if self.api_key or self.token:
            raise RegistryInputError(
                "credentials were given but no --config with auth enabled to check them; pass "
                "the server's config file (its auth section) with --config",
                field="config",
            )
        return self.actor or f"user:{getpass.getuser()}"


def registry_context(ctx: typer.Context) -> RegistryContext:
    """The ``RegistryContext`` the group's options left on the click context."""
    found: RegistryContext = ctx.find_object(RegistryContext)  # type: ignore[assignment]
    return found


@app.callback()
def registry_options(
    ctx: typer.Context,
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            envvar="RTSERVE_REGISTRY",
            help="Registry directory (registry.db and artifacts/ inside).",
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry-url",
            envvar="RTSERVE_REGISTRY_URL",
            help="Database URL: sqlite:///PATH or postgresql://USER@HOST/DB.",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="RTSERVE_REGISTRY_STORE",
            help="Artifact store: a directory or an fsspec URL (with --registry-url).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="RTSERVE_CONFIG",
            help="The server's config file; its auth section authenticates you.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="RTSERVE_REGISTRY_API_KEY", help="Your API key."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="RTSERVE_REGISTRY_TOKEN", help="Your JWT bearer token."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            envvar="RTSERVE_REGISTRY_ACTOR",
            help="Who acts when auth is off (e.g. key:alice); trusted as given.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON documents.")] = False,
    trusted_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--trusted-key",
            help="A public key (PEM) production versions may be signed by, for models whose "
            "policy requires a signature (repeatable).",
        ),
    ] = None,
) -> None:
    """The model registry: versions, stages, approvals and the audit log."""
    ctx.obj = RegistryContext(
        registry, registry_url, store, config, api_key, token, actor, as_json, trusted_key or []
    )


def emit(ctx: RegistryContext, document: Any, line: str) -> None:
    """``document`` as JSON with ``--json``, else the readable ``line``."""
    if ctx.json:
        print_json(document)
    else:
        typer.echo(line)


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the registry and make you its first admin."""
    c = registry_context(ctx)
    actor = c.who()
    reg = c.open()
    reg.init(actor)
    emit(c, {"admin": actor}, f"registry ready; {actor} is admin")


@app.command("grant")
def grant(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="key:<name> or jwt:<sub>.")],
    role: Annotated[str, typer.Argument(help="viewer, maintainer, approver or admin.")],
    reason: Reason = "",
) -> None:
    """Give a principal a registry role (admin only)."""
    c = registry_context(ctx)
    c.open().grant(c.who(), principal, role, reason=reason)
    emit(c, {"principal": principal, "role": role}, f"{principal} is {role}")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(help="key:<name> or jwt:<sub>.")],
    role: Annotated[str, typer.Argument(help="The role to take away.")],
    reason: Reason = "",
) -> None:
    """Take a registry role from a principal (admin only)."""
    c = registry_context(ctx)
    c.open().revoke(c.who(), principal, role, reason=reason)
    emit(c, {"principal": principal, "revoked": role}, f"{principal} is no longer {role}")


@app.command("push")
def push(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="A bundle directory or .tar.gz.")],
    owner: Annotated[str, typer.Option("--owner", help="Model card: the owning team.")] = "",
    intended_use: Annotated[str, typer.Option("--intended-use", help="Model card.")] = "",
    training_data: Annotated[
        str, typer.Option("--training-data", help="Model card: training data reference.")
    ] = "",
    limitations: Annotated[str, typer.Option("--limitations", help="Model card.")] = "",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="True labels of the validation rows (JSON list, or one "
            "per line) for accuracy/AUC or RMSE on the card.",
        ),
    ] = None,
    reason: Reason = "",
) -> None:
    """Store a verified bundle as NAME@VERSION (from its manifest); the same bundle is a no-op."""
    c = registry_context(ctx)
    found = c.open().push(
        bundle, c.who(), owner=owner, intended_use=intended_use, training_data=training_data,
        limitations=limitations, labels=_read_labels(labels) if labels else None, reason=reason,
    )  # fmt: skip
    emit(c, found.to_dict(), f"{found.ref} {found.digest}")


def _read_labels(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise RegistryInputError(f"{path}: labels must be a JSON list", field="labels")
        return data
    return [line.strip() for line in text.splitlines() if line.strip()]


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Every model: versions, newest version, stages and aliases."""
    c = registry_context(ctx)
    reg = c.open()
    models = reg.models()
    if c.json:
        print_json([m.to_dict() for m in models])
        return
    for m in models:
        stages = " ".join(f"{k}={v or '-'}" for k, v in {**m.stages, **m.aliases}.items())
        typer.echo(f"{m.name}  versions={m.versions} latest={m.latest or '-'}  {stages}")


@app.command("show")
def show(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="NAME, or NAME@VERSION|@STAGE|@ALIAS.")],
) -> None:
    """A model or version: card, stages and aliases, requests and approvals, history."""
    from rtserve.registry.registry import check_spec

    c = registry_context(ctx)
    check_spec(spec)
    document = c.open().show(spec)
    if c.json:
        print_json(document)
        return
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


@app.command("requests")
def list_requests(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, approved or rejected.")
    ] = None,
) -> None:
    """Promotion requests and their approvals."""
    c = registry_context(ctx)
    found = c.open().requests(name, status=status)
    if c.json:
        print_json([r.to_dict() for r in found])
        return
    for r in found:
        got = sum(a.decision == "approve" for a in r.approvals)
        typer.echo(f"{r.id}  {r.name}@{r.version} -> {r.stage}  {r.status}  "
                   f"approvals {got}/{r.required}  requested by {r.requester}")  # fmt: skip


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: ModelName,
    version: VersionLabel,
    to: Annotated[str, typer.Option("--to", help="staging or production.")],
    reason: Reason = "",
) -> None:
    """Move a stage to a version; production opens a request that others approve."""
    from rtserve.registry import PromotionRequest

    c = registry_context(ctx)
    result = c.open().promote(name, version, to=to, actor=c.who(), reason=reason)
    if isinstance(result, PromotionRequest):
        emit(c, result.to_dict(), f"request {result.id}: {name}@{version} -> {to} pending "
              f"({result.required} approval(s) needed)")  # fmt: skip
    else:
        emit(c, result.to_dict(), f"{name}@{to} -> {version} (generation {result.generation})")


@app.command("approve")
def approve(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The request number.")],
    comment: Annotated[str, typer.Option("--comment", help="Why you approve (required).")],
    evidence: Annotated[
        str, typer.Option("--evidence", help="What you looked at (a report's digest, a URL).")
    ] = "",
) -> None:
    """Approve a promotion request (not your own)."""
    c = registry_context(ctx)
    r = c.open().approve(request_id, actor=c.who(), comment=comment, evidence=evidence)
    emit(c, r.to_dict(), f"request {r.id}: {r.status}"
          + (f"; {r.name}@{r.stage} -> {r.version}" if r.status == "approved" else ""))  # fmt: skip


@app.command("reject")
def reject(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The request number.")],
    comment: Annotated[str, typer.Option("--comment", help="Why you reject (required).")],
    evidence: Annotated[str, typer.Option("--evidence", help="What you looked at.")] = "",
) -> None:
    """Reject a promotion request; the stage does not move."""
    c = registry_context(ctx)
    r = c.open().reject(request_id, actor=c.who(), comment=comment, evidence=evidence)
    emit(c, r.to_dict(), f"request {r.id}: {r.status}")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: ModelName,
    stage: Annotated[str, typer.Option("--stage", help="The stage to move back.")] = "production",
    reason: Reason = "",
) -> None:
    """Move a stage back to the version it held before the current one."""
    c = registry_context(ctx)
    p = c.open().rollback(name, stage=stage, actor=c.who(), reason=reason)
    emit(c, p.to_dict(), f"{name}@{stage} -> {p.version} (generation {p.generation})")


@app.command("archive")
def archive(
    ctx: typer.Context,
    name: ModelName,
    version: VersionLabel,
    reason: Reason = "",
) -> None:
    """Archive a version: no more promotions; staging and aliases leave it."""
    c = registry_context(ctx)
    v = c.open().archive(name, version, actor=c.who(), reason=reason)
    emit(c, v.to_dict(), f"{v.ref} archived")


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: ModelName,
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: VersionLabel,
    reason: Reason = "",
) -> None:
    """Point an alias at a version."""
    c = registry_context(ctx)
    p = c.open().set_alias(name, alias, version, actor=c.who(), reason=reason)
    emit(c, p.to_dict(), f"{name}@{alias} -> {version}")


@alias_app.command("remove")
def alias_remove(
    ctx: typer.Context,
    name: ModelName,
    alias: Annotated[str, typer.Argument(help="Alias.")],
    reason: Reason = "",
) -> None:
    """Clear an alias."""
    c = registry_context(ctx)
    p = c.open().remove_alias(name, alias, actor=c.who(), reason=reason)
    emit(c, p.to_dict(), f"{name}@{alias} cleared")


@app.command("policy")
def policy(
    ctx: typer.Context,
    name: ModelName,
    approvals: Annotated[
        int | None, typer.Option("--approvals", help="Approvals a production promotion needs.")
    ] = None,
    approver_roles: Annotated[
        list[str] | None, typer.Option("--approver-role", help="A role that may approve (repeat).")
    ] = None,
    approvers: Annotated[
        list[str] | None,
        typer.Option("--approver", help="Only these principals may approve (repeat)."),
    ] = None,
    require_signature: Annotated[
        bool | None,
        typer.Option(
            "--require-signature/--no-require-signature", help="Production versions must be signed."
        ),
    ] = None,
    reason: Reason = "",
) -> None:
    """Show a model's promotion policy, or change it (admin only) with the options."""
    from dataclasses import replace

    c = registry_context(ctx)
    reg = c.open()
    current = reg.policy(name)
    changes: dict[str, Any] = {}
    if approvals is not None:
        changes["required_approvals"] = approvals
    if approver_roles:
        changes["approver_roles"] = tuple(approver_roles)
    if approvers:
        changes["approvers"] = tuple(approvers)
    if require_signature is not None:
        changes["require_signature"] = require_signature
    if changes:
        current = reg.set_policy(c.who(), name, replace(current, **changes), reason=reason)
    emit(c, current.to_dict(), json.dumps(current.to_dict()))


@app.command("audit")
def audit(
    ctx: typer.Context,
    subject: Annotated[str | None, typer.Argument(help="Only NAME or NAME@VERSION.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain.")] = False,
    expect_head: Annotated[
        str | None, typer.Option("--expect-head", help="With --verify: the head hash you kept.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many entries.")] = None,
) -> None:
    """The audit log; with --verify, check that no entry was edited, deleted or reordered."""
    c = registry_context(ctx)
    reg = c.open()
    if verify:
        report = reg.check_audit(expect_head=expect_head)
        emit(c, report.to_dict(), f"audit chain ok: {report.entries} entries, head "
              f"{report.head_seq} {report.head_hash}")  # fmt: skip
        return
    entries = reg.audit(subject=subject, limit=limit)
    if c.json:
        print_json([e.to_dict() for e in entries])
        return
    for e in entries:
        change = f"{json.dumps(e.before)} -> {json.dumps(e.after)}"
        typer.echo(f"{e.seq:>5} {e.at} {e.actor} {e.action} {e.subject} {change}"
                   + (f"  # {e.reason}" if e.reason else ""))  # fmt: skip
    if not entries:
        print_note("no audit entries")


def register(target: typer.Typer) -> None:
    """Add the ``registry`` command group to the CLI."""
    target.add_typer(app)
