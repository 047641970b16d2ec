"""An Amazon ECS task definition (Fargate) from a ``DeployPlan``, as ``register-task-definition``
reads it (``aws ecs register-task-definition --cli-input-json file://task-definition.json``).

ECS has no preStop hook: a service behind a load balancer deregisters the task first (the target
group's deregistration delay plays preStop's part), then sends SIGTERM; the server drains
``drain_delay_s`` and finishes in-flight requests, and ``stopTimeout`` (at most 120 s on ECS)
covers both plus the server's watchdog margin. The container health check is the liveness route;
point the target group's health check at ``/readyz``. Settings travel as ``RTSERVE_*`` variables
(no ConfigMap); credentials come from one Secrets Manager secret whose JSON keys are the
Kubernetes Secret's keys. ``REGION`` and ``ACCOUNT_ID`` in ARNs are placeholders to replace.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rtserve.deploy.plan import (
    ECS_MAX_STOP_TIMEOUT_S,
    PORT,
    RUN_AS,
    STATE_DIR,
    DeployPlan,
)
from rtserve.errors import DeployError

#: ECS accepts a health-check start period of at most this many seconds.
ECS_MAX_START_PERIOD_S = 300
_HEALTH = (
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/healthz', timeout=3)"
)


def settings_environment(plan: DeployPlan) -> dict[str, str]:
    """The settings file as ``RTSERVE_*`` variables (lists and mappings as JSON)."""
    from rtserve.settings import env_name

    env: dict[str, str] = {}
    for key, value in plan.settings().items():
        # A group ({"server": {...}}) becomes one variable per setting; anything else is a leaf.
        leaves = value.items() if isinstance(value, dict) else [(None, value)]
        for leaf, item in leaves:
            path = f"{key}.{leaf}" if leaf is not None else key
            env[env_name(path)] = _env_value(item)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def task_definition(
    plan: DeployPlan,
    *,
    cpu: str = "1024",
    memory: str = "2048",
    region: str = "REGION",
    account_id: str = "ACCOUNT_ID",
) -> dict[str, Any]:
    """The ``RegisterTaskDefinition`` request for one Fargate task running the server."""
    stop_timeout = plan.timings.stop_timeout_s
    if stop_timeout > ECS_MAX_STOP_TIMEOUT_S:
        raise DeployError(
            f"ECS stops a container at most {ECS_MAX_STOP_TIMEOUT_S} s after SIGTERM, but drain "
            f"delay + graceful timeout + watchdog margin is {stop_timeout} s; lower "
            "--graceful-timeout-s or --drain-delay-s, or pass --no-ecs",
            field="--graceful-timeout-s",
        )
    arn = f"arn:aws:secretsmanager:{region}:{account_id}:secret:{plan.secret_name}"
    environment = settings_environment(plan) | plan.environment()
    container: dict[str, Any] = {
        "name": "rtserve",
        "image": plan.image,
        "essential": True,
        "command": ["rtserve", "serve"],
        "portMappings": [
            {"name": "http", "containerPort": PORT, "protocol": "tcp", "appProtocol": "http"}
        ],
        "environment": [{"name": key, "value": value} for key, value in environment.items()],
        "secrets": [
            {"name": name, "valueFrom": f"{arn}:{key}::"}
            for name, key in plan.secret_environment().items()
        ],
        "healthCheck": {
            "command": ["CMD", "python", "-c", _HEALTH],
            "interval": 10,
            "timeout": 5,
            "retries": 3,
            "startPeriod": min(ECS_MAX_START_PERIOD_S, math.ceil(plan.timings.startup_s)),
        },
        "stopTimeout": stop_timeout,
        "user": f"{RUN_AS}:{RUN_AS}",
        "readonlyRootFilesystem": True,
        "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
        "mountPoints": [
            {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False},  # noqa: S108
            {"sourceVolume": "state", "containerPath": STATE_DIR, "readOnly": False},
        ],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": f"/ecs/{plan.name}",
                "awslogs-region": region,
                "awslogs-stream-prefix": "rtserve",
                "awslogs-create-group": "true",
            },
        },
    }
    return {
        "family": plan.name,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": cpu,
        "memory": memory,
        "executionRoleArn": f"arn:aws:iam::{account_id}:role/{plan.name}-task-execution",
        "containerDefinitions": [container],
        "volumes": [{"name": "tmp"}, {"name": "state"}],
    }


def write_ecs(document: dict[str, Any], directory: Path) -> Path:
    """Write a ``task_definition`` to ``ecs/task-definition.json`` under ``directory``."""
    path = directory / "ecs" / "task-definition.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
