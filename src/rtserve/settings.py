"""Server settings: ``RTSERVE_*`` environment variables override a YAML config file, which overrides defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
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
    trust_pickle: bool = Field(
        default=False, description="Allow pickle artifacts whose digest is pinned in pinned_digests."
    )
    pinned_digests: dict[str, str] = Field(
        default_factory=dict,
        description="Expected bundle digest per model name ('sha256:...'); checked on load.",
    )
    strict_versions: bool = Field(
        default=False, description="Refuse bundles built with another framework minor version."
    )
    parity_tolerance: float = Field(
        default=1e-5, gt=0, description="Max |diff| allowed between warm-up and recorded outputs."
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
    graceful_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    access_log: bool = Field(default=True, description="One JSON log line per request.")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level must be one of debug, info, warning, error")
        return value

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
                {"model_config": SettingsConfigDict(**{**cls.model_config, "yaml_file": config_file})},
            )
        try:
            return settings_cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingsError(
                f"setting {where}: {first['msg']} (env RTSERVE_{where.upper()})", field=where
            ) from exc
