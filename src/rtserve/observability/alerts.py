"""Prometheus alerting rules and a Grafana dashboard for rtserve's metrics, generated from thresholds.

``rtserve alerts`` writes both files; the rules pass ``promtool check rules``. Every expression
names only metrics defined in ``rtserve.observability.metrics`` (a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

#: Endpoints that run a model (the ``endpoint`` label of ``rtserve_requests_total``).
INFERENCE = 'endpoint=~"infer|predict"'


@dataclass(frozen=True)
class AlertThresholds:
    """What the alerts compare against (the service's SLOs)."""

    error_rate: float = 0.01  # share of inference requests answered 5xx
    p99_latency_seconds: float = 0.25  # whole-request p99 of inference requests
    fallback_rate: float = 0.05  # share of inference requests answered by a fallback
    prediction_psi: float = 0.2  # prediction drift PSI (feature drift uses the server's thresholds)
    window: str = "5m"  # rate window
    hold: str = "5m"  # how long a condition holds before the alert fires
    drift_hold: str = "15m"
    job: str = "rtserve"  # the Prometheus job scraping rtserve


def _error_ratio(w: str) -> str:
    return (
        f'sum by (model) (rate(rtserve_requests_total{{{INFERENCE},status=~"5.."}}[{w}]))'
        f" / clamp_min(sum by (model) (rate(rtserve_requests_total{{{INFERENCE}}}[{w}])), 1e-9)"
    )


def _p99(w: str, metric: str = "rtserve_request_duration_seconds", where: str = INFERENCE) -> str:
    return f"histogram_quantile(0.99, sum by (le, model) (rate({metric}_bucket{{{where}}}[{w}])))"


def _fallback_ratio(w: str) -> str:
    return (
        f"sum by (model) (rate(rtserve_fallbacks_total[{w}]))"
        f' / clamp_min(sum by (model) (rate(rtserve_requests_total{{{INFERENCE},model!=""}}[{w}])), 1e-9)'
    )


def alert_rules(t: AlertThresholds | None = None) -> dict[str, Any]:
    """The Prometheus rule file (as a dict to dump as YAML)."""
    t = t or AlertThresholds()
    w = t.window

    def rule(
        name: str, expr: str, hold: str, severity: str, summary: str, description: str
    ) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": hold,
            "labels": {"severity": severity, "service": "rtserve"},
            "annotations": {"summary": summary, "description": description},
        }

    rules = [
        rule(
            "RtserveHighErrorRate",
            f"({_error_ratio(w)}) > {t.error_rate}",
            t.hold,
            "page",
            "rtserve {{ $labels.model }}: more than "
            f"{t.error_rate:.1%} of inference requests fail",
            "{{ $value | humanizePercentage }} of inference requests answered 5xx over "
            f"{w}; see the server log (code prediction_failed / not_ready).",
        ),
        rule(
            "RtserveHighLatencyP99",
            f"({_p99(w)}) > {t.p99_latency_seconds}",
            t.hold,
            "page",
            "rtserve {{ $labels.model }}: p99 latency above "
            f"{t.p99_latency_seconds * 1000:g} ms",
            "p99 of inference requests is {{ $value | humanizeDuration }}; compare "
            "rtserve_model_latency_seconds and rtserve_queue_wait_seconds to see where.",
        ),
        rule(
            "RtserveHighFallbackRate",
            f"({_fallback_ratio(w)}) > {t.fallback_rate}",
            t.hold,
            "warning",
            "rtserve {{ $labels.model }}: fallbacks answer more than "
            f"{t.fallback_rate:.0%} of requests",
            "{{ $value | humanizePercentage }} of inference requests were answered by the "
            "fallback instead of the model.",
        ),
        rule(
            "RtserveFeatureDrift",
            "max by (model, version) (rtserve_drift_features_drifted) > 0",
            t.drift_hold,
            "warning",
            "rtserve {{ $labels.model }}:{{ $labels.version }}: input drift",
            "{{ $value }} feature(s) cross their drift thresholds; GET "
            "/v1/models/{{ $labels.model }}/drift names them.",
        ),
        rule(
            "RtservePredictionDrift",
            f"max by (model, version) (rtserve_prediction_drift_psi) > {t.prediction_psi}",
            t.drift_hold,
            "warning",
            "rtserve {{ $labels.model }}:{{ $labels.version }}: prediction drift",
            "PSI of the predicted distribution is {{ $value }} (threshold "
            f"{t.prediction_psi}).",
        ),
        rule(
            "RtserveModelNotReady",
            "min by (model, version) (rtserve_model_ready) == 0",
            t.hold,
            "page",
            "rtserve {{ $labels.model }}:{{ $labels.version }} is not ready",
            "The model failed to load or its warm-up did not match; GET "
            "/v1/models/{{ $labels.model }} gives the reason.",
        ),
        rule(
            "RtserveDown",
            f'up{{job="{t.job}"}} == 0',
            "2m",
            "page",
            "rtserve target {{ $labels.instance }} is down",
            "Prometheus cannot scrape /metrics.",
        ),
        rule(
            "RtserveObserverDropping",
            f"sum by (observer) (rate(rtserve_observer_dropped_total[{w}])) > 0",
            t.hold,
            "warning",
            "rtserve drops {{ $labels.observer }} events",
            "The {{ $labels.observer }} queue is full: metrics, drift or decision-log records "
            "are being lost (a slow sink?).",
        ),
    ]
    return {"groups": [{"name": "rtserve", "rules": rules}]}


def alert_rules_yaml(t: AlertThresholds | None = None) -> str:
    """The rule file as YAML text."""
    return yaml.safe_dump(alert_rules(t), sort_keys=False, width=1000)


_DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    title: str,
    exprs: list[tuple[str, str]],
    unit: str,
    x: int,
    y: int,
    *,
    kind: str = "timeseries",
    width: int = 12,
    description: str = "",
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard(t: AlertThresholds | None = None) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) over rtserve's metrics, with a datasource variable."""
    t = t or AlertThresholds()
    w = "$__rate_interval"
    m = 'model=~"$model"'
    rows: list[list[dict[str, Any]]] = [
        [
            _panel(
                "Requests per second by status",
                [
                    (
                        f"sum by (model, status) (rate(rtserve_requests_total{{{INFERENCE},{m}}}[{w}]))",
                        "{{model}} {{status}}",
                    )
                ],
                "reqps",
                0,
                0,
            ),
            _panel(
                "Error rate (5xx share)",
                [(_error_ratio(w), "{{model}}")],
                "percentunit",
                12,
                0,
                description=f"Alert above {t.error_rate:.1%}.",
            ),
        ],
        [
            _panel(
                "Latency p50 / p99 (whole request) and model p99",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, model) (rate("
                        f"rtserve_request_duration_seconds_bucket{{{INFERENCE},{m}}}[{w}])))",
                        "p50 {{model}}",
                    ),
                    (_p99(w, where=f"{INFERENCE},{m}"), "p99 {{model}}"),
                    (_p99(w, "rtserve_model_latency_seconds", m), "model p99 {{model}}"),
                    (_p99(w, "rtserve_queue_wait_seconds", m), "queue p99 {{model}}"),
                ],
                "s",
                0,
                8,
                description=f"SLO: p99 under {t.p99_latency_seconds * 1000:g} ms.",
            ),
            _panel(
                "Batch size (rows, p50 / p99) and in-flight requests",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, model) (rate("
                        f"rtserve_batch_size_rows_bucket{{{m}}}[{w}])))",
                        "p50 {{model}}",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le, model) (rate("
                        f"rtserve_batch_size_rows_bucket{{{m}}}[{w}])))",
                        "p99 {{model}}",
                    ),
                    ("sum(rtserve_requests_in_flight)", "in flight"),
                ],
                "short",
                12,
                8,
            ),
        ],
        [
            _panel(
                "Validation failures by field and rule",
                [
                    (
                        "sum by (model, field, rule) (rate("
                        f"rtserve_validation_failures_total{{{m}}}[{w}]))",
                        "{{model}} {{field}} {{rule}}",
                    )
                ],
                "short",
                0,
                16,
            ),
            _panel(
                "Fallbacks, cache hits, rows predicted",
                [
                    (
                        f"sum by (model) (rate(rtserve_fallbacks_total{{{m}}}[{w}]))",
                        "fallback {{model}}",
                    ),
                    (
                        f"sum by (model) (rate(rtserve_cache_hits_total{{{m}}}[{w}]))",
                        "cache hit {{model}}",
                    ),
                    (
                        f"sum by (model) (rate(rtserve_predictions_total{{{m}}}[{w}]))",
                        "rows {{model}}",
                    ),
                ],
                "short",
                12,
                16,
            ),
        ],
        [
            _panel(
                "Feature drift (PSI)",
                [(f"max by (model, feature) (rtserve_drift_psi{{{m}}})", "{{model}} {{feature}}")],
                "short",
                0,
                24,
                description="0.1 moderate, above 0.2 significant shift.",
            ),
            _panel(
                "Drifted features, prediction drift, mean confidence",
                [
                    (
                        f"max by (model) (rtserve_drift_features_drifted{{{m}}})",
                        "drifted {{model}}",
                    ),
                    (
                        f"max by (model) (rtserve_prediction_drift_psi{{{m}}})",
                        "prediction PSI {{model}}",
                    ),
                    (
                        f"min by (model) (rtserve_prediction_mean_confidence{{{m}}})",
                        "mean confidence {{model}}",
                    ),
                ],
                "short",
                12,
                24,
            ),
        ],
        [
            _panel(
                "Unseen categories / out-of-range values (share)",
                [
                    (
                        f"max by (model, feature) (rtserve_drift_unseen_share{{{m}}})",
                        "unseen {{feature}}",
                    ),
                    (
                        f"max by (model, feature) (rtserve_drift_out_of_range_share{{{m}}})",
                        "out of range {{feature}}",
                    ),
                    (
                        f"max by (model, feature) (rtserve_drift_null_rate_change{{{m}}})",
                        "null change {{feature}}",
                    ),
                ],
                "percentunit",
                0,
                32,
            ),
            _panel(
                "Models: ready and served versions",
                [
                    ("min by (model, version) (rtserve_model_ready)", "{{model}}:{{version}}"),
                    (
                        "max by (model, version, digest, runtime) (rtserve_model_info)",
                        "{{model}}:{{version}} {{runtime}}",
                    ),
                ],
                "short",
                12,
                32,
                kind="table",
            ),
        ],
        [
            _panel(
                "CPU and memory",
                [
                    (f"sum(rate(rtserve_process_cpu_seconds_total[{w}]))", "CPU cores"),
                    ("sum(rtserve_process_resident_memory_bytes) / 1e9", "resident GB"),
                    ("sum(rtserve_worker_processes)", "workers"),
                ],
                "short",
                0,
                40,
            ),
            _panel(
                "Decision log and observer queues",
                [
                    (
                        f"sum by (sink) (rate(rtserve_decisions_written_total[{w}]))",
                        "written {{sink}}",
                    ),
                    (
                        f"sum by (observer) (rate(rtserve_observer_dropped_total[{w}]))",
                        "dropped {{observer}}",
                    ),
                    (
                        f"sum by (observer) (rate(rtserve_observer_errors_total[{w}]))",
                        "errors {{observer}}",
                    ),
                ],
                "short",
                12,
                40,
            ),
        ],
    ]
    panels = [p for row in rows for p in row]
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": "rtserve",
        "title": "rtserve",
        "tags": ["rtserve", "ml"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "model",
                    "type": "query",
                    "datasource": _DS,
                    "query": {"query": "label_values(rtserve_model_info, model)", "refId": "model"},
                    "definition": "label_values(rtserve_model_info, model)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }
