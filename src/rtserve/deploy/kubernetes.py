"""Kubernetes and KServe manifests from a ``DeployPlan``, as a Kustomize base with two overlays.

Layout written by ``write_kubernetes`` (``docs/deploy.md`` says what each file is for)::

    base/          kustomization, ConfigMap (settings), Deployment, Service, HPA, PDB, ServiceMonitor
    overlays/      staging (1 replica, autoscaling 1-3) and production (spread over zones and nodes)
    kserve/        an InferenceService (custom predictor) with its own ConfigMap, instead of base/
    prometheus-adapter-values.yaml   the adapter rule behind the HPA's in-flight-requests metric
    README.md      the Secret to create (never written with values) and what to fill in

Probes: startup on ``/healthz`` (the process is up; models load before it answers), readiness on
``/readyz`` (every model warmed and parity-checked; false while draining), liveness on
``/healthz``. Shutdown timings pair as ``rtserve.deploy.plan`` explains.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import yaml

from rtserve.deploy.plan import (
    CONFIG_DIR,
    CONFIG_FILE,
    MODELS_DIR,
    PORT,
    RUN_AS,
    SECRET_KEYS,
    STATE_DIR,
    DeployPlan,
    seconds_text,
)
from rtserve.version import rtserve_version

#: The in-flight gauge rtserve exports (``rtserve.observability.metrics``) and the HPA scales on.
IN_FLIGHT_METRIC = "rtserve_requests_in_flight"
#: KServe runs a custom predictor's serving container under this name.
KSERVE_CONTAINER = "kserve-container"
CONTAINER = "rtserve"
#: The Kustomize overlays, one namespace each (`<name>-<stage>`).
OVERLAYS = ("staging", "production")
BASE_FILES = (
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "servicemonitor.yaml",
)


def labels(plan: DeployPlan) -> dict[str, str]:
    """Recommended labels; the first two select the pods (they never change for a deployment)."""
    return {
        "app.kubernetes.io/name": plan.name,
        "app.kubernetes.io/instance": plan.name,
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/managed-by": "rtserve",
    }


def selector(plan: DeployPlan) -> dict[str, str]:
    """The pod selector of the Deployment, Service, PDB and ServiceMonitor."""
    return {
        key: labels(plan)[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
    }


def settings_yaml(plan: DeployPlan) -> str:
    """The ConfigMap's settings file text."""
    return _dump(plan.settings())


def configmap(plan: DeployPlan) -> dict[str, Any]:
    """The server's settings file, mounted read-only at ``/etc/rtserve/rtserve.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{plan.name}-config", "labels": labels(plan)},
        "data": {CONFIG_FILE: settings_yaml(plan)},
    }


def container(plan: DeployPlan, name: str = CONTAINER) -> dict[str, Any]:
    """The serving container: command, probes, preStop drain, resources, hardening, mounts."""
    timings = plan.timings
    env: list[dict[str, Any]] = [
        {"name": key, "value": value} for key, value in plan.environment().items()
    ]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": plan.secret_name, "key": secret_key}}}
        for key, secret_key in plan.secret_environment().items()
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir: the root fs is read-only
        {"name": "state", "mountPath": STATE_DIR},
    ]
    if plan.bundle_claim is not None:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    spec: dict[str, Any] = {
        "name": name,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["rtserve", "serve", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "startupProbe": _probe("/healthz", period=5, timeout=3, failures=_startup_failures(plan)),
        "readinessProbe": _probe("/readyz", period=5, timeout=3, failures=2),
        "livenessProbe": _probe("/healthz", period=10, timeout=5, failures=3),
        "lifecycle": {
            # exec sleep, not the newer `sleep` action: it works on every Kubernetes version, and
            # the image has coreutils (rtserve containerize builds on Debian).
            "preStop": {"exec": {"command": ["sleep", seconds_text(timings.pre_stop_s)]}}
        },
        "resources": plan.resources.as_kubernetes(),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    return spec


def pod_spec(plan: DeployPlan, container_name: str = CONTAINER) -> dict[str, Any]:
    """The pod: one container, its volumes, the grace period and the pod security context."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{plan.name}-config"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "state", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    if plan.bundle_claim is not None:
        volumes.append(
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": plan.bundle_claim, "readOnly": True},
            }
        )
    return {
        "automountServiceAccountToken": False,  # rtserve never calls the Kubernetes API
        "terminationGracePeriodSeconds": plan.timings.termination_grace_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(plan, container_name)],
        "volumes": volumes,
    }


def scrape_annotations() -> dict[str, str]:
    """The ``prometheus.io/*`` annotations annotation-based scrape configs read."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }


def deployment(plan: DeployPlan) -> dict[str, Any]:
    """The Deployment: rolling updates that never drop below the wanted replicas."""
    config_digest = hashlib.sha256(settings_yaml(plan).encode("utf-8")).hexdigest()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": plan.name,
            "labels": labels(plan),
            "annotations": _bundle_annotations(plan),
        },
        "spec": {
            "replicas": plan.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(plan)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels(plan),
                    # A settings change changes this annotation, so the pods roll to read it.
                    "annotations": scrape_annotations()
                    | {"rtserve.dev/config-sha256": config_digest},
                },
                "spec": pod_spec(plan),
            },
        },
    }


def service(plan: DeployPlan) -> dict[str, Any]:
    """A ClusterIP Service on the pods' ``http`` port; it routes only to ready pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": plan.name, "labels": labels(plan)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def horizontal_pod_autoscaler(plan: DeployPlan) -> dict[str, Any]:
    """autoscaling/v2 on CPU and on requests in flight per pod (via the Prometheus adapter)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": plan.name, "labels": labels(plan)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
            "minReplicas": plan.replicas,
            "maxReplicas": plan.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": plan.target_cpu_percent,
                        },
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": IN_FLIGHT_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(plan.target_in_flight),
                        },
                    },
                },
            ],
            "behavior": {
                # Scale up at once; scale down slowly, so a short lull does not drain warm pods.
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 300},
            },
        },
    }


def pod_disruption_budget(plan: DeployPlan) -> dict[str, Any]:
    """Voluntary disruptions (node drains) take at most one pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": plan.name, "labels": labels(plan)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(plan)}},
    }


def service_monitor(plan: DeployPlan) -> dict[str, Any]:
    """The Prometheus Operator's scrape of ``/metrics`` (role read: a bearer key when auth is on)."""
    endpoint: dict[str, Any] = {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    if plan.auth:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": plan.secret_name, "key": "metrics-api-key"},
        }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": plan.name, "labels": labels(plan)},
        "spec": {"selector": {"matchLabels": selector(plan)}, "endpoints": [endpoint]},
    }


def inference_service(plan: DeployPlan) -> dict[str, Any]:
    """A KServe InferenceService whose predictor is the rtserve container (raw deployment mode)."""
    pod = pod_spec(plan, KSERVE_CONTAINER)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": plan.name,
            "labels": labels(plan),
            "annotations": _bundle_annotations(plan)
            | {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {
            "predictor": {
                "minReplicas": plan.replicas,
                "maxReplicas": plan.max_replicas,
                "scaleMetric": "cpu",
                "scaleTarget": plan.target_cpu_percent,
                "annotations": scrape_annotations(),
                **pod,
            }
        },
    }


def kustomization(plan: DeployPlan) -> dict[str, Any]:
    """The base's kustomization: every base file, no namespace (the overlays set it)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(BASE_FILES),
    }


def overlay(plan: DeployPlan, stage: str) -> dict[str, Any]:
    """A stage's kustomization: its namespace, and patches on the base (JSON 6902)."""
    patches: list[dict[str, Any]]
    if stage == "staging":
        patches = [
            _patch("Deployment", plan.name, [("replace", "/spec/replicas", 1)]),
            _patch(
                "HorizontalPodAutoscaler",
                plan.name,
                [
                    ("replace", "/spec/minReplicas", 1),
                    ("replace", "/spec/maxReplicas", max(2, min(3, plan.max_replicas))),
                ],
            ),
        ]
    else:
        spread = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector(plan)},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ]
        patches = [
            _patch(
                "Deployment",
                plan.name,
                [("add", "/spec/template/spec/topologySpreadConstraints", spread)],
            )
        ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": f"{plan.name}-{stage}",
        "resources": ["../../base"],
        "patches": patches,
    }


def prometheus_adapter_values(plan: DeployPlan) -> dict[str, Any]:
    """prometheus-adapter (Helm values): serve the in-flight gauge as a pods metric to the HPA."""
    return {
        "rules": {
            "default": True,
            "custom": [
                {
                    "seriesQuery": f'{IN_FLIGHT_METRIC}{{namespace!="",pod!=""}}',
                    "resources": {
                        "overrides": {
                            "namespace": {"resource": "namespace"},
                            "pod": {"resource": "pod"},
                        }
                    },
                    "name": {"as": IN_FLIGHT_METRIC},
                    "metricsQuery": "sum(avg_over_time(<<.Series>>{<<.LabelMatchers>>}[1m])) "
                    "by (<<.GroupBy>>)",
                }
            ],
        }
    }


def write_kubernetes(plan: DeployPlan, directory: Path) -> list[Path]:
    """Write every file of the layout (module docstring) under ``directory``; returns them."""
    files: dict[str, str] = {
        "base/kustomization.yaml": _dump(kustomization(plan)),
        "base/configmap.yaml": _dump(configmap(plan)),
        "base/deployment.yaml": _dump(deployment(plan)),
        "base/service.yaml": _dump(service(plan)),
        "base/hpa.yaml": _dump(horizontal_pod_autoscaler(plan)),
        "base/pdb.yaml": _dump(pod_disruption_budget(plan)),
        "base/servicemonitor.yaml": _dump(service_monitor(plan)),
        "kserve/configmap.yaml": _dump(configmap(plan)),
        "kserve/inferenceservice.yaml": _dump(inference_service(plan)),
        "prometheus-adapter-values.yaml": _dump(prometheus_adapter_values(plan)),
        "README.md": readme(plan),
    }
    for stage in OVERLAYS:
        files[f"overlays/{stage}/kustomization.yaml"] = _dump(overlay(plan, stage))
    return _write(directory, files)


def readme(plan: DeployPlan) -> str:
    """What the operator still has to do: the Secret, the image, the monitoring labels."""
    namespaces = ", ".join(f"`{plan.name}-{stage}`" for stage in OVERLAYS)
    where = "baked into the image at these paths"
    if plan.bundle_claim:
        where = f"on the PersistentVolumeClaim `{plan.bundle_claim}`, mounted at `{MODELS_DIR}`"
    lines = [
        f"# {plan.name}: deployment files generated by rtserve {rtserve_version(missing='unknown')}",
        "",
        f"Models ({where}):",
        "",
        *[f"- `{model.label}` at `{model.path}`" for model in plan.models],
        "",
        f"Apply: `kubectl apply -k overlays/staging` (namespaces {namespaces} must exist).",
        "KServe instead of the Deployment: `kubectl apply -f kserve/`.",
        "",
    ]
    if plan.auth:
        lines += _secret_instructions(plan)
    timings = plan.timings
    lines += [
        "## Shutdown",
        "",
        f"preStop sleeps {seconds_text(timings.pre_stop_s)} s, then on SIGTERM the server drains "
        f"{seconds_text(timings.drain_delay_s)} s (RTSERVE_SERVER__DRAIN_DELAY_S) and gives "
        f"in-flight requests {seconds_text(timings.graceful_timeout_s)} s "
        "(RTSERVE_SERVER__GRACEFUL_TIMEOUT_S); terminationGracePeriodSeconds is "
        f"{timings.termination_grace_s} (their sum plus the server's watchdog margin).",
        "",
        "The HPA's in-flight metric needs prometheus-adapter with `prometheus-adapter-values.yaml`; "
        "the ServiceMonitor needs the labels your Prometheus selects ServiceMonitors by.",
        "",
    ]
    return "\n".join(lines)


def _secret_instructions(plan: DeployPlan) -> list[str]:
    """How to create the Secret with fresh random values (rtserve never writes credentials)."""
    keys = [key for key in SECRET_KEYS if key != "jwt-secret" or plan.uses_jwt]
    api_keys = """'[{"name":"prometheus","sha256":"'"$HASH"'","roles":["read"]}]'"""
    command = [
        f"kubectl -n {plan.name}-staging create secret generic {plan.secret_name}",
        '  --from-literal=metrics-api-key="$KEY"',
        f"  --from-literal=api-keys={api_keys}",
    ]
    if plan.uses_jwt:
        command.append(
            "  --from-literal=jwt-secret=\"$(python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')\""
        )
    return [
        f"## The Secret `{plan.secret_name}` (create it in each namespace; never commit it)",
        "",
        *[f"- `{key}`: {SECRET_KEYS[key]}" for key in keys],
        "",
        "```sh",
        "KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        "HASH=$(printf %s \"$KEY\" | sha256sum | cut -d' ' -f1)",
        " \\\n".join(command),
        "```",
        "",
        "Add your clients' keys to `api-keys` the same way (roles predict, read, admin).",
        "",
    ]


def _probe(path: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _startup_failures(plan: DeployPlan) -> int:
    """Startup probes every 5 s; this many failures give the models ``startup_s`` to load."""
    return max(1, math.ceil(plan.timings.startup_s / 5))


def _bundle_annotations(plan: DeployPlan) -> dict[str, str]:
    """Which bundles (and digests) these files were generated for; labels cannot hold digests."""
    return {"rtserve.dev/bundles": ",".join(model.label for model in plan.models)}


def _patch(kind: str, name: str, operations: list[tuple[str, str, Any]]) -> dict[str, Any]:
    ops = [{"op": op, "path": path, "value": value} for op, path, value in operations]
    return {"target": {"kind": kind, "name": name}, "patch": _dump(ops)}


class _Dumper(yaml.SafeDumper):
    """Block style, keys in insertion order, multi-line strings as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never write anchors: each manifest reads on its own."""
        return True


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _write(directory: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
