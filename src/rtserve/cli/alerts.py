"""``rtserve alerts``: write Prometheus alerting rules and a Grafana dashboard for rtserve."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from rtserve.cli.output import print_note
from rtserve.observability.alerts import AlertThresholds, alert_rules_yaml, dashboard

RULES_FILE = "rtserve-alerts.yml"
DASHBOARD_FILE = "rtserve-dashboard.json"
_DURATION = re.compile(r"^\d+[smhd]$")


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
    """Add ``alerts`` to the CLI."""
    app.command("alerts")(alerts)
