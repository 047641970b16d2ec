"""``rtserve decisions``: read the decision log back (by request or server id, time, model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rtserve.cli.options import span_seconds
from rtserve.cli.output import print_note, stdout
from rtserve.errors import NotFoundError

if TYPE_CHECKING:
    from rich.table import Table

    from rtserve.observability.decisions import Decision

# Settings, SQLAlchemy and the decision log's readers are imported inside the command, so that
# `rtserve --help` stays fast.


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC if no zone) or a span ago such as ``15m``, ``2h``, ``1d``."""
    seconds = span_seconds(text, bare_seconds=False)
    if seconds is not None:
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2024-05-01T12:00:00Z) nor a span ago (15m, 2h, 1d)"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decisions(
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            help="The X-Request-ID of the request (several requests may share a client's), "
            "or a decision's server id.",
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model name.")] = None,
    version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO 8601 or a span ago (15m, 2h, 1d).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this time (same forms as --since).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many records.")] = 100,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="JSON-lines decision directory [default: from settings]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Read the SQL sink instead: sqlite:///file.db or postgresql://..."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file naming the decision log's sink.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per decision on stdout.")
    ] = False,
) -> None:
    """Which model version made a decision: read the decision log back.

    Each record has the request's X-Request-ID (the client's, when it sent one) and the server's
    own id for the prediction, unique per record with its row; --request-id finds either.

    Examples:

        rtserve decisions --request-id 4f1c2e...

        rtserve decisions --model fraud --version 3 --since 2h --json
    """
    if directory is None and database_url is None:
        from rtserve.settings import Settings

        log = Settings.load(config).decision_log
        if log.sink == "sql":
            database_url = log.database_url
        else:
            directory = Path(log.directory)
    from rtserve.observability.decisions import DecisionQuery, reader_for

    query = DecisionQuery(
        request_id=request_id,
        model=model,
        version=version,
        since=parse_moment(since) if since else None,
        until=parse_moment(until) if until else None,
        limit=limit,
    )
    found = reader_for(directory=directory, database_url=database_url).query(query)
    where = database_url.split("@")[-1] if database_url else str(directory)
    if request_id is not None and not found:
        raise NotFoundError(
            f"no decision with request id or server id {request_id!r} in {where}; check the id "
            "(the X-Request-ID response header) and that the server logs to this sink",
            field="request_id",
        )
    if as_json:
        for decision in found:
            typer.echo(json.dumps(decision.to_json(), ensure_ascii=False))
        return
    stdout().print(_table(found))
    print_note(f"{len(found)} decision(s) from {where}")


def _table(found: list[Decision]) -> Table:
    from rich.table import Table

    table = Table(
        "time (UTC)", "request id", "server id", "row", "model", "version", "digest", "output",
        "ms",
    )  # fmt: skip
    for d in found:
        table.add_row(
            d.time.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            d.request_id,
            d.server_id or "-",
            str(d.row),
            d.model,
            d.version,
            d.digest.removeprefix("sha256:")[:12],
            _summary(d),
            f"{d.latency_seconds * 1000:.1f}" + (" fallback" if d.fallback else ""),
        )
    return table


def _summary(d: Decision) -> str:
    if "label" in d.output:
        return f"label={d.output['label']}"
    if "value" in d.output:
        return f"value={d.output['value']}"
    return json.dumps(d.output)[:40]


def register(app: typer.Typer) -> None:
    """Add ``decisions`` to the CLI."""
    app.command("decisions")(decisions)
