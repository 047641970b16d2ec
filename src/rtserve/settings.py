"""Server settings: ``RTSERVE_*`` environment variables override a YAML config file, which overrides defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rtserve.errors import RtserveError


class SettingsError(RtserveError):
    """A setting has an invalid value or the config file cannot be read."""

    code = "settings"


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
    """Per-request bounds (the body size is ``max_body_bytes``)."""

    model_config = ConfigDict(extra="forbid")

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
    """Deadlines and admission control."""

    model_config = ConfigDict(extra="forbid")

    default_timeout_ms: float = Field(
        default=30_000.0, gt=0, description="Deadline of a request without X-Request-Timeout-Ms."
    )
    max_timeout_ms: float = Field(
        default=300_000.0, gt=0, description="Largest deadline a client may ask for."
    )
    max_queue: int = Field(
        default=256, ge=0, description="Requests waiting per model before 503 (0: none wait)."
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
    predict_timeout_ms: float = Field(
        default=10_000.0, gt=0, description="A predict slower than this counts as a failure."
    )


# --- observability (rtserve.observability): e.g. RTSERVE_DRIFT__WINDOW_ROWS=2000 -------------------


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

    @model_validator(mode="after")
    def _sql_needs_url(self) -> DecisionLogSettings:
        if self.enabled and self.sink == "sql" and not self.database_url:
            raise ValueError("decision_log.sink sql needs decision_log.database_url")
        return self


def _state_dir() -> Path:
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rtserve"


class Settings(BaseSettings):
    """Everything an operator can configure; nothing is read until ``Settings.load`` is called."""

    model_config = SettingsConfigDict(
        env_prefix="RTSERVE_", extra="forbid", validate_default=True, env_nested_delimiter="__"
    )

    bundles: list[str] = Field(
        default_factory=list,
        description="Bundle directories or .tar.gz archives to serve, each under its own name.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0 picks a free one).")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes on one port.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of the reverse proxies whose X-Forwarded-For "
        "names the client (rate limits, failed-login limits); empty: the peer address always.",
    )
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
        default=4 << 30,  # rtserve.bundle.archive.MAX_BUNDLE_BYTES (settings may not import it)
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
    cache_size: int = Field(
        default=0,
        ge=0,
        description="Responses kept per model version, keyed by the validated input (0: no cache).",
    )
    cache_ttl_s: float = Field(
        default=60.0, gt=0, description="Seconds a cached response stays valid."
    )
    max_body_bytes: int = Field(
        default=8 << 20, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_batch_size: int = Field(
        default=256, ge=1, description="Most rows the batcher hands the runtime at once."
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a lone request may wait for others to join its batch (0: never).",
    )
    runtime_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Batches run at once per model when the runtime is thread-safe (ONNX Runtime).",
    )
    inline_predict_us: float = Field(
        default=1000.0,
        ge=0,
        description="A lone small request on an idle model whose predict typically takes less "
        "than this many microseconds runs on the event loop, skipping a thread hop (0: never).",
    )
    graceful_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="On SIGTERM, seconds to keep serving with readiness false before closing.",
    )
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
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per model name: {fallback: ..., output: ...}, overriding the bundle's.",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    access_log: bool = Field(default=True, description="One JSON log line per request.")
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings, description="Prometheus metrics at /metrics."
    )
    drift: DriftSettings = Field(
        default_factory=DriftSettings, description="Live drift against the training profile."
    )
    decision_log: DecisionLogSettings = Field(
        default_factory=DecisionLogSettings, description="Which model version decided what."
    )
    pii_redaction: Literal["hash", "drop"] = Field(
        default="hash",
        description="PII values in logs and recorded inputs: keyed hash (RTSERVE_REDACTION_KEY) "
        "or dropped.",
    )
    tracing: bool = Field(
        default=False, description="OpenTelemetry spans (needs the 'tracing' extra; OTEL_* env)."
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level must be one of debug, info, warning, error")
        return value

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
                    f"trusted_proxies: {value!r} is not an IP address or network; list each "
                    "proxy as e.g. '10.0.0.7' or '10.0.0.0/24' (write '0.0.0.0/0' and '::/0' "
                    "to trust every peer, only when nothing can reach the server directly)"
                ) from None
        return normal

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence, highest first: explicit arguments, environment, config file, defaults."""
        # The YAML source reads ``model_config["yaml_file"]``, set only by ``load(config_file)``.
        yaml_file = YamlConfigSettingsSource(settings_cls)
        return (init_settings, env_settings, yaml_file, file_secret_settings)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Read settings now: ``overrides`` > ``RTSERVE_*`` env > ``config_file`` > defaults."""
        from pydantic import ValidationError

        if config_file is not None and not Path(config_file).is_file():
            raise SettingsError(f"config file {config_file} does not exist", field="config")
        settings_cls = cls
        if config_file is not None:
            settings_cls = type(
                cls.__name__,
                (cls,),
                {
                    "model_config": SettingsConfigDict(
                        **{**cls.model_config, "yaml_file": config_file}
                    )
                },
            )
        try:
            return settings_cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingsError(
                f"setting {where}: {first['msg']} (env RTSERVE_{where.upper()})", field=where
            ) from exc
