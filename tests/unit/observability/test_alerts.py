"""Alert rules and dashboard: valid for promtool, firing when they should, naming real metrics."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from rtserve.observability.alerts import AlertThresholds, alert_rules, alert_rules_yaml, dashboard
from rtserve.observability.metrics import Metrics

_NAME = re.compile(r"\brtserve_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def expressions() -> list[str]:
    rules = [r["expr"] for g in alert_rules()["groups"] for r in g["rules"]]
    panels = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    return rules + panels


def test_every_metric_named_in_rules_and_dashboard_is_defined():
    defined = {family.name for family in Metrics().registry.collect()}
    for expr in expressions():
        for name in _NAME.findall(expr):
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
            assert base in defined or name in defined, f"{name} in {expr!r} is not a metric"


@pytest.mark.prometheus
def test_promtool_accepts_the_rules(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(alert_rules_yaml(AlertThresholds(p99_latency_seconds=0.1)))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


UNIT_TEST = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'rtserve_requests_total{model="fraud",version="1",protocol="records",endpoint="predict",status="200"}'
        values: '0+90x30'
      - series: 'rtserve_requests_total{model="fraud",version="1",protocol="records",endpoint="predict",status="500"}'
        values: '0+10x30'
      - series: 'rtserve_requests_total{model="dense",version="1",protocol="v2",endpoint="infer",status="200"}'
        values: '0+100x30'
      - series: 'rtserve_model_ready{model="dense",version="1"}'
        values: '1x10 0x20'
      - series: 'rtserve_drift_features_drifted{model="fraud",version="1"}'
        values: '0x5 2x25'
    alert_rule_test:
      - eval_time: 20m
        alertname: RtserveHighErrorRate
        exp_alerts:
          - exp_labels: {severity: page, service: rtserve, model: fraud}
            exp_annotations:
              summary: "rtserve fraud: more than 1.0% of inference requests fail"
              description: "10% of inference requests answered 5xx over 5m; see the server log (code prediction_failed / not_ready)."
      - eval_time: 20m
        alertname: RtserveModelNotReady
        exp_alerts:
          - exp_labels: {severity: page, service: rtserve, model: dense, version: "1"}
            exp_annotations:
              summary: "rtserve dense:1 is not ready"
              description: "The model failed to load or its warm-up did not match; GET /v1/models/dense gives the reason."
      - eval_time: 10m
        alertname: RtserveFeatureDrift
        exp_alerts: []
      - eval_time: 25m
        alertname: RtserveFeatureDrift
        exp_alerts:
          - exp_labels: {severity: warning, service: rtserve, model: fraud, version: "1"}
            exp_annotations:
              summary: "rtserve fraud:1: input drift"
              description: "2 feature(s) cross their drift thresholds; GET /v1/models/fraud/drift names them."
"""


@pytest.mark.prometheus
def test_the_rules_fire_on_errors_unready_models_and_drift_and_stay_quiet_otherwise(tmp_path):
    (tmp_path / "rules.yml").write_text(alert_rules_yaml())
    (tmp_path / "tests.yml").write_text(UNIT_TEST)
    done = subprocess.run(
        ["promtool", "test", "rules", "tests.yml"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_thresholds_appear_in_the_expressions():
    rules = yaml.safe_load(
        alert_rules_yaml(AlertThresholds(error_rate=0.005, p99_latency_seconds=0.1))
    )
    by_name = {r["alert"]: r for r in rules["groups"][0]["rules"]}
    assert by_name["RtserveHighErrorRate"]["expr"].endswith("> 0.005")
    assert by_name["RtserveHighLatencyP99"]["expr"].endswith("> 0.1")


def test_the_dashboard_has_unique_panel_ids_a_datasource_variable_and_queries():
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    assert board["templating"]["list"][0]["type"] == "datasource"
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in board["panels"])
