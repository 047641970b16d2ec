"""Specification of the settings: grouped by concern, one unit convention, old names for one
release, typed per-model policies checked at start-up, and errors that say what to fix."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from rtserve.bundle.policy import FallbackPolicy, OutputPolicy
from rtserve.guard.per_model import ModelPolicies
from rtserve.server.runner import _worker_settings_json
from rtserve.settings import (
    RENAMED,
    ModelPolicySettings,
    SettingDeprecated,
    Settings,
    SettingsError,
    env_name,
)

#: Every leaf that is a duration (seconds, a float, named ``*_s``).
DURATIONS = {
    "rollout.interval_s",
    "server.graceful_timeout_s",
    "server.keep_alive_s",
    "server.drain_delay_s",
    "batching.max_wait_s",
    "batching.inline_predict_s",
    "cache.ttl_s",
    "auth.jwt_leeway_s",
    "limits.body_timeout_s",
    "limits.header_timeout_s",
    "shedding.default_timeout_s",
    "shedding.max_timeout_s",
    "shedding.predict_timeout_s",
    "breaker.open_s",
    "drift.window_s",
    "drift.refresh_s",
    "registry.poll_interval_s",
    "registry.drain_timeout_s",
}
#: Every leaf that is a size in bytes (an int, named ``*_bytes``).
SIZES = {
    "loading.max_bundle_bytes",
    "limits.max_body_bytes",
    "limits.max_header_bytes",
    "decision_log.max_bytes",
}
UNIT_SUFFIXES = ("_s", "_ms", "_us", "_ns", "_seconds", "_minutes", "_bytes", "_kb", "_mb")
#: The only settings outside a group.
TOP_LEVEL = {"bundles", "policies"}


@pytest.fixture(autouse=True)
def _no_rtserve_environment(monkeypatch):
    """Each test sets the variables it means; none leak in from the machine running it."""
    import os

    for name in list(os.environ):
        if name.startswith("RTSERVE_"):
            monkeypatch.delenv(name)


def _field(path: str):
    model: type[BaseModel] = Settings
    *groups, leaf = path.split(".")
    for group in groups:
        model = typing.cast(type[BaseModel], model.model_fields[group].annotation)
    return model.model_fields[leaf]


def write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "rtserve.yml"
    path.write_text(yaml.safe_dump(content))
    return path


# --- grouping and units ----------------------------------------------------------------------


def test_every_setting_but_the_bundle_list_and_the_policies_sits_in_a_group():
    leaves = Settings.leaves()
    assert {leaf for leaf in leaves if "." not in leaf} == TOP_LEVEL
    assert {leaf.split(".")[0] for leaf in leaves} >= {
        "server", "loading", "batching", "cache", "limits", "shedding", "breaker", "logging",
    }  # fmt: skip


def test_every_duration_is_float_seconds_named_s_and_every_size_is_int_bytes_named_bytes():
    leaves = set(Settings.leaves())
    assert leaves >= DURATIONS
    assert leaves >= SIZES
    for path in DURATIONS:
        assert path.endswith("_s"), path
        assert _field(path).annotation is float, path
    for path in SIZES:
        assert path.endswith("_bytes"), path
        assert _field(path).annotation is int, path
    # Anything else carries no unit: a new duration or size must be listed above (and so named).
    for path in leaves - DURATIONS - SIZES:
        assert not path.endswith(UNIT_SUFFIXES), f"{path}: list it in DURATIONS or SIZES"


def test_every_limit_on_a_request_is_in_the_limits_group():
    assert "limits.max_body_bytes" in Settings.leaves()
    assert "max_body_bytes" not in Settings.leaves()


def test_the_runtime_timeout_is_a_deadline_not_a_breaker_setting():
    assert "shedding.predict_timeout_s" in Settings.leaves()
    assert not [leaf for leaf in Settings.leaves() if leaf.startswith("breaker.predict")]


def test_every_rename_points_from_a_name_that_is_gone_to_a_setting_that_exists():
    leaves = set(Settings.leaves())
    for rename in RENAMED:
        assert rename.new in leaves, rename
        assert rename.old not in leaves, rename


# --- old names, for one release ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "raw", "new", "value"),
    [
        ("RTSERVE_PORT", "9000", "server.port", 9000),
        ("RTSERVE_MAX_BODY_BYTES", "2048", "limits.max_body_bytes", 2048),
        ("RTSERVE_MAX_WAIT_MS", "5", "batching.max_wait_s", 0.005),
        ("RTSERVE_INLINE_PREDICT_US", "250", "batching.inline_predict_s", 0.00025),
        ("RTSERVE_SHEDDING__DEFAULT_TIMEOUT_MS", "1500", "shedding.default_timeout_s", 1.5),
        ("RTSERVE_BREAKER__PREDICT_TIMEOUT_MS", "250", "shedding.predict_timeout_s", 0.25),
        ("RTSERVE_LOG_LEVEL", "debug", "logging.level", "debug"),
        ("RTSERVE_CACHE_SIZE", "8", "cache.max_entries", 8),
    ],
)
def test_an_old_environment_name_still_works_with_a_warning_naming_the_new_one(
    monkeypatch, old, raw, new, value
):
    monkeypatch.setenv(old, raw)
    with pytest.warns(SettingDeprecated, match=f"{old} .* read as {env_name(new)}"):
        settings = Settings.load()
    section, leaf = new.split(".")
    assert getattr(getattr(settings, section), leaf) == pytest.approx(value)


def test_the_new_environment_name_wins_over_the_old_one(monkeypatch):
    monkeypatch.setenv("RTSERVE_PORT", "9000")
    monkeypatch.setenv("RTSERVE_SERVER__PORT", "9001")
    with pytest.warns(SettingDeprecated):
        assert Settings.load().server.port == 9001


def test_old_config_file_keys_still_work_with_a_warning_naming_the_new_ones(tmp_path):
    config = write(
        tmp_path,
        {"max_body_bytes": 2048, "log_level": "warning", "breaker": {"predict_timeout_ms": 250}},
    )
    with pytest.warns(SettingDeprecated) as caught:
        settings = Settings.load(config)
    messages = " | ".join(str(w.message) for w in caught)
    assert "'max_body_bytes'" in messages
    assert "limits.max_body_bytes" in messages
    assert "'breaker.predict_timeout_ms'" in messages
    assert "shedding.predict_timeout_s" in messages
    assert settings.limits.max_body_bytes == 2048
    assert settings.logging.level == "warning"
    assert settings.shedding.predict_timeout_s == pytest.approx(0.25)


def test_an_old_millisecond_value_that_is_not_a_number_names_the_old_and_the_new_name(monkeypatch):
    monkeypatch.setenv("RTSERVE_MAX_WAIT_MS", "soon")
    with pytest.warns(SettingDeprecated), pytest.raises(SettingsError) as caught:
        Settings.load()
    assert "RTSERVE_MAX_WAIT_MS" in caught.value.message
    assert "batching.max_wait_s" in caught.value.message


def test_the_deprecation_is_a_warning_the_cli_shows():
    assert issubclass(SettingDeprecated, UserWarning)
    assert not issubclass(SettingDeprecated, DeprecationWarning)


# --- typed policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "path", "rule"),
    [
        ({"fallback": {"mode": "fail_open"}}, "policies.fraud.fallback", "needs a default answer"),
        ({"fallback": {"mode": "sometimes"}}, "policies.fraud.fallback.mode", "'sometimes'"),
        ({"output": {"top_k": 0}}, "policies.fraud.output.top_k", "greater than or equal to 1"),
        ({"fallbak": {"mode": "fail_closed"}}, "policies.fraud.fallbak", "allowed here: fallback"),
        ({"fallback": {"mode": "rule"}}, "policies.fraud.fallback", "at least one rule"),
    ],
)
def test_a_malformed_policy_fails_settings_load_naming_the_key_path_and_the_rule(
    tmp_path, policy, path, rule
):
    config = write(tmp_path, {"policies": {"fraud": policy}})
    with pytest.raises(SettingsError) as caught:
        Settings.load(config)
    assert caught.value.message.startswith(f"{path}: ")
    assert rule in caught.value.message
    assert caught.value.field == path


def test_a_malformed_policy_from_the_environment_says_which_variable_to_fix(monkeypatch):
    monkeypatch.setenv("RTSERVE_POLICIES", json.dumps({"fraud": {"fallback": {"mode": "x"}}}))
    with pytest.raises(SettingsError, match=r"from RTSERVE_POLICIES\) is invalid"):
        Settings.load()


def test_a_valid_policy_is_typed_and_replaces_only_the_part_it_gives():
    settings = Settings.load(
        policies={"fraud": {"fallback": {"mode": "fail_open", "default": {"label": 0}}}}
    )
    override = settings.policies["fraud"]
    assert isinstance(override, ModelPolicySettings)
    assert isinstance(override.fallback, FallbackPolicy)
    bundle_output = OutputPolicy(top_k=1)
    resolved = ModelPolicies.resolve(
        "fraud", FallbackPolicy(mode="fail_closed"), bundle_output, settings.policies
    )
    assert resolved.fallback is not None
    assert resolved.fallback.mode == "fail_open"
    assert resolved.output == bundle_output
    other = ModelPolicies.resolve("churn", None, None, settings.policies)
    assert other == ModelPolicies(None, None)


# --- errors and sources -----------------------------------------------------------------------


def test_an_invalid_value_names_the_key_path_the_value_the_rule_and_where_to_change_it():
    with pytest.raises(SettingsError) as caught:
        Settings.load(limits__max_body_bytes=12)
    assert caught.value.message == (
        "limits.max_body_bytes: 12 (given as an argument) is invalid: input should be greater "
        "than or equal to 1024; set limits.max_body_bytes in the config file or "
        "RTSERVE_LIMITS__MAX_BODY_BYTES"
    )
    assert caught.value.field == "limits.max_body_bytes"


def test_an_error_never_echoes_a_secret(monkeypatch):
    monkeypatch.setenv("RTSERVE_AUTH__JWT_SECRET", "hunter2-very-secret")
    with pytest.raises(SettingsError) as caught:
        Settings.load()  # a secret without issuer and audience is refused
    assert "hunter2" not in caught.value.message
    assert "jwt_issuer and jwt_audience" in caught.value.message


def test_an_unknown_key_lists_the_keys_allowed_there(tmp_path):
    with pytest.raises(SettingsError) as caught:
        Settings.load(write(tmp_path, {"server": {"prot": 80}}))
    assert caught.value.message.startswith("server.prot: unknown setting; allowed here: host, port")


def test_each_value_knows_whether_it_came_from_a_flag_the_environment_the_file_or_the_default(
    tmp_path, monkeypatch
):
    config = write(tmp_path, {"server": {"port": 9000, "workers": 2}, "cache": {"ttl_s": 5}})
    monkeypatch.setenv("RTSERVE_SERVER__WORKERS", "3")
    monkeypatch.setenv("RTSERVE_CACHE__MAX_ENTRIES", "10")
    settings, sources = Settings.resolve(config, {"cache__max_entries": 20})
    assert (settings.server.port, sources["server.port"]) == (9000, "file")
    assert (settings.server.workers, sources["server.workers"]) == (3, "env")
    assert (settings.cache.max_entries, sources["cache.max_entries"]) == (20, "flag")
    assert (settings.cache.ttl_s, sources["cache.ttl_s"]) == (5.0, "file")
    assert (settings.server.host, sources["server.host"]) == ("127.0.0.1", "default")
    assert set(sources) == set(Settings.leaves())


def test_constructing_settings_directly_reads_no_environment(monkeypatch):
    monkeypatch.setenv("RTSERVE_SERVER__PORT", "9000")
    assert Settings().server.port == 8080
    assert Settings.load().server.port == 9000


def test_arguments_given_as_dicts_are_not_modified_by_loading():
    breaker = {"consecutive_failures": 3}
    Settings.load(breaker=breaker, breaker__open_s=0.5)
    assert breaker == {"consecutive_failures": 3}


def test_worker_processes_get_the_same_settings_secrets_and_policies_included(monkeypatch):
    monkeypatch.setenv("RTSERVE_AUTH__JWT_SECRET", "s3cret")
    settings = Settings.load(
        auth={"jwt_issuer": "i", "jwt_audience": "a"},
        policies={"fraud": {"output": {"top_k": 1}}},
        batching__max_wait_s=0.002,
    )
    copy = Settings.model_validate_json(_worker_settings_json(settings))
    assert copy == settings
    assert copy.auth.jwt_secret is not None
    assert copy.auth.jwt_secret.get_secret_value() == "s3cret"


def test_the_registry_clis_plain_rtserve_registry_variable_names_the_registry_a_server_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTSERVE_REGISTRY", "./registry")
    assert Settings.load().registry.url == "./registry"
