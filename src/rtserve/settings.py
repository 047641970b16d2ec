"""Server settings, grouped by concern: ``RTSERVE_*`` environment variables override a YAML config
file, which overrides defaults; explicit arguments (CLI flags, ``Settings.load`` keywords) win over
all three.

Groups: ``server`` (binding, workers, shutdown), ``loading`` (which bundles are trusted and how they
load), ``batching``, ``cache``, ``limits`` (every size bound of a request), ``shedding`` (deadlines
and admission), ``breaker``, ``auth``, ``rate_limit``, ``policies`` (per model), ``logging``,
``metrics``, ``drift`` and ``decision_log``; ``bundles`` is the one top-level list. A setting's
environment name is its path with ``__`` between the parts: ``limits.max_body_bytes`` is
``RTSERVE_LIMITS__MAX_BODY_BYTES``.

Units, one convention: every duration is in seconds, a float, and its name ends in ``_s``; every
size in bytes ends in ``_bytes``. Counts (rows, calls, entries) carry no unit suffix.

Renamed settings keep their old environment names and config-file keys for one release
(``RENAMED``: old path -> new path, with the unit conversion); using one warns with
``SettingDeprecated``, naming the new name.
"""

from __future__ import annotations

import copy
import os
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rtserve.bundle.policy import FallbackPolicy, OutputPolicy
from rtserve.errors import RtserveError

ENV_PREFIX = "RTSERVE_"
#: Where a setting's value came from, highest precedence first (``Settings.resolve``).
Source = Literal["flag", "env", "file", "default"]


class SettingsError(RtserveError):
    """A setting has an invalid value or the config file cannot be read."""

    code = "settings"


class SettingDeprecated(UserWarning):
    """An old setting name was used; it still works for one release. A ``UserWarning``, so the
    CLI shows it (``rtserve.cli.output.shown_warnings`` hides deprecations meant for developers)."""


# --- serving: binding, loading, batching, cache -------------------------------------------------


class ServerSettings(BaseModel):
    """Where the server listens, how many processes serve, and how it shuts down."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0 picks a free one).")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes on one port.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of the reverse proxies whose X-Forwarded-For "
        "names the client (rate limits, failed-login limits); empty: the peer address always.",
    )
    keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds an idle keep-alive connection stays open after an answer; behind a "
        "load balancer, set it above the balancer's idle timeout (AWS ALB: 60).",
    )
    graceful_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="On SIGTERM, seconds to keep serving with readiness false before closing.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: list[str]) -> list[str]:
        """Each entry an IP address or network, written as uvicorn reads it (it would silently
        take anything else for a literal host name and never match it)."""
        import ipaddress

        normal = []
        for value in values:
            text = value.strip()
            try:
                if "/" in text:
                    normal.append(str(ipaddress.ip_network(text, strict=False)))
                else:
                    normal.append(str(ipaddress.ip_address(text)))
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address or network; list each proxy as e.g. "
                    "'10.0.0.7' or '10.0.0.0/24' (write '0.0.0.0/0' and '::/0' to trust every "
                    "peer, only when nothing can reach the server directly)"
                ) from None
        return normal


class LoadingSettings(BaseModel):
    """Which bundles are trusted, and how a bundle becomes a serving model."""

    model_config = ConfigDict(extra="forbid")

    trust_pickle: bool = Field(
        default=False,
        description="Allow pickle artifacts whose digest is pinned in pinned_digests.",
    )
    pinned_digests: dict[str, str] = Field(
        default_factory=dict,
        description="Expected bundle digest per model name ('sha256:...'); checked on load.",
    )
    strict_versions: bool = Field(
        default=False, description="Refuse bundles built with another framework minor version."
    )
    max_bundle_bytes: int = Field(
        default=4 << 30,  # rtserve.bundle.archive.MAX_BUNDLE_BYTES
        ge=1 << 20,
        description="Most bytes a .tar.gz bundle may unpack to (it is also held to 4x the file "
        "sizes its manifest records); raise it for a genuinely larger bundle.",
    )
    parity_tolerance: float = Field(
        default=1e-5, gt=0, description="Max |diff| allowed between warm-up and recorded outputs."
    )
    force_native_runtime: bool = Field(
        default=False,
        description="Predict with each model's own framework even where its bundle's ONNX export "
        "passed the parity gate at build (ONNX Runtime serves those by default).",
    )
    require_signature: bool = Field(
        default=False,
        description="Refuse every bundle without a valid signature by one of trusted_keys "
        "(checked at each load, including hot swaps from the registry).",
    )
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="Ed25519 public-key PEM files whose bundle signatures are accepted; read "
        "once at start (a bad file refuses the start).",
    )

    @model_validator(mode="after")
    def _signature_needs_keys(self) -> LoadingSettings:
        if self.require_signature and not self.trusted_keys:
            raise ValueError(
                "loading.require_signature needs at least one public key in loading.trusted_keys"
            )
        return self


class RegistrySettings(BaseModel):
    """Serving from a model registry: which stage pointers to follow, and how often to look."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        description="A registry directory (registry.db and artifacts/ inside), or a database URL "
        "(sqlite:///..., postgresql://...) together with registry.store.",
    )
    store: str | None = Field(
        default=None, description="Artifact store (directory or fsspec URL) for a database URL."
    )
    follow: list[str] = Field(
        default_factory=list,
        description="NAME@STAGE (or NAME@ALIAS) specs to serve and follow, e.g. fraud@production.",
    )
    poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds between two reads of the followed pointers (one query each time).",
    )
    cache_dir: str | None = Field(
        default=None,
        description="Where artifacts from a remote store are cached (default: a temp directory).",
    )
    actor: str = Field(
        default="server:rtserve",
        description="Who the server's load/swap/unload events name in the audit log.",
    )
    drain_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Most seconds an old version waits for its in-flight requests after a swap.",
    )

    @model_validator(mode="after")
    def _follow_needs_url(self) -> RegistrySettings:
        if self.follow and not self.url:
            raise ValueError("registry.follow needs registry.url (a directory or database URL)")
        for spec in self.follow:
            name, at, ref = spec.partition("@")
            if not name or not at or not ref:
                raise ValueError(f"registry.follow entry {spec!r} is not NAME@STAGE")
        return self


class BatchingSettings(BaseModel):
    """How requests are grouped into runtime calls, and how many run at once."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(
        default=256, ge=1, description="Most rows the batcher hands the runtime at once."
    )
    max_wait_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds a lone request may wait for others to join its batch (0: never).",
    )
    runtime_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Batches run at once per model when the runtime is thread-safe (ONNX Runtime).",
    )
    inline_predict_s: float = Field(
        default=0.001,
        ge=0,
        description="A lone small request on an idle model whose predict typically takes less "
        "than this many seconds runs on the event loop, skipping a thread hop (0: never).",
    )
    group_requests: bool = Field(
        default=True,
        description="Serve the records-API predict requests of one model that arrive in one "
        "event-loop turn as one group: validated, predicted and encoded together, straight from "
        "rtserve's HTTP protocol (false: each request on its own through the ASGI app).",
    )


class CacheSettings(BaseModel):
    """The response cache, per model version, keyed by the validated input."""

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(
        default=0, ge=0, description="Responses kept per model version (0: no cache)."
    )
    ttl_s: float = Field(default=60.0, gt=0, description="Seconds a cached response stays valid.")


# --- guard (rtserve.guard): one group per guard, e.g. RTSERVE_AUTH__ENABLED=true ------------------


class ApiKeySetting(BaseModel):
    """One API key, configured by its sha256 only (``rtserve.guard.auth.hash_key``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Client name: the rate-limit and log identity.")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="sha256 hex digest of the key.")
    roles: list[Literal["predict", "read", "admin"]] = Field(
        min_length=1, description="Roles the key grants (admin grants every role)."
    )


class AuthSettings(BaseModel):
    """Authentication; off by default (the embedded demo). Secrets only from env or files."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Require credentials on non-public routes.")
    api_keys: list[ApiKeySetting] = Field(
        default_factory=list, description="API keys by hash: [{name, sha256, roles}]."
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 shared secret (set RTSERVE_AUTH__JWT_SECRET, not a file)."
    )
    jwt_secret_file: Path | None = Field(
        default=None, description="File holding the HS256 secret (e.g. a mounted secret)."
    )
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key: bearer tokens are RS256 (overrides HS256)."
    )
    jwt_issuer: str = Field(default="", description="Required 'iss' of bearer tokens.")
    jwt_audience: str = Field(default="", description="Required 'aud' of bearer tokens.")
    jwt_roles_claim: str = Field(
        default="roles",
        description="Claim holding the roles (a list, or a space-separated string).",
    )
    jwt_leeway_s: float = Field(default=0.0, ge=0, description="Clock skew allowed on 'exp'.")
    max_failures_per_minute: int = Field(
        default=20,
        ge=0,
        description="Failed authentications one client address may make per minute; past them "
        "it gets 429 until the window frees up (0: no limit). Counted in rate_limit.storage.",
    )

    @model_validator(mode="after")
    def _jwt_complete(self) -> AuthSettings:
        uses_jwt = (
            self.jwt_secret is not None
            or self.jwt_secret_file is not None
            or self.jwt_public_key_file is not None
        )
        if uses_jwt and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("bearer tokens need both jwt_issuer and jwt_audience to be checked")
        return self


class LimitSettings(BaseModel):
    """Per-request bounds: every size and time a client can make the server spend on one request."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(
        default=8 << 20, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_instances: int = Field(default=10_000, ge=1, description="Most rows in one request.")
    max_string_length: int = Field(default=4096, ge=1, description="Longest string value.")
    max_json_depth: int = Field(default=32, ge=2, description="Deepest JSON nesting of a body.")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Time to receive a whole body (slow senders get 408)."
    )
    max_tensor_elements: int = Field(
        default=1 << 22,
        ge=1,
        description="Most elements one Open Inference Protocol tensor may declare (413 beyond); "
        "checked on the shape before any data is read.",
    )
    max_header_bytes: int = Field(
        default=16 << 10,
        ge=1024,
        description="Largest request line plus headers (431 beyond), counted as they arrive.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time to receive a request's headers from its first byte (or from connect); "
        "slower clients get 408 and are disconnected.",
    )


class RateLimitSettings(BaseModel):
    """Per-client rate limits (client = key:<API key name>, jwt:<token sub>, or ip:<address>
    when authentication is off)."""

    model_config = ConfigDict(extra="forbid")

    default: str | None = Field(
        default=None, description="Limit per client, e.g. '100/second' or '1000/minute'; None: off."
    )
    per_client: dict[str, str] = Field(
        default_factory=dict,
        description="Limits by client, overriding the default: keys 'key:<name>', 'jwt:<sub>' "
        "or 'ip:<address>' (a bare name is read as 'key:<name>' and is deprecated).",
    )
    storage: str = Field(
        default="memory://",
        description="Where counts live: memory:// (one process) or redis://host:port (shared).",
    )


class SheddingSettings(BaseModel):
    """Deadlines and admission control: how long a request and a runtime call may take."""

    model_config = ConfigDict(extra="forbid")

    default_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Deadline of a request without an X-Request-Timeout-Ms header (seconds).",
    )
    max_timeout_s: float = Field(
        default=300.0, gt=0, description="Largest deadline a client may ask for (seconds)."
    )
    max_queue: int = Field(
        default=256, ge=0, description="Requests waiting per model before 503 (0: none wait)."
    )
    predict_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A runtime call slower than this many seconds fails (and counts for the "
        "breaker); the fallback answers.",
    )


class BreakerSettings(BaseModel):
    """The per-model circuit breaker in front of the runtime."""

    model_config = ConfigDict(extra="forbid")

    consecutive_failures: int = Field(
        default=5, ge=1, description="Failures in a row that open it."
    )
    error_rate: float = Field(
        default=0.5, gt=0, le=1, description="Share of failed calls in the window that opens it."
    )
    window: int = Field(default=20, ge=1, description="Recent calls the error rate is taken over.")
    min_calls: int = Field(default=10, ge=1, description="Calls needed before the rate counts.")
    open_s: float = Field(default=10.0, gt=0, description="Seconds open before a half-open probe.")


class ModelPolicySettings(BaseModel):
    """One model's serving policies from the config, each replacing its bundle's when given.

    The same types as ``rtserve.yaml`` declares (``rtserve.bundle.policy``), so a malformed policy
    fails ``Settings.load``; what needs the bundle (rule fields, output classes) is checked when
    the model loads.
    """

    model_config = ConfigDict(extra="forbid")

    fallback: FallbackPolicy | None = Field(
        default=None, description="What the model answers when it fails (replaces the bundle's)."
    )
    output: OutputPolicy | None = Field(
        default=None, description="Output hardening: rounding, top-k (replaces the bundle's)."
    )


# --- observability (rtserve.observability): e.g. RTSERVE_DRIFT__WINDOW_ROWS=2000 -------------------


class LoggingSettings(BaseModel):
    """What rtserve writes about each request: log level, access log, PII handling, traces."""

    model_config = ConfigDict(extra="forbid")

    level: str = Field(default="info", description="debug, info, warning or error.")
    access_log: bool = Field(default=True, description="One JSON log line per request.")
    pii_redaction: Literal["hash", "drop"] = Field(
        default="hash",
        description="PII values in logs and recorded inputs: keyed hash (RTSERVE_REDACTION_KEY) "
        "or dropped.",
    )
    tracing: bool = Field(
        default=False, description="OpenTelemetry spans (needs the 'tracing' extra; OTEL_* env)."
    )

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return value


class MetricsSettings(BaseModel):
    """Prometheus metrics at ``GET /metrics``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Record metrics and serve /metrics.")
    multiprocess_dir: str | None = Field(
        default=None,
        description="Directory the workers share with --workers > 1 (emptied at start; default: "
        "a fresh temporary directory).",
    )
    queue_size: int = Field(
        default=10_000, ge=1, description="Events waiting for the metrics thread before drops."
    )


class DriftSettings(BaseModel):
    """Live drift of inputs and outputs against each bundle's training profile."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Keep a drift window per served model.")
    window_rows: int = Field(default=5000, ge=10, description="Most recent rows in the window.")
    window_s: float = Field(
        default=3600.0, ge=0, description="Rows older than this leave the window (0: no limit)."
    )
    min_rows: int = Field(
        default=200, ge=1, description="Rows needed before scores are judged against thresholds."
    )
    refresh_s: float = Field(default=5.0, gt=0, description="How often the drift gauges update.")
    psi_threshold: float = Field(default=0.2, gt=0, description="PSI above this is drift.")
    null_rate_threshold: float = Field(
        default=0.1, gt=0, description="Absolute change of the missing share above this is drift."
    )
    unseen_threshold: float = Field(
        default=0.05, gt=0, description="Share of unseen categories above this is drift."
    )
    out_of_range_threshold: float = Field(
        default=0.05, gt=0, description="Share of values outside the training range above this."
    )
    queue_size: int = Field(default=10_000, ge=1, description="Events waiting before drops.")


class DecisionLogSettings(BaseModel):
    """One record per predicted row: which model version decided what."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Write the decision log.")
    sink: Literal["jsonl", "sql"] = Field(
        default="jsonl", description="jsonl: rotated files in `directory`; sql: `database_url`."
    )
    directory: str = Field(
        default_factory=lambda: str(_state_dir() / "decisions"),
        description="Where JSON-lines segments go (default: $XDG_STATE_HOME/rtserve/decisions).",
    )
    database_url: str | None = Field(
        default=None, description="sqlite:///file.db or postgresql://user@host/db (sink sql)."
    )
    max_bytes: int = Field(default=64 << 20, ge=1024, description="Size of one segment file.")
    max_files: int = Field(default=20, ge=1, description="Segments kept (oldest deleted).")
    include_inputs: bool = Field(
        default=False, description="Also record the inputs (PII fields hashed or dropped)."
    )
    queue_size: int = Field(default=2048, ge=1, description="Events waiting before drops.")
    writer: Literal["process", "thread"] = Field(
        default="process",
        description=(
            "process: records are built and written in a child process, off the server's GIL; "
            "thread: in a thread of the server (where no child process may be started)."
        ),
    )

    @model_validator(mode="after")
    def _sql_needs_url(self) -> DecisionLogSettings:
        if self.enabled and self.sink == "sql" and not self.database_url:
            raise ValueError("decision_log.sink sql needs decision_log.database_url")
        return self


class RolloutSettings(BaseModel):
    """Traffic policies: canary and A/B splits, shadows and the promotion gate (docs/rollout.md)."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(
        default=None,
        description="A YAML rollout spec (or 'rollouts: [...]') for bundles served from paths; "
        "every version it names must be among the bundles served.",
    )
    from_registry: bool = Field(
        default=True,
        description="Apply the rollouts the registry stores for the followed names.",
    )
    interval_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds between two looks of the promotion gate (and reads of the registry).",
    )


class Settings(BaseSettings):
    """Everything an operator can configure; nothing is read until ``Settings.load`` is called.

    Constructing ``Settings(...)`` directly validates exactly the arguments given (no environment,
    no file): tests and worker processes get the settings they pass, nothing more.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, env_nested_delimiter="__"
    )

    bundles: list[str] = Field(
        default_factory=list,
        description="Bundle directories or .tar.gz archives to serve, each under its own name.",
    )
    server: ServerSettings = Field(
        default_factory=ServerSettings, description="Binding, workers, shutdown."
    )
    loading: LoadingSettings = Field(
        default_factory=LoadingSettings, description="Bundle trust and loading."
    )
    batching: BatchingSettings = Field(
        default_factory=BatchingSettings, description="Batching and runtime concurrency."
    )
    registry: RegistrySettings = Field(
        default_factory=RegistrySettings, description="Serving from a model registry."
    )
    cache: CacheSettings = Field(default_factory=CacheSettings, description="Response cache.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Authentication.")
    limits: LimitSettings = Field(default_factory=LimitSettings, description="Request limits.")
    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description="Per-client rate limits."
    )
    shedding: SheddingSettings = Field(
        default_factory=SheddingSettings, description="Deadlines and admission control."
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings, description="Circuit breaker per model."
    )
    policies: dict[str, ModelPolicySettings] = Field(
        default_factory=dict,
        description="Per model name: {fallback: ..., output: ...}, overriding the bundle's.",
    )
    logging: LoggingSettings = Field(
        default_factory=LoggingSettings, description="Logs, PII redaction, traces."
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Prometheus metrics at /metrics."
    )
    drift: DriftSettings = Field(
        default_factory=DriftSettings, description="Live drift against the training profile."
    )
    decision_log: DecisionLogSettings = Field(
        default_factory=DecisionLogSettings, description="Which model version decided what."
    )
    rollout: RolloutSettings = Field(
        default_factory=RolloutSettings, description="Canary, A/B and shadow traffic policies."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: ``load`` reads the environment and the file itself, so that it
        can apply ``RENAMED`` first and tell where each value came from."""
        return (init_settings,)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Read settings now: ``overrides`` > ``RTSERVE_*`` env > ``config_file`` > defaults.

        ``overrides`` are nested like the file (``server={"port": 0}``) or spelled with ``__``
        like the environment (``server__port=0``); None values are ignored.

        Raises:
            SettingsError: the file is unreadable, or a value breaks its rule (the message names
                the key path, the value, the rule and where to change it).
        """
        return cls.resolve(config_file, overrides)[0]

    @classmethod
    def resolve(
        cls,
        config_file: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        read_env: bool = True,
    ) -> tuple[Settings, dict[str, Source]]:
        """The settings, and for every leaf path (``Settings.leaves``) where its value came from."""
        from pydantic import ValidationError

        layers: dict[Source, dict[str, Any]] = {
            "flag": _renamed(_nest(overrides or {}), "argument"),
            "env": _RenamingEnvSource(cls)() if read_env else {},
            "file": _read_config_file(Path(config_file)) if config_file is not None else {},
        }
        merged: dict[str, Any] = {}
        for layer in ("file", "env", "flag"):
            merged = _deep_merge(merged, layers[layer])
        try:
            settings = cls(**merged)
        except ValidationError as exc:
            raise _settings_error(exc, layers) from None
        sources: dict[str, Source] = {}
        for path in cls.leaves():
            parts = path.split(".")
            sources[path] = next(
                (name for name, data in layers.items() if _has(data, parts)), "default"
            )
        return settings, sources

    @classmethod
    def leaves(cls) -> list[str]:
        """Every setting's dotted path, groups expanded (``server.port``, ``policies``, ...)."""
        return list(_leaves(cls, ""))


# --- renamed settings ------------------------------------------------------------------------


class Rename(NamedTuple):
    """An old setting path, its new path, and what to divide an old value by (unit change)."""

    old: str
    new: str
    divide_by: float = 1.0


#: Old path -> new path, applied to env names, file keys and arguments before validation. Kept for
#: one release after the regrouping (remove in the next minor version).
RENAMED: tuple[Rename, ...] = (
    Rename("host", "server.host"),
    Rename("port", "server.port"),
    Rename("workers", "server.workers"),
    Rename("trusted_proxies", "server.trusted_proxies"),
    Rename("graceful_timeout_s", "server.graceful_timeout_s"),
    Rename("drain_delay_s", "server.drain_delay_s"),
    Rename("trust_pickle", "loading.trust_pickle"),
    Rename("pinned_digests", "loading.pinned_digests"),
    Rename("strict_versions", "loading.strict_versions"),
    Rename("max_bundle_bytes", "loading.max_bundle_bytes"),
    Rename("parity_tolerance", "loading.parity_tolerance"),
    Rename("force_native_runtime", "loading.force_native_runtime"),
    Rename("max_batch_size", "batching.max_batch_size"),
    Rename("max_wait_ms", "batching.max_wait_s", 1e3),
    Rename("runtime_threads", "batching.runtime_threads"),
    Rename("inline_predict_us", "batching.inline_predict_s", 1e6),
    Rename("cache_size", "cache.max_entries"),
    Rename("cache_ttl_s", "cache.ttl_s"),
    Rename("max_body_bytes", "limits.max_body_bytes"),
    Rename("shedding.default_timeout_ms", "shedding.default_timeout_s", 1e3),
    Rename("shedding.max_timeout_ms", "shedding.max_timeout_s", 1e3),
    Rename("breaker.predict_timeout_ms", "shedding.predict_timeout_s", 1e3),
    Rename("log_level", "logging.level"),
    Rename("access_log", "logging.access_log"),
    Rename("pii_redaction", "logging.pii_redaction"),
    Rename("tracing", "logging.tracing"),
)


def env_name(path: str) -> str:
    """``limits.max_body_bytes`` -> ``RTSERVE_LIMITS__MAX_BODY_BYTES``."""
    return ENV_PREFIX + path.replace(".", "__").upper()


def _converted(rename: Rename, value: Any, where: str) -> Any:
    """``value`` in the new unit (a string stays a string, as the environment gives it)."""
    if rename.divide_by == 1.0 or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{where}: {value!r} is not a number; it is deprecated anyway: set {rename.new} "
            f"(in seconds) instead",
            field=rename.new,
        ) from None
    seconds = number / rename.divide_by
    return str(seconds) if isinstance(value, str) else seconds


def _deprecated(old: str, new: str, rename: Rename) -> None:
    unit = " (in seconds; the old value is converted)" if rename.divide_by != 1.0 else ""
    warnings.warn(
        f"{old} is a deprecated setting name, read as {new}{unit}; rename it (the old name "
        "stops working in the next release)",
        SettingDeprecated,
        stacklevel=4,
    )


def _renamed(data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` (file content or arguments) with every old key moved to its new path."""
    for rename in RENAMED:
        old = rename.old.split(".")
        if not _has(data, old):
            continue
        parent = _get(data, old[:-1])
        value = parent.pop(old[-1])
        _deprecated(f"{what} {rename.old!r}", rename.new, rename)
        new = rename.new.split(".")
        if _has(data, new):
            continue  # the new name wins over the old one
        target = data
        for part in new[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[new[-1]] = _converted(rename, value, f"{what} {rename.old}")
    return data


class _RenamingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, with old ``RTSERVE_*`` names moved to new ones."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = dict(super()._load_env_vars())  # names are lower case (case-insensitive)
        for rename in RENAMED:
            old, new = env_name(rename.old), env_name(rename.new)
            if old.lower() not in env:
                continue
            value = env.pop(old.lower())
            _deprecated(f"environment variable {old}", new, rename)
            if new.lower() not in env:
                env[new.lower()] = _converted(rename, value, old)
        # ``RTSERVE_REGISTRY`` is the registry CLI's directory (a plain string), not the JSON of
        # the ``registry`` group: it names the registry a server follows too.
        plain = env.get(f"{ENV_PREFIX}registry".lower())
        if plain is not None and not plain.lstrip().startswith("{"):
            env.pop(f"{ENV_PREFIX}registry".lower())
            env.setdefault(f"{ENV_PREFIX}registry__url".lower(), plain)
        return env


# --- reading ---------------------------------------------------------------------------------


def _read_config_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``, old keys renamed; a missing or malformed file fails."""
    import yaml

    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist", field="config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(
            f"config file {path}: not readable YAML ({exc})", field="config"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(
            f"config file {path}: expected a mapping of settings (e.g. 'server: {{port: 8080}}'), "
            f"got {type(data).__name__}",
            field="config",
        )
    return _renamed(data, "config file key")


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments to a nested dict: ``server__port=0`` -> ``{"server": {"port": 0}}``; None dropped."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        value = copy.deepcopy(value)  # the renaming below edits it; the caller's stays as it was
        parts = key.split("__")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if isinstance(value, dict) and isinstance(target.get(parts[-1]), dict):
            value = _deep_merge(target[parts[-1]], value)
        target[parts[-1]] = value
    return nested


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _has(data: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _get(data: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    for part in parts:
        data = data[part]
    return data


# --- structure and errors --------------------------------------------------------------------


def _group(annotation: Any) -> type[BaseModel] | None:
    """The settings group an annotation is (a model class), else None (a leaf)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _leaves(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in model.model_fields.items():
        group = _group(info.annotation)
        if group is None:
            yield prefix + name
        else:
            yield from _leaves(group, f"{prefix}{name}.")


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that ``loc`` (a pydantic error location) points into, if any."""
    current: Any = Settings
    for part in loc:
        model = _model_of(current)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            current = model.model_fields[part].annotation
            continue
        origin = typing.get_origin(current)
        if origin in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        return None
    return _model_of(current)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if _group(annotation) is not None:
        return typing.cast(type[BaseModel], annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if _group(a) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _setting_of(loc: tuple[int | str, ...]) -> str:
    """The leaf setting a location lies in (``policies.fraud.fallback`` -> ``policies``)."""
    current: Any = Settings
    parts: list[str] = []
    for part in loc:
        group = _group(current)
        if group is None or not isinstance(part, str) or part not in group.model_fields:
            break
        parts.append(part)
        current = group.model_fields[part].annotation
    return ".".join(parts)


#: Settings whose value is never echoed in an error message (also not inside a group's value).
_SECRET_LEAVES = frozenset({"auth.jwt_secret"})
_SECRET = "<secret>"  # noqa: S105 - the mask shown instead of a secret


def _without_secrets(value: Any, setting: str) -> Any:
    """``value`` (an error's input) with every secret leaf in it replaced by ``<secret>``."""
    if setting in _SECRET_LEAVES:
        return _SECRET
    if isinstance(value, dict):
        prefix = f"{setting}." if setting else ""
        return {key: _without_secrets(item, f"{prefix}{key}") for key, item in value.items()}
    return value


def _settings_error(exc: Any, layers: Mapping[Source, dict[str, Any]]) -> SettingsError:
    """The first violation as a ``SettingsError``: key path, value, rule, and where to fix it."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc) or "settings"
    setting = _setting_of(loc)
    rule = str(error["msg"]).removeprefix("Value error, ")
    rule = rule[:1].lower() + rule[1:]
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else "none"
        return SettingsError(
            f"{path}: unknown setting; allowed here: {allowed} (see rtserve config show)",
            field=path,
        )
    value = _short(repr(_without_secrets(error.get("input"), path if path != "settings" else "")))
    origin = next(
        (name for name, data in layers.items() if setting and _has(data, setting.split("."))),
        "default",
    )
    env = env_name(setting) + ("" if setting in Settings.leaves() else "__*")
    where = {
        "flag": "given as an argument",
        "env": f"from {env}",
        "file": "from the config file",
        "default": "the default",
    }[origin]
    hint = f"set {setting} in the config file or {env}" if setting else ""
    return SettingsError(
        f"{path}: {value} ({where}) is invalid: {rule}" + (f"; {hint}" if hint else ""),
        field=path,
    )


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rtserve"
