"""What a deployment is made of, checked once: the models, the image, the sizes and the timings.

Every renderer (Kubernetes, KServe, ECS) reads one ``DeployPlan``, so the files it writes agree
with each other: the same bundle paths and pinned digests, the same settings, the same drain.

Timings pair up as the server shuts down (``rtserve.server.runner``). On pod deletion the kubelet
runs the ``preStop`` hook (a sleep of ``pre_stop_s``, while endpoints and load balancers stop
routing to the pod and the server still answers everything), then sends SIGTERM; the server then
reports not ready and keeps serving for ``drain_delay_s`` (for load balancers that watch
``/readyz``), lets in-flight requests finish within ``graceful_timeout_s``, and exits 0; its own
watchdog ends a stuck shutdown ``WATCHDOG_MARGIN_S`` later with exit code 1.
``terminationGracePeriodSeconds`` covers all of that, so the kubelet's SIGKILL never cuts a
drain short.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtserve.errors import DeployError

#: Where bundles live in the container: baked into the image, or a volume mounted there.
MODELS_DIR = "/models"
#: The settings file (a ConfigMap key on Kubernetes) and where it is mounted.
CONFIG_DIR = "/etc/rtserve"
CONFIG_FILE = "rtserve.yaml"
#: Writable state (the decision log): the root filesystem is read-only.
STATE_DIR = "/var/lib/rtserve"
#: The container port: KServe's default for custom predictors, and rtserve's default port.
PORT = 8080
#: The unprivileged user and group the container runs as (no name needed in the image).
RUN_AS = 10001
#: Seconds the server's shutdown watchdog waits past drain + grace before exiting 1; equal to
#: ``rtserve.server.runner._WATCHDOG_MARGIN_S`` (a test keeps them equal).
WATCHDOG_MARGIN_S = 5.0
#: ECS refuses a container ``stopTimeout`` above this many seconds.
ECS_MAX_STOP_TIMEOUT_S = 120
#: The Secret (Kubernetes) the manifests reference by name, and its keys; never written with values.
SECRET_KEYS = {
    "api-keys": "JSON list of {name, sha256, roles}: the API keys the server accepts (hashes)",
    "metrics-api-key": "the raw API key Prometheus scrapes /metrics with (role read)",
    "jwt-secret": "HS256 secret for bearer tokens (only with --jwt-issuer/--jwt-audience)",
}

# A registry reference: NAME:VERSION, optionally pinned with @sha256:<64 hex>.
_REF = re.compile(
    r"(?P<name>[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?):(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]{0,62})"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)
# Kubernetes Service (and KServe InferenceService) names: DNS-1035 labels.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Kubernetes resource quantities as people write them (500m, 1.5, 512Mi, 2Gi).
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_IMAGE = re.compile(r"[^\s]+")


@dataclass(frozen=True)
class ModelRef:
    """One model to serve: from a bundle on disk (digest known) or a registry reference."""

    name: str
    version: str
    digest: str | None
    source: str

    @property
    def path(self) -> str:
        """Where the bundle is in the container: ``/models/<name>-<version>``."""
        return f"{MODELS_DIR}/{self.name}-{self.version}"

    @property
    def label(self) -> str:
        """``name:version`` with ``@digest`` when known, for annotations and docs."""
        return f"{self.name}:{self.version}" + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Timings:
    """Shutdown and start-up timings in seconds; the derived periods pair them (module docstring)."""

    pre_stop_s: float = 5.0
    drain_delay_s: float = 5.0
    graceful_timeout_s: float = 30.0
    startup_s: float = 300.0

    def __post_init__(self) -> None:
        for option, value in (
            ("--pre-stop-s", self.pre_stop_s),
            ("--drain-delay-s", self.drain_delay_s),
        ):
            if not value >= 0:
                raise DeployError(f"{option} {value} is invalid: it must be >= 0", field=option)
        for option, value in (
            ("--graceful-timeout-s", self.graceful_timeout_s),
            ("--startup-s", self.startup_s),
        ):
            if not value > 0:
                raise DeployError(f"{option} {value} is invalid: it must be > 0", field=option)
        if self.pre_stop_s + self.drain_delay_s <= 0:
            raise DeployError(
                "--pre-stop-s 0 with --drain-delay-s 0 would close the server while endpoints and "
                "load balancers still route to it (requests fail during every rollout); give at "
                "least one of them a few seconds (e.g. --pre-stop-s 5)",
                field="--pre-stop-s",
            )

    @property
    def termination_grace_s(self) -> int:
        """``terminationGracePeriodSeconds``: preStop + drain + grace + the server's watchdog."""
        return math.ceil(
            self.pre_stop_s + self.drain_delay_s + self.graceful_timeout_s + WATCHDOG_MARGIN_S
        )

    @property
    def stop_timeout_s(self) -> int:
        """ECS ``stopTimeout`` (no preStop there: the load balancer deregisters the task first)."""
        return math.ceil(self.drain_delay_s + self.graceful_timeout_s + WATCHDOG_MARGIN_S)


@dataclass(frozen=True)
class Resources:
    """Container requests and limits as Kubernetes quantities; a limit of None is not set."""

    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = "1Gi"

    def __post_init__(self) -> None:
        for option, value in (
            ("--cpu-request", self.cpu_request),
            ("--memory-request", self.memory_request),
            ("--cpu-limit", self.cpu_limit),
            ("--memory-limit", self.memory_limit),
        ):
            if value is not None and not _QUANTITY.fullmatch(value):
                raise DeployError(
                    f"{option} {value!r} is not a Kubernetes quantity; write e.g. '500m' or '2' "
                    "for CPU, '512Mi' or '2Gi' for memory",
                    field=option,
                )

    def as_kubernetes(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` block."""
        limits = {"cpu": self.cpu_limit, "memory": self.memory_limit}
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {key: value for key, value in limits.items() if value is not None},
        }


@dataclass(frozen=True)
class DeployPlan:
    """Everything the renderers need, validated (``DeployError`` names the option to fix)."""

    models: tuple[ModelRef, ...]
    image: str
    name: str = ""
    replicas: int = 2
    max_replicas: int = 10
    workers: int = 1
    target_cpu_percent: int = 70
    target_in_flight: int = 16
    timings: Timings = field(default_factory=Timings)
    resources: Resources = field(default_factory=Resources)
    auth: bool = True
    jwt_issuer: str = ""
    jwt_audience: str = ""
    bundle_claim: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise DeployError("give at least one bundle or registry reference", field="bundle")
        if not _IMAGE.fullmatch(self.image):
            raise DeployError(
                f"--image {self.image!r} is not an image reference; give e.g. "
                "'registry.example.com/fraud@sha256:<digest>'",
                field="--image",
            )
        if not self.name:
            object.__setattr__(self, "name", default_name(self.models[0].name))
        _check_dns_label(self.name, "--name")
        if self.bundle_claim is not None:
            _check_dns_label(self.bundle_claim, "--bundle-claim")
        for option, value, low in (
            ("--replicas", self.replicas, 1),
            ("--workers", self.workers, 1),
            ("--target-cpu-percent", self.target_cpu_percent, 1),
            ("--target-in-flight", self.target_in_flight, 1),
        ):
            if value < low:
                raise DeployError(f"{option} {value} is invalid: it must be >= {low}", field=option)
        if self.max_replicas < self.replicas:
            raise DeployError(
                f"--max-replicas {self.max_replicas} is below --replicas {self.replicas}; the "
                "autoscaler scales between them, so raise --max-replicas",
                field="--max-replicas",
            )
        if bool(self.jwt_issuer) != bool(self.jwt_audience):
            raise DeployError(
                "bearer tokens are checked for both issuer and audience: give --jwt-issuer and "
                "--jwt-audience together",
                field="--jwt-issuer",
            )
        if self.jwt_issuer and not self.auth:
            raise DeployError(
                "--jwt-issuer needs authentication on; drop --no-auth", field="--jwt-issuer"
            )

    @property
    def secret_name(self) -> str:
        """The Secret (or secret store entries) holding the credentials; created by the operator."""
        return f"{self.name}-secrets"

    @property
    def uses_jwt(self) -> bool:
        """Whether bearer tokens (HS256, the ``jwt-secret`` key) are accepted."""
        return bool(self.jwt_issuer)

    def settings(self) -> dict[str, Any]:
        """The server's settings file (the ConfigMap's ``rtserve.yaml``), checked by ``Settings``.

        Shutdown timings and secrets are not in it: timings travel as environment variables next
        to the probes they pair with; secrets come from the Secret, never from a file here.
        """
        document: dict[str, Any] = {
            "bundles": [model.path for model in self.models],
            "server": {"host": "0.0.0.0", "port": PORT, "workers": self.workers},  # noqa: S104 - in a pod
            "decision_log": {"directory": f"{STATE_DIR}/decisions"},
        }
        pinned = {model.name: model.digest for model in self.models if model.digest}
        if pinned:
            document["loading"] = {"pinned_digests": pinned}
        if self.auth:
            document["auth"] = {"enabled": True}
            if self.uses_jwt:
                document["auth"] |= {
                    "jwt_issuer": self.jwt_issuer,
                    "jwt_audience": self.jwt_audience,
                }
        _check_settings(document)
        return document

    def environment(self) -> dict[str, str]:
        """Plain environment variables of the container (secrets are added by each renderer)."""
        return {
            "RTSERVE_SERVER__DRAIN_DELAY_S": seconds_text(self.timings.drain_delay_s),
            "RTSERVE_SERVER__GRACEFUL_TIMEOUT_S": seconds_text(self.timings.graceful_timeout_s),
            "HOME": "/tmp",  # noqa: S108 - the writable emptyDir; the root filesystem is read-only
        }

    def secret_environment(self) -> dict[str, str]:
        """Environment variable -> key in the Secret, for the credentials the server reads."""
        if not self.auth:
            return {}
        env = {"RTSERVE_AUTH__API_KEYS": "api-keys"}
        if self.uses_jwt:
            env["RTSERVE_AUTH__JWT_SECRET"] = "jwt-secret"  # noqa: S105 - a key name, not a secret
        return env


def resolve_models(sources: list[str]) -> tuple[ModelRef, ...]:
    """Bundles (directories or ``.tar.gz``, verified, digest pinned) or ``NAME:VERSION[@DIGEST]``
    registry references, in order; a name may appear once."""
    from rtserve.bundle.bundle import Bundle

    models: list[ModelRef] = []
    for source in sources:
        match = _REF.fullmatch(source)
        if Path(source).exists():
            bundle = Bundle.open(source, check=True)
            model = ModelRef(bundle.name, bundle.version, bundle.digest, source)
        elif match is not None:
            model = ModelRef(match["name"], match["version"], match["digest"], source)
        else:
            raise DeployError(
                f"{source!r} is neither a bundle (no such file or directory) nor a registry "
                "reference; give a bundle directory or .tar.gz, or NAME:VERSION (optionally "
                "NAME:VERSION@sha256:<digest> to pin it), e.g. fraud:3",
                field="bundle",
            )
        if any(known.name == model.name for known in models):
            raise DeployError(
                f"model {model.name!r} is given twice ({source!r}); one deployment serves each "
                "model name once (digests are pinned by name): generate one per version",
                field="bundle",
            )
        models.append(model)
    return tuple(models)


def default_name(model_name: str) -> str:
    """A DNS-1035 label from a model name: ``fraud_v2.onnx`` -> ``fraud-v2-onnx``."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"rtserve-{name}".rstrip("-")
    return name[:63].rstrip("-")


def _check_dns_label(value: str, option: str) -> None:
    if not _DNS_LABEL.fullmatch(value):
        raise DeployError(
            f"{option} {value!r} is not a valid Kubernetes name: use 1-63 lowercase letters, "
            "digits or '-', starting with a letter and ending with a letter or digit "
            "(e.g. 'fraud-detector')",
            field=option,
        )


def _check_settings(document: dict[str, Any]) -> None:
    """Refuse to write a settings file the server would refuse at start-up."""
    from rtserve.settings import Settings, SettingsError

    try:
        Settings.resolve(None, document, read_env=False)  # this file alone, as the pod reads it
    except SettingsError as exc:  # a bug in this module, or an option the rules refuse
        raise DeployError(f"the generated settings are invalid: {exc.message}") from exc


def seconds_text(value: float) -> str:
    """Seconds as settings and shell commands read them: ``5`` rather than ``5.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)
