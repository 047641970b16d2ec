"""What a server process observes, off the hot path: metrics, logs, traces, drift, decisions.

``hub`` builds and runs it all from the settings; ``metrics`` and ``model_metrics`` are the
Prometheus side; ``access``, ``context``, ``logging`` and ``tracing`` cover each HTTP request;
``drift`` and ``decisions`` observe predictions through bounded ``queueing``; ``redaction`` keeps
PII out; ``ids`` makes request and decision ids; ``alerts`` writes alerting rules and a dashboard.
"""
