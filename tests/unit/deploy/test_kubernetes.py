"""`rtserve k8s`: manifests that strict Kubernetes, the published KServe and Prometheus Operator
CRDs and the ECS API model accept, with probes, drain and hardening that pair with the server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from rtserve.bundle.bundle import Bundle
from rtserve.cli.main import app
from rtserve.deploy.kubernetes import IN_FLIGHT_METRIC
from rtserve.deploy.plan import WATCHDOG_MARGIN_S
from tests.unit.deploy.schemas import KUBERNETES_VERSIONS, crd_errors, ecs_errors

IMAGE = "registry.example.com/fraud@sha256:" + "b" * 64
CORE = ("configmap", "deployment", "service", "hpa", "pdb")
KSERVE_CRD = "serving.kserve.io_inferenceservices.yaml.gz"
MONITOR_CRD = "monitoring.coreos.com_servicemonitors.yaml.gz"


def k8s(*args: object) -> Any:
    return CliRunner().invoke(
        app, ["k8s", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )


@pytest.fixture(scope="module")
def out(fraud_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("k8s")
    result = k8s(fraud_bundle_dir, "--image", IMAGE, "-o", directory)
    assert result.exit_code == 0, result.output
    return directory


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def pod(out: Path) -> dict[str, Any]:
    return load(out / "base" / "deployment.yaml")["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", CORE)
def test_every_core_resource_is_valid_kubernetes_in_strict_mode(out, name, version):
    kubernetes_validate.validate(load(out / "base" / f"{name}.yaml"), version, strict=True)


def test_strict_validation_refuses_an_unknown_field_so_the_check_has_teeth(out):
    deployment = load(out / "base" / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_inference_service_matches_the_published_kserve_crd(out):
    document = load(out / "kserve" / "inferenceservice.yaml")

    assert crd_errors(document, KSERVE_CRD, "v1beta1") == []
    assert document["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"
    kubernetes_validate.validate(load(out / "kserve" / "configmap.yaml"), "1.37.0", strict=True)


def test_the_service_monitor_matches_the_prometheus_operator_crd(out):
    assert crd_errors(load(out / "base" / "servicemonitor.yaml"), MONITOR_CRD, "v1") == []


def test_the_crd_check_refuses_a_misspelled_field(out):
    document = load(out / "kserve" / "inferenceservice.yaml")
    document["spec"]["predictor"]["containers"][0]["readinessprobe"] = {}

    assert crd_errors(document, KSERVE_CRD, "v1beta1")


@pytest.mark.kubectl
@pytest.mark.parametrize("stage", ["staging", "production"])
def test_each_overlay_builds_with_kustomize_into_valid_resources(out, stage):
    built = subprocess.run(
        ["kubectl", "kustomize", str(out / "overlays" / stage)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    documents = list(yaml.safe_load_all(built))

    assert {d["metadata"]["namespace"] for d in documents} == {f"fraud-{stage}"}
    for document in documents:
        if document["kind"] == "ServiceMonitor":
            assert crd_errors(document, MONITOR_CRD, "v1") == []
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)
    kinds = {d["kind"]: d for d in documents}
    if stage == "staging":
        assert kinds["Deployment"]["spec"]["replicas"] == 1
    else:
        assert kinds["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_probes_check_startup_and_liveness_on_healthz_and_readiness_on_readyz(out):
    container = pod(out)["containers"][0]

    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # --startup-s default


def test_the_grace_period_covers_prestop_drain_graceful_timeout_and_the_servers_watchdog(
    fraud_bundle_dir, tmp_path
):
    from rtserve.server.runner import _WATCHDOG_MARGIN_S

    result = k8s(
        fraud_bundle_dir,
        "--image",
        IMAGE,
        "-o",
        tmp_path,
        "--pre-stop-s",
        7,
        "--drain-delay-s",
        3,
        "--graceful-timeout-s",
        20,
    )
    spec = pod(tmp_path)
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}

    assert result.exit_code == 0, result.output
    assert WATCHDOG_MARGIN_S == _WATCHDOG_MARGIN_S
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert env["RTSERVE_SERVER__DRAIN_DELAY_S"] == "3"
    assert env["RTSERVE_SERVER__GRACEFUL_TIMEOUT_S"] == "20"
    assert spec["terminationGracePeriodSeconds"] == 7 + 3 + 20 + 5
    task = json.loads((tmp_path / "ecs" / "task-definition.json").read_text())
    assert task["containerDefinitions"][0]["stopTimeout"] == 3 + 20 + 5


def test_the_drain_environment_names_are_the_servers_setting_names(out):
    from rtserve.settings import Settings, env_name

    names = {e["name"] for e in pod(out)["containers"][0]["env"]} - {"HOME"}

    assert names <= {env_name(path) for path in Settings.leaves()}


def test_the_container_runs_hardened_with_a_writable_tmp_only(out):
    spec = pod(out)
    context = spec["containers"][0]["securityContext"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}

    assert context["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert spec["automountServiceAccountToken"] is False


def test_pods_carry_prometheus_scrape_annotations(out):
    annotations = load(out / "base" / "deployment.yaml")["spec"]["template"]["metadata"][
        "annotations"
    ]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_settings_file_passes_config_check_and_pins_the_bundles_digest(
    out, fraud_bundle_dir, tmp_path
):
    settings_file = tmp_path / "rtserve.yaml"
    settings_file.write_text(load(out / "base" / "configmap.yaml")["data"]["rtserve.yaml"])
    bundle = Bundle.open(fraud_bundle_dir)

    check = CliRunner().invoke(app, ["config", "check", str(settings_file)])
    settings = load(settings_file)

    assert check.exit_code == 0, check.output
    assert settings["loading"]["pinned_digests"] == {bundle.name: bundle.digest}
    assert settings["bundles"] == [f"/models/{bundle.name}-{bundle.version}"]
    assert settings["auth"]["enabled"] is True


def test_credentials_are_referenced_from_the_secret_never_written(out):
    written = [p for p in out.rglob("*") if p.is_file()]
    env = pod(out)["containers"][0]["env"]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}

    assert all(load(p).get("kind") != "Secret" for p in written if p.suffix == ".yaml")
    assert from_secret == {"RTSERVE_AUTH__API_KEYS": {"name": "fraud-secrets", "key": "api-keys"}}
    monitor = load(out / "base" / "servicemonitor.yaml")["spec"]["endpoints"][0]
    assert monitor["authorization"]["credentials"]["key"] == "metrics-api-key"
    assert (
        "kubectl -n fraud-staging create secret generic fraud-secrets"
        in (out / "README.md").read_text()
    )


def test_the_autoscaler_scales_on_cpu_and_the_in_flight_gauge_rtserve_exports(out):
    from rtserve.observability.metrics import Metrics

    metrics = load(out / "base" / "hpa.yaml")["spec"]["metrics"]
    exported = {family.name for family in Metrics().registry.collect()}

    assert metrics[0]["resource"]["name"] == "cpu"
    assert metrics[1]["pods"]["metric"]["name"] == IN_FLIGHT_METRIC
    assert IN_FLIGHT_METRIC in exported
    rule = load(out / "prometheus-adapter-values.yaml")["rules"]["custom"][0]
    assert rule["name"]["as"] == IN_FLIGHT_METRIC


def test_the_ecs_task_definition_matches_the_ecs_api_model(out):
    task = json.loads((out / "ecs" / "task-definition.json").read_text())
    container = task["containerDefinitions"][0]

    assert ecs_errors(task) == []
    assert "/healthz" in container["healthCheck"]["command"][-1]
    assert container["readonlyRootFilesystem"] is True
    assert container["user"] == "10001:10001"


def test_the_ecs_check_refuses_a_misspelled_field(out):
    task = json.loads((out / "ecs" / "task-definition.json").read_text())
    task["containerDefinitions"][0]["stoptimeout"] = 30

    assert ecs_errors(task)


def test_the_ecs_environment_reads_back_as_the_configmap_settings(out, monkeypatch):
    from rtserve.settings import Settings

    task = json.loads((out / "ecs" / "task-definition.json").read_text())
    for variable in task["containerDefinitions"][0]["environment"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    from_env, _ = Settings.resolve(None)
    configmap = load(out / "base" / "configmap.yaml")["data"]["rtserve.yaml"]
    from_file, _ = Settings.resolve(None, yaml.safe_load(configmap), read_env=False)

    assert from_env.bundles == from_file.bundles
    assert from_env.loading.pinned_digests == from_file.loading.pinned_digests
    assert from_env.server.host == from_file.server.host == "0.0.0.0"  # noqa: S104 - in a pod
    assert from_env.server.drain_delay_s == 5.0


def test_a_drain_longer_than_ecs_allows_is_refused_unless_ecs_is_left_out(
    fraud_bundle_dir, tmp_path
):
    refused = k8s(
        fraud_bundle_dir, "--image", IMAGE, "-o", tmp_path / "a", "--graceful-timeout-s", 200
    )
    accepted = k8s(
        fraud_bundle_dir,
        "--image",
        IMAGE,
        "-o",
        tmp_path / "b",
        "--graceful-timeout-s",
        200,
        "--no-ecs",
    )

    assert refused.exit_code == 1
    assert "at most 120 s" in refused.output
    assert not (tmp_path / "a").exists()
    assert accepted.exit_code == 0, accepted.output
    assert not (tmp_path / "b" / "ecs").exists()


def test_a_registry_reference_is_served_from_the_image_and_pinned_only_with_a_digest(tmp_path):
    digest = "sha256:" + "c" * 64
    loose = k8s("churn_model:3", "--image", IMAGE, "-o", tmp_path / "a")
    pinned = k8s(f"churn_model:3@{digest}", "--image", IMAGE, "-o", tmp_path / "b")

    loose_settings = load(tmp_path / "a" / "base" / "configmap.yaml")["data"]["rtserve.yaml"]
    assert loose.exit_code == 0
    assert "not pinned by digest: churn_model:3" in loose.output
    assert "loading" not in yaml.safe_load(loose_settings)
    pinned_settings = yaml.safe_load(
        load(tmp_path / "b" / "base" / "configmap.yaml")["data"]["rtserve.yaml"]
    )
    assert pinned.exit_code == 0, pinned.output
    assert pinned_settings["loading"]["pinned_digests"] == {"churn_model": digest}
    assert pinned_settings["bundles"] == ["/models/churn_model-3"]
    assert load(tmp_path / "b" / "base" / "service.yaml")["metadata"]["name"] == "churn-model"


def test_bundles_on_a_volume_are_mounted_read_only_at_models(fraud_bundle_dir, tmp_path):
    result = k8s(fraud_bundle_dir, "--image", IMAGE, "-o", tmp_path, "--bundle-claim", "models-pvc")
    spec = pod(tmp_path)
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")

    assert result.exit_code == 0, result.output
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    kubernetes_validate.validate(load(tmp_path / "base" / "deployment.yaml"), "1.37.0", strict=True)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["no/such/bundle"], "neither a bundle"),
        (
            ["fraud:1", "--pre-stop-s", "0", "--drain-delay-s", "0"],
            "--pre-stop-s 0 with --drain-delay-s 0",
        ),
        (["fraud:1", "--name", "Fraud_Model"], "not a valid Kubernetes name"),
        (["fraud:1", "--memory-limit", "lots"], "not a Kubernetes quantity"),
        (["fraud:1", "--replicas", "5", "--max-replicas", "2"], "below --replicas"),
        (["fraud:1", "fraud:2"], "given twice"),
        (["fraud:1", "--jwt-issuer", "https://idp.example.com"], "--jwt-audience together"),
    ],
)
def test_unusable_inputs_exit_1_with_one_error_line_naming_the_fix(tmp_path, args, says):
    result = k8s(*args, "--image", IMAGE, "-o", tmp_path / "out")

    assert result.exit_code == 1
    assert says in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_output_directory_with_files_is_kept_unless_overwrite_is_given(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    refused = k8s("fraud:1", "--image", IMAGE, "-o", tmp_path)
    allowed = k8s("fraud:1", "--image", IMAGE, "-o", tmp_path, "--overwrite")

    assert refused.exit_code == 1
    assert "--overwrite" in refused.output
    assert allowed.exit_code == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_documented_command_writes_files_that_validate(fraud_bundle_dir, tmp_path, monkeypatch):
    docs = (Path(__file__).parents[3] / "docs" / "deploy.md").read_text()
    section = docs.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    command = next(
        line for line in section.splitlines() if line.startswith("rtserve k8s ")
    ).split()[1:]
    (tmp_path / "bundles").mkdir()
    shutil.copytree(fraud_bundle_dir, tmp_path / "bundles" / "fraud-1")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, command)

    assert result.exit_code == 0, result.output
    for name in CORE:
        kubernetes_validate.validate(
            load(tmp_path / "deploy" / "base" / f"{name}.yaml"), "1.37.0", strict=True
        )
    assert (
        crd_errors(
            load(tmp_path / "deploy" / "kserve" / "inferenceservice.yaml"), KSERVE_CRD, "v1beta1"
        )
        == []
    )


def test_bearer_tokens_add_the_jwt_secret_reference_and_the_issuer_setting(tmp_path):
    result = k8s(
        "fraud:1",
        "--image",
        IMAGE,
        "-o",
        tmp_path,
        "--jwt-issuer",
        "https://idp.example.com",
        "--jwt-audience",
        "rtserve",
    )
    env = {e["name"]: e for e in pod(tmp_path)["containers"][0]["env"]}
    settings = yaml.safe_load(load(tmp_path / "base" / "configmap.yaml")["data"]["rtserve.yaml"])

    assert result.exit_code == 0, result.output
    assert env["RTSERVE_AUTH__JWT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "jwt-secret"
    assert settings["auth"]["jwt_issuer"] == "https://idp.example.com"
    assert "--from-literal=jwt-secret=" in (tmp_path / "README.md").read_text()
