"""``rtserve rollout ...``: start, status, pause, resume, abort and check the rollouts the registry
stores (a canary walked up in steps, a sticky A/B split, shadows, the promotion gate).

The group takes the same options as ``rtserve registry`` (where the registry is, who acts, and
``--json``), shared from ``rtserve.cli.registry``. Specs, the registry and HTTP are imported
inside each command, so that ``rtserve --help`` stays fast. ``docs/rollout.md`` walks through a
canary from start to promotion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from rtserve.cli.options import span_seconds
from rtserve.cli.output import print_json, print_note
from rtserve.cli.registry import ModelName, Reason, emit, registry_context, registry_options
from rtserve.errors import RolloutError, RolloutSpecError

if TYPE_CHECKING:
    from rtserve.registry import AuditEntry, Registry, RolloutRecord
    from rtserve.rollout.spec import RolloutSpec

#: Seconds to wait for a server's ``GET /v1/models/{name}/rollout``.
SERVER_TIMEOUT_S = 10.0

app = typer.Typer(name="rollout", no_args_is_help=True)
app.callback(
    help="Rollouts stored in the registry: a canary walked up in steps, a sticky A/B split, "
    "shadows, and the promotion gate that steps, rolls back or promotes. Takes the same "
    "registry options as `rtserve registry`."
)(registry_options)


@app.command("start")
def start(
    ctx: typer.Context,
    name: ModelName,
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="A rollout spec (YAML); model and production may be left out."),
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary", help="The candidate version (a canary).")
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option("--weight", help="The canary's percent of requests [default: 5]."),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Canary weights to walk up, e.g. 5,25,50,100."),
    ] = None,
    dwell: Annotated[
        str | None,
        typer.Option("--dwell", help="Time the gate must pass at each step: 600, 10m, 1h."),
    ] = None,
    production: Annotated[
        str | None,
        typer.Option(
            "--production", help="The production version [default: where the stage points]."
        ),
    ] = None,
    ab_key: Annotated[
        str | None,
        typer.Option("--ab-key", help="A/B: the record field, or header:NAME, that keys it."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="A/B: version=percent pairs adding up to 100, e.g. 3=50,4=50."
        ),
    ] = None,
    shadows: Annotated[
        list[str] | None,
        typer.Option("--shadow", help="A version that gets a copy of each request (repeat)."),
    ] = None,
    segments: Annotated[
        str | None,
        typer.Option("--segments", help="Fields that split the shadow comparison, e.g. a,b."),
    ] = None,
    gate_file: Annotated[
        Path | None,
        typer.Option("--gate", help="The promotion gate's thresholds (YAML)."),
    ] = None,
    reason: Reason = "",
) -> None:
    """Start a rollout of NAME: from --spec FILE, or from --canary / --ab-key and --split /
    --shadow. Needs the registry role maintainer.

    Example: rtserve rollout start fraud --canary 4 --steps 5,25,50,100 --dwell 10m
    """
    c = registry_context(ctx)
    actor = c.who()
    reg = c.open()
    given = {
        "--canary": canary, "--weight": weight, "--steps": steps, "--dwell": dwell,
        "--ab-key": ab_key, "--split": split, "--shadow": shadows, "--segments": segments,
        "--gate": gate_file,
    }  # fmt: skip
    if spec_file is not None:
        mixed = [option for option, value in given.items() if value not in (None, [])]
        if mixed:
            raise RolloutSpecError(
                f"--spec gives the whole rollout; drop {', '.join(mixed)} or write them into "
                f"{spec_file}",
                field="spec",
            )
        data = _spec_mapping(_read_yaml(spec_file, "rollout spec"), spec_file, name)
    else:
        data = _options_mapping(
            canary, weight, steps, dwell, ab_key, split, shadows, segments, gate_file
        )
    if production is not None:
        data["production"] = production
    if "production" not in data:
        data["production"] = _production_stage(reg, name)
    spec = _parse(data, name)
    record = reg.start_rollout(spec, actor=actor, reason=reason)
    emit(c, record.to_dict(), f"{name}: rollout started: {_summary(record)}")


@app.command("status")
def status(
    ctx: typer.Context,
    name: ModelName,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", help="Also show a server's live figures, e.g. http://127.0.0.1:8080."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="RTSERVE_API_KEY",
            help="The API key the server asks for (with --server) [default: the registry "
            "group's --api-key].",
        ),
    ] = None,
) -> None:
    """The stored spec and state, every decision with its figures, and with --server the live
    figures of a server applying it (GET /v1/models/NAME/rollout)."""
    from rtserve.registry import ROLLOUT_ACTIONS

    c = registry_context(ctx)
    reg = c.open()
    record = reg.rollout(name)
    history = [e for e in reg.audit(subject=name) if e.action in ROLLOUT_ACTIONS]
    live = None if server is None else _live(server, name, api_key or c.api_key)
    if c.json:
        document: dict[str, Any] = {
            "name": name,
            "rollout": None if record is None else record.to_dict(),
            "history": [e.to_dict() for e in history],
        }
        if server is not None:
            document["live"] = live
        print_json(document)
        return
    if record is None:
        print_note(f"{name} has no rollout; start one with `rtserve rollout start {name} ...`")
    else:
        _print_record(record)
    if history:
        typer.echo("history:")
        for entry in history:
            _print_decision(entry)
    if live is not None:
        typer.echo(f"live on {server}:")
        typer.echo(json.dumps(live, indent=2, ensure_ascii=False))


def _change(ctx: typer.Context, name: str, change: str, reason: str) -> None:
    c = registry_context(ctx)
    actor = c.who()
    record = c.open().set_rollout_status(name, change, actor=actor, reason=reason)
    emit(c, record.to_dict(), f"{name}: {_summary(record)}")


@app.command("pause")
def pause(ctx: typer.Context, name: ModelName, reason: Reason = "") -> None:
    """Hold a running rollout where it is: the canary keeps its weight, the gate stops stepping."""
    _change(ctx, name, "pause", reason)


@app.command("resume")
def resume(ctx: typer.Context, name: ModelName, reason: Reason = "") -> None:
    """Let a paused rollout run again; the dwell at its step starts over."""
    _change(ctx, name, "resume", reason)


@app.command("abort")
def abort(ctx: typer.Context, name: ModelName, reason: Reason = "") -> None:
    """End a rollout now: the canary gets 0%, production answers everything."""
    _change(ctx, name, "abort", reason)


@app.command("check")
def check(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(help="A rollout spec (YAML), or rollouts: [...].")],
) -> None:
    """Validate a spec file without a registry: exit 0, or 1 with the error naming the key."""
    c = registry_context(ctx)
    document = _read_yaml(spec_file, "rollout spec")
    items = document.get("rollouts") if isinstance(document, dict) else None
    if not isinstance(items, list):
        items = [document]
    specs = [_parse(item, None, where=f"{spec_file}: ") for item in items]
    names = [s.model for s in specs]
    if len(set(names)) != len(names):
        raise RolloutSpecError(f"{spec_file} gives a model twice: {sorted(names)}", field="model")
    if c.json:
        print_json([s.model_dump(mode="json") for s in specs])
        return
    for spec in specs:
        typer.echo(f"{spec_file}: {spec.model}: ok: {_describe_spec(spec)}")


# --- building a spec ---------------------------------------------------------------------------


def _read_yaml(path: Path, what: str) -> Any:
    from rtserve.rollout.spec import read_yaml

    return read_yaml(path, what)


def _spec_mapping(document: Any, path: Path, name: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise RolloutSpecError(
            f"rollout spec {path} must be a mapping (production:, canary: ...), not "
            f"{type(document).__name__}",
            field="spec",
        )
    model = document.get("model", name)
    if model != name:
        raise RolloutSpecError(
            f"rollout spec {path} is for model {model!r}, not {name!r}: fix model: or the NAME",
            field="model",
        )
    return {k: v for k, v in document.items() if k != "model"}


def _options_mapping(
    canary: str | None, weight: float | None, steps: str | None, dwell: str | None,
    ab_key: str | None, split: str | None, shadows: list[str] | None, segments: str | None,
    gate_file: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """The spec the options describe (validated afterwards, as a file would be)."""
    if canary is None and (weight is not None or steps is not None or dwell is not None):
        raise RolloutSpecError(
            "--weight, --steps and --dwell shape a canary: give --canary VERSION too",
            field="canary",
        )
    if canary is None and ab_key is None and split is None and not shadows:
        raise RolloutSpecError(
            "say what to roll out: --spec FILE, --canary VERSION, --ab-key KEY --split "
            "V1=50,V2=50, or --shadow VERSION",
            field="canary",
        )
    data: dict[str, Any] = {}
    if canary is not None:
        data["canary"] = {"version": canary} | ({} if weight is None else {"weight": weight})
    if steps is not None:
        data["steps"] = [_number(part, "--steps", steps) for part in _parts(steps)]
        if weight is not None and data["steps"][:1] != [weight]:
            raise RolloutSpecError(
                f"--weight {weight:g} and --steps {steps}: with steps the canary starts at the "
                "first step; drop --weight or make it the first step",
                field="canary.weight",
            )
    if dwell is not None:
        seconds = span_seconds(dwell)
        if seconds is None:
            raise RolloutSpecError(
                f"--dwell {dwell!r} is not a duration: give seconds (600) or 30s, 10m, 1h, 1d",
                field="dwell_s",
            )
        data["dwell_s"] = seconds
    if (ab_key is None) != (split is None):
        raise RolloutSpecError(
            "an A/B split needs both --ab-key (a field, or header:NAME) and --split "
            "(version=percent pairs, e.g. 3=50,4=50)",
            field="ab",
        )
    if ab_key is not None and split is not None:
        data["ab"] = {"key": ab_key, "split": _split(split)}
    if shadows:
        data["shadows"] = shadows
    if segments is not None:
        data["segments"] = _parts(segments)
    if gate_file is not None:
        gate = _read_yaml(gate_file, "gate file")
        if isinstance(gate, dict) and set(gate) == {"gate"}:
            gate = gate["gate"]
        data["gate"] = gate
    return data


def _parts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _number(text: str, option: str, whole: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RolloutSpecError(
            f"{option} {whole!r}: {text!r} is not a number; give percentages separated by "
            "commas, e.g. 5,25,50,100",
            field=option.removeprefix("--"),
        ) from None


def _split(text: str) -> dict[str, float]:
    shares: dict[str, float] = {}
    for part in _parts(text):
        version, sep, share = part.partition("=")
        if not sep or not version.strip():
            raise RolloutSpecError(
                f"--split {text!r}: {part!r} is not VERSION=PERCENT (e.g. 3=50,4=50)",
                field="ab.split",
            )
        if version.strip() in shares:
            raise RolloutSpecError(
                f"--split {text!r} names version {version.strip()!r} twice", field="ab.split"
            )
        shares[version.strip()] = _number(share.strip(), "--split", text)
    return shares


def _production_stage(reg: Registry, name: str) -> str:
    version = reg.pointer(name, "production").version
    if version is None:
        raise RolloutSpecError(
            f"{name} has no production version to roll out against: promote one "
            f"(`rtserve registry promote {name} VERSION --to production`), or name it with "
            "--production VERSION (or production: in the spec)",
            field="production",
        )
    return version


def _parse(data: Any, name: str | None, *, where: str = "") -> RolloutSpec:
    from rtserve.rollout.spec import parse_spec

    try:
        return parse_spec(data, model=name)
    except RolloutSpecError as exc:
        if not where:
            raise
        raise RolloutSpecError(f"{where}{exc.message}", field=exc.field) from None


# --- showing a rollout --------------------------------------------------------------------------


def _describe_spec(spec: RolloutSpec) -> str:
    parts = [f"production {spec.production}"]
    if spec.canary is not None:
        parts.append(f"canary {spec.canary.version} at {spec.start_weight:g}%")
    if spec.steps:
        parts.append(f"steps {', '.join(f'{s:g}' for s in spec.steps)} every {spec.dwell_s:g} s")
    if spec.ab is not None:
        arms = ", ".join(f"{v}={share:g}%" for v, share in spec.ab.split.items())
        parts.append(f"A/B on {spec.ab.key}: {arms}")
    if spec.shadows:
        parts.append(f"shadows {', '.join(spec.shadows)}")
    if spec.segments:
        parts.append(f"segments {', '.join(spec.segments)}")
    return "; ".join(parts)


def _summary(record: RolloutRecord) -> str:
    state = record.state
    where = f" at {state.weight:g}%" if record.spec.canary is not None else ""
    return f"{state.status}{where} (generation {state.generation}); {_describe_spec(record.spec)}"


def _print_record(record: RolloutRecord) -> None:
    from datetime import UTC, datetime

    state = record.state
    since = datetime.fromtimestamp(state.since, UTC).isoformat(timespec="seconds")
    typer.echo(f"{record.name}: {_summary(record)}")
    typer.echo(f"  since {since}: {state.reason or '-'}")
    typer.echo(f"  started by {record.started_by} at {record.started_at}; last changed by "
               f"{record.updated_by} at {record.updated_at}")  # fmt: skip
    gate = record.spec.gate.model_dump(exclude_none=True)
    typer.echo(f"  gate: {json.dumps(gate)}; on a break: {record.spec.on_break}")


def _print_decision(entry: AuditEntry) -> None:
    after = entry.after if isinstance(entry.after, dict) else {}
    state = after.get("state") or {}
    weight = state.get("weight")
    shown = f"{state.get('status', '?')}" + (
        f" {weight:g}%" if isinstance(weight, float | int) else ""
    )
    typer.echo(f"  {entry.seq:>5} {entry.at} {entry.actor} {entry.action}: {shown}"
               + (f"  # {entry.reason}" if entry.reason else ""))  # fmt: skip
    if after.get("figures"):
        typer.echo(f"        figures: {json.dumps(after['figures'], ensure_ascii=False)}")


def _live(server: str, name: str, api_key: str | None) -> Any:
    """The server's ``GET /v1/models/{name}/rollout`` document, or one clear error."""
    import httpx

    url = f"{server.rstrip('/')}/v1/models/{quote(name, safe='')}/rollout"
    headers = {"accept": "application/json"} | ({"x-api-key": api_key} if api_key else {})
    try:
        response = httpx.get(url, headers=headers, timeout=SERVER_TIMEOUT_S)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise RolloutError(
            f"cannot read {url}: {type(exc).__name__}: {str(exc) or 'no answer'}; check --server "
            "(e.g. http://127.0.0.1:8080) and that the server runs",
            field="server",
        ) from None
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.status_code != 200:
        said = document.get("error") if isinstance(document, dict) else response.text[:200]
        hint = ""
        if response.status_code in (401, 403):
            hint = "; pass the API key of a caller with the read role: --api-key or RTSERVE_API_KEY"
        raise RolloutError(f"{url} answered {response.status_code}: {said}{hint}", field="server")
    if not isinstance(document, dict):
        raise RolloutError(f"{url} did not answer a JSON object; is it an rtserve server?",
                           field="server")  # fmt: skip
    return document


def register(target: typer.Typer) -> None:
    """Add the ``rollout`` command group to the CLI."""
    target.add_typer(app)
