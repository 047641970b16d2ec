"""``rtserve decisions`` (read the decision log back) and ``rtserve alerts`` (rules + dashboard)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rtserve.cli.output import print_note, stdout
from rtserve.errors import NotFoundError
from rtserve.observability.alerts import AlertThresholds, alert_rules_yaml, dashboard
from rtserve.observability.decisions import Decision, DecisionQuery, reader_for
from rtserve.settings import Settings

RULES_FILE = "rtserve-alerts.yml"
DASHBOARD_FILE = "rtserve-dashboard.json"
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\d+[smhd]$")


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC if no zone) or a span ago such as ``15m``, ``2h``, ``1d``."""
    ago = _AGO.match(text.strip())
    if ago:
        seconds = float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
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
        log = Settings.load(config).decision_log
        if log.sink == "sql":
            database_url = log.database_url
        else:
            directory = Path(log.directory)
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


def alerts(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the two files to.")
    ] = Path(),
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Alert when more than this share answers 5xx.")
    ] = 0.01,
    p99_ms: Annotated[
        float, typer.Option("--p99-ms", min=0, help="Alert when p99 latency exceeds this (ms).")
    ] = 250.0,
    fallback_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Alert when fallbacks answer more than this share.")
    ] = 0.05,
    prediction_psi: Annotated[
        float, typer.Option(min=0, help="Alert when prediction drift PSI exceeds this.")
    ] = 0.2,
    window: Annotated[str, typer.Option(help="Rate window, e.g. 5m.")] = "5m",
    hold: Annotated[str, typer.Option("--for", help="How long a condition holds first.")] = "5m",
    job: Annotated[str, typer.Option(help="The Prometheus job that scrapes rtserve.")] = "rtserve",
) -> None:
    """Write Prometheus alerting rules and a Grafana dashboard for rtserve's metrics.

    Writes rtserve-alerts.yml (load it with `rule_files:` in prometheus.yml; check it with
    `promtool check rules rtserve-alerts.yml`) and rtserve-dashboard.json (Grafana: Dashboards >
    Import). Feature-drift alerts use the server's own thresholds (RTSERVE_DRIFT__*).

    Example: rtserve alerts --output monitoring/ --p99-ms 100 --error-rate 0.005
    """
    for name, value in (("--window", window), ("--for", hold)):
        if not _DURATION.match(value):
            raise typer.BadParameter(f"{name} {value!r} is not a duration such as 30s, 5m or 1h")
    thresholds = AlertThresholds(
        error_rate=error_rate,
        p99_latency_seconds=p99_ms / 1000.0,
        fallback_rate=fallback_rate,
        prediction_psi=prediction_psi,
        window=window,
        hold=hold,
        job=job,
    )
    output.mkdir(parents=True, exist_ok=True)
    rules = output / RULES_FILE
    board = output / DASHBOARD_FILE
    rules.write_text(alert_rules_yaml(thresholds))
    board.write_text(json.dumps(dashboard(thresholds), indent=2) + "\n")
    print_note(f"wrote {rules} and {board}")


def register(app: typer.Typer) -> None:
    """Add ``decisions`` and ``alerts`` to the CLI."""
    app.command("decisions")(decisions)
    app.command("alerts")(alerts)
