"""The nginx configuration `rtserve replicas` generates: accepted by `nginx -t`, with passive
health, keep-alive to the replicas, retries of idempotent predictions and rtserve's own limits."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtserve.cli.main import app
from rtserve.deploy.nginx import Backend, Balancer, render
from rtserve.deploy.replicas import admin_socket_path, write_config
from rtserve.errors import DeployError
from rtserve.settings import Settings

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def balancer(**overrides: Any) -> Balancer:
    settings = Settings.load(
        limits={"max_body_bytes": 1 << 20, "header_timeout_s": 7, "body_timeout_s": 12.5},
        shedding={"max_timeout_s": 60},
    )
    backends = [Backend(0, 18001), Backend(1, 18002), Backend(2, 18003)]
    return Balancer.for_settings(
        settings, host="127.0.0.1", port=18000, backends=backends, **overrides
    )


def nginx_accepts(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-p", f"{directory}/", "-c", str(directory / "nginx.conf"),
         "-e", "logs/error.log"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def replicas(*args: object) -> Any:
    return CliRunner().invoke(
        app, ["replicas", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )


@pytest.mark.nginx
@pytest.mark.parametrize("admin", [False, True])
def test_nginx_accepts_the_generated_configuration(tmp_path, admin):
    config = balancer(admin_socket=str(admin_socket_path(tmp_path)) if admin else None)
    down = config.with_backends([Backend(0, 18001), Backend(1, 18002, False, "starting")], 3)
    write_config(tmp_path, down)
    done = nginx_accepts(tmp_path)
    assert done.returncode == 0, done.stderr


def test_every_replica_is_an_upstream_with_passive_health_and_a_keepalive_pool():
    text = render(balancer())
    servers = re.findall(r"^\s+server (\S+) max_fails=2 fail_timeout=5s;", text, re.MULTILINE)
    assert servers == ["127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"]
    assert "keepalive 32;" in text
    assert "keepalive_timeout 4s;" in text  # before uvicorn closes idle connections (5 s)
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text


def test_failed_refused_and_shed_predictions_go_to_the_next_replica_a_bounded_number_of_times():
    text = render(balancer())
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert "proxy_next_upstream_tries 3;" in text


def test_limits_and_timeouts_follow_the_replicas_settings():
    text = render(balancer())
    assert "client_max_body_size 1048576;" in text
    assert "client_header_timeout 7s;" in text
    assert "client_body_timeout 12500ms;" in text
    # longer than the longest deadline a client may ask for: the replica answers 504 first
    assert "proxy_read_timeout 65s;" in text


def test_the_request_id_is_passed_through_or_made_and_every_request_is_logged_as_json():
    text = render(balancer())
    assert "proxy_set_header X-Request-ID $rtserve_request_id;" in text
    assert re.search(r'map \$http_x_request_id \$rtserve_request_id \{\s+default '
                     r'\$http_x_request_id;\s+"" \$request_id;', text)  # fmt: skip
    assert "access_log logs/access.log rtserve;" in text
    assert '"upstream":"$upstream_addr"' in text


def test_client_keepalive_is_off_unless_asked_for():
    assert "keepalive_timeout 0;" in render(balancer())
    assert "keepalive_timeout 75s;" in render(balancer(client_keepalive_s=75))


def test_a_replica_out_of_rotation_is_down_but_with_none_ready_all_stay_listed():
    one_out = [Backend(0, 18001), Backend(1, 18002, False, "draining")]
    text = render(balancer().with_backends(one_out, 1))
    assert "server 127.0.0.1:18002 down;  # replica 1: draining" in text
    assert "(generation 1)" in text
    all_out = [Backend(0, 18001, False, "starting"), Backend(1, 18002, False, "starting")]
    assert " down;" not in render(balancer().with_backends(all_out, 2))


def test_the_admin_socket_answers_the_generation_only_when_supervised(tmp_path):
    assert "listen unix:" not in render(balancer())
    socket = str(admin_socket_path(tmp_path))
    text = render(balancer(admin_socket=socket).with_backends([Backend(0, 18001)], 7))
    assert f"listen unix:{socket};" in text
    assert 'return 200 "7\\n";' in text


def test_a_run_directory_too_long_for_a_unix_socket_is_refused(tmp_path):
    with pytest.raises(DeployError, match="--run-dir") as caught:
        admin_socket_path(tmp_path / ("x" * 120))
    assert caught.value.field == "--run-dir"


def test_write_config_writes_nginx_conf_and_the_replica_commands(fraud_bundle_dir, tmp_path):
    result = replicas(fraud_bundle_dir, "-n", 3, "--port", 18080, "--write-config", tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "nginx.conf").read_text()
    assert re.findall(r"server 127.0.0.1:(\d+) max_fails", text) == ["18081", "18082", "18083"]
    assert "listen 127.0.0.1:18080;" in text
    assert "listen unix:" not in text  # no supervisor to answer
    assert f"rtserve serve {fraud_bundle_dir} --port 18083" in result.output
    assert (tmp_path / "logs").is_dir()
    assert (tmp_path / "temp").is_dir()


def test_the_listen_port_may_not_be_a_replica_port(fraud_bundle_dir, tmp_path):
    result = replicas(
        fraud_bundle_dir, "-n", 2, "--port", 18081, "--replica-ports", 18080,
        "--write-config", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--replica-ports" in result.output


def test_a_missing_bundle_is_a_usage_error(tmp_path):
    result = replicas(tmp_path / "nope", "-n", 2)
    assert result.exit_code == 2
    assert "no such bundle" in result.output
