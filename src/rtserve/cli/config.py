"""``rtserve config show`` and ``rtserve config check``: the effective settings, and a config file's.

``show`` prints every setting with its value and where it came from (``default``, ``file``, ``env``
or ``flag``), secrets masked; ``check FILE`` validates a config file on its own (no environment) and
exits 1 with one ``error: <key path>: ...`` line when a value breaks its rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from rtserve.cli.output import print_json, print_note

if TYPE_CHECKING:
    from rtserve.settings import Settings

MASK = "**********"

config_app = typer.Typer(
    name="config",
    help="Show the effective settings and where each came from; check a config file.",
    no_args_is_help=True,
)


@config_app.command("show")
def show(
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file (RTSERVE_* variables override it).")
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A setting as a flag would give it, e.g. --set server.port=9000 (repeatable).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: {path: {value, source}}.")
    ] = False,
) -> None:
    """Print every setting's effective value and its source: default, file, env or flag.

    Secrets (the JWT secret, passwords in URLs) are masked. Example:
    RTSERVE_SERVER__PORT=9000 rtserve config show --config rtserve.yml
    """
    from rtserve.settings import Settings

    settings, sources = Settings.resolve(config, _parse_set(assignments or []))
    rows = {
        path: {"value": _masked(_value(settings, path)), "source": sources[path]}
        for path in Settings.leaves()
    }
    if as_json:
        print_json(rows)
        return
    width = max(len(path) for path in rows)
    for path, row in rows.items():
        typer.echo(f"{path:<{width}}  {_render(row['value'])}  ({row['source']})")


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The YAML settings file to validate.")],
) -> None:
    """Validate a config file on its own (environment ignored); exit 0 when it is valid.

    A value that breaks its rule exits 1 with one line naming its key path, e.g.
    `error: limits.max_body_bytes: 12 (from the config file) is invalid: ...`.
    """
    from rtserve.settings import Settings

    _, sources = Settings.resolve(file, read_env=False)
    given = sum(1 for source in sources.values() if source == "file")
    print_note(f"{file}: valid ({given} setting(s) set, the rest default)")


def _parse_set(assignments: list[str]) -> dict[str, Any]:
    """``["server.port=9000"]`` -> ``{"server__port": 9000}``: YAML scalars, like the file."""
    import yaml

    flags: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(
                f"{assignment!r} is not PATH=VALUE (e.g. server.port=9000)", param_hint="--set"
            )
        try:
            flags[key.strip().replace(".", "__")] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(
                f"{assignment!r}: {raw!r} is not a YAML value ({exc})", param_hint="--set"
            ) from exc
    return flags


def _value(settings: Settings, path: str) -> Any:
    """The JSON form of one leaf; ``SecretStr`` dumps as asterisks, so secrets never leave."""
    data: Any = settings.model_dump(mode="json")
    for part in path.split("."):
        data = data[part]
    return data


def _masked(value: Any) -> Any:
    """``value`` with the password of any URL in it replaced (``postgresql://u:***@h/db``)."""
    if isinstance(value, str):
        return _url_without_password(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


def _url_without_password(text: str) -> str:
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    if not password:
        return text
    netloc = parts.netloc.replace(f":{password}@", f":{MASK}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _render(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def register(app: typer.Typer) -> None:
    """Add ``config show`` and ``config check`` to the CLI."""
    app.add_typer(config_app, name="config")
