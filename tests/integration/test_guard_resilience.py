"""Deadlines, admission control, circuit breaker + fallbacks, disconnects and output hardening,
with failing, hanging and slow runtimes injected under the real data plane."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import yaml

from rtserve.building.reseal import reseal
from rtserve.demo import example_record
from tests.integration.guard_support import (
    client_for,
    guarded_app,
    live_server,
    records_body,
    v2_body,
)

FAIL_OPEN = {"dense": {"fallback": {"mode": "fail_open", "default": {"label": 0}}}}
BREAKER = {"consecutive_failures": 3, "open_s": 0.5, "min_calls": 100}


def predict(client: Any, rows: int = 1, **headers: str) -> httpx.Response:
    return client.post("/v1/models/dense:predict", json=records_body(rows), headers=headers)


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class TestFallbacksAndBreaker:
    def test_a_failing_runtime_is_answered_by_fail_open_and_marked_in_both_apis(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(dense_bundle, policies=FAIL_OPEN, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            response = predict(client, rows=2)
            assert response.status_code == 200
            assert response.headers["rtserve-fallback"] == "fail_open"
            assert [p["label"] for p in response.json()["predictions"]] == [0, 0]
            response = client.post("/v2/models/dense/infer", json=v2_body())
            assert response.status_code == 200
            assert response.headers["rtserve-fallback"] == "fail_open"
            assert response.json()["parameters"] == {"fallback": "fail_open"}
        assert served.guard is not None
        assert served.guard.stats()["fallbacks"] == {"runtime_error": 2}

    def test_the_breaker_opens_answers_the_fallback_without_calling_the_runtime_then_probes(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(dense_bundle, policies=FAIL_OPEN, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            for _ in range(3):
                assert predict(client).headers["rtserve-fallback"] == "fail_open"
            assert served.guard is not None
            assert served.guard.breaker.state == "open"
            calls = runtime.calls
            for _ in range(5):
                assert predict(client).headers["rtserve-fallback"] == "fail_open"
            assert runtime.calls == calls  # open: the runtime is left alone
            runtime.failing = False
            time.sleep(0.6)  # open_s passes: the next call is the half-open probe
            response = predict(client)
            assert "rtserve-fallback" not in response.headers
            assert served.guard.breaker.state == "closed"
            assert runtime.calls == calls + 1
        stats = served.guard.stats()
        assert stats["fallbacks"] == {"runtime_error": 3, "circuit_open": 5}
        assert stats["breaker_opened"] == 1

    def test_without_a_fallback_failures_are_500_and_an_open_breaker_503(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(dense_bundle, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            for _ in range(3):
                assert predict(client).json()["code"] == "prediction_failed"
            response = predict(client)
            assert response.status_code == 503
            assert response.json()["code"] == "model_unavailable"
            assert int(response.headers["retry-after"]) >= 1
        assert served.guard is not None
        assert served.guard.stats()["rejections"] == {"circuit_open": 1}

    def test_fail_closed_answers_503(self, dense_bundle: Path) -> None:
        policies = {"dense": {"fallback": {"mode": "fail_closed"}}}
        app, _, runtime = guarded_app(dense_bundle, policies=policies, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            response = predict(client)
        assert response.status_code == 503
        assert "fail_closed" in response.json()["error"]

    def test_a_rule_fallback_answers_per_row_from_the_inputs(self, fraud_bundle: Path) -> None:
        policies = {
            "fraud": {
                "fallback": {
                    "mode": "rule",
                    "rules": [
                        {"when": "amount > 1000 and channel == 'web'", "answer": {"label": 1}}
                    ],
                    "default": {"label": 0},
                }
            }
        }
        app, _served, runtime = guarded_app(fraud_bundle, policies=policies, breaker=BREAKER)
        runtime.failing = True
        rows = [{**example_record(), "amount": 5000.0}, {**example_record(), "amount": 10.0}]
        with client_for(app) as client:
            response = client.post("/v1/models/fraud:predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        assert response.headers["rtserve-fallback"] == "rule"
        assert [p["label"] for p in response.json()["predictions"]] == [1, 0]

    def test_a_hanging_runtime_times_out_into_the_fallback_and_opens_the_breaker(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(
            dense_bundle, policies=FAIL_OPEN, breaker=BREAKER, shedding__predict_timeout_s=0.3
        )
        with client_for(app) as client:
            assert "rtserve-fallback" not in predict(client).headers
            runtime.hold()
            started = time.monotonic()
            assert predict(client).headers["rtserve-fallback"] == "fail_open"
            assert 0.25 < time.monotonic() - started < 3
            started = time.monotonic()  # the runtime is known stuck: no more waiting
            for _ in range(3):
                assert predict(client).headers["rtserve-fallback"] == "fail_open"
            assert time.monotonic() - started < 1.0
            assert served.guard is not None
            assert served.guard.breaker.state == "open"
            runtime.release()
            time.sleep(0.6)
            assert "rtserve-fallback" not in predict(client).headers
        # one timed out after 300 ms, two found the runtime stuck (the third opened the breaker)
        assert served.guard.stats()["fallbacks"] == {"runtime_timeout": 3, "circuit_open": 1}

    def test_a_policy_declared_in_the_bundle_applies_and_config_overrides_it(
        self, dense_bundle: Path, tmp_path: Path
    ) -> None:
        bundle = tmp_path / "dense-declared"
        shutil.copytree(dense_bundle, bundle)
        manifest = yaml.safe_load((bundle / "rtserve.yaml").read_text())
        manifest["fallback"] = {"mode": "fail_open", "default": {"label": 1}}
        manifest["output"] = {"round_probabilities": 1}
        (bundle / "rtserve.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        reseal(bundle)
        app, _, runtime = guarded_app(bundle, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            assert [p["label"] for p in predict(client).json()["predictions"]] == [1]
        override = {"dense": {"fallback": {"mode": "fail_open", "default": {"label": 0}}}}
        app, _, runtime = guarded_app(bundle, policies=override, breaker=BREAKER)
        runtime.failing = True
        with client_for(app) as client:
            assert [p["label"] for p in predict(client).json()["predictions"]] == [0]

    def test_an_invalid_policy_fails_the_model_with_the_reason(self, dense_bundle: Path) -> None:
        from rtserve.engine.manager import ModelManager
        from rtserve.settings import Settings

        bad = {
            "dense": {
                "fallback": {"mode": "rule", "rules": [{"when": "f9 > 1", "answer": {"label": 1}}]}
            }
        }
        served = ModelManager(Settings.load(policies=bad)).load(dense_bundle)
        assert served.state == "failed"
        assert "'f9', which is not an input field" in served.reason


class TestOutputHardening:
    def test_rounding_and_top_k_apply_to_both_apis(self, dense_bundle: Path) -> None:
        policies = {"dense": {"output": {"round_probabilities": 2, "top_k": 1}}}
        app, _, _ = guarded_app(dense_bundle, policies=policies)
        with client_for(app) as client:
            record = predict(client).json()["predictions"][0]
            outputs = {
                o["name"]: o
                for o in client.post("/v2/models/dense/infer", json=v2_body()).json()["outputs"]
            }
        probabilities = list(record["probabilities"].values())
        assert sorted(probabilities)[0] == 0.0
        assert all(round(p, 2) == p for p in probabilities)
        assert outputs["probabilities"]["data"] == probabilities


class TestDeadlinesAndAdmission:
    def test_an_expired_request_is_504_and_the_model_never_runs_for_it(
        self, dense_bundle: Path
    ) -> None:
        app, _, runtime = guarded_app(dense_bundle)
        with client_for(app) as client:
            response = predict(client, **{"x-request-timeout-ms": "0.001"})
        assert response.status_code == 504
        assert response.json()["code"] == "deadline_exceeded"
        assert runtime.calls == 0

    def test_queued_work_whose_deadline_passes_is_504_and_never_predicted(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(dense_bundle, batching__runtime_threads=1)
        runtime.hold()
        with live_server(app) as url:
            first = threading.Thread(
                target=httpx.post,
                args=(f"{url}/v1/models/dense:predict",),
                kwargs={"json": records_body(), "timeout": 30},
            )
            first.start()
            wait_until(lambda: runtime.calls == 1)
            started = time.monotonic()
            response = httpx.post(
                f"{url}/v1/models/dense:predict",
                json=records_body(7),
                headers={"x-request-timeout-ms": "300"},
                timeout=30,
            )
            assert response.status_code == 504
            assert 0.25 < time.monotonic() - started < 3
            runtime.release()
            first.join(timeout=30)
            assert (
                httpx.post(f"{url}/v1/models/dense:predict", json=records_body()).status_code == 200
            )
        assert runtime.rows_seen == 2  # the held request and the last one; never the 7 expired rows
        assert served.guard is not None
        assert served.guard.stats()["rejections"]["deadline_expired"] == 1

    def test_a_full_queue_sheds_at_once_with_503_retry_after_and_liveness_stays_200(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(
            dense_bundle, batching__runtime_threads=1, shedding={"max_queue": 1}
        )
        runtime.hold()
        with live_server(app) as url:
            threads = [
                threading.Thread(
                    target=httpx.post,
                    args=(f"{url}/v1/models/dense:predict",),
                    kwargs={"json": records_body(), "timeout": 30},
                )
                for _ in range(2)
            ]
            threads[0].start()
            wait_until(lambda: runtime.calls == 1)
            threads[1].start()
            assert served.batcher is not None
            wait_until(lambda: served.batcher.queued == 1)
            started = time.monotonic()
            response = httpx.post(f"{url}/v1/models/dense:predict", json=records_body())
            shed_seconds = time.monotonic() - started
            assert httpx.get(f"{url}/v2/health/live").status_code == 200
            runtime.release()
            for thread in threads:
                thread.join(timeout=30)
        assert response.status_code == 503
        assert response.json()["code"] == "overloaded"
        assert int(response.headers["retry-after"]) >= 1
        assert shed_seconds < 0.5
        assert served.guard is not None
        assert served.guard.stats()["rejections"] == {"queue_full": 1}

    def test_an_expected_wait_beyond_the_deadline_is_shed(self, dense_bundle: Path) -> None:
        app, served, _ = guarded_app(dense_bundle, delay=0.4, batching__runtime_threads=1)
        with live_server(app) as url:
            assert (
                httpx.post(f"{url}/v1/models/dense:predict", json=records_body()).status_code == 200
            )  # learns ~0.4 s
            busy = threading.Thread(
                target=httpx.post,
                args=(f"{url}/v1/models/dense:predict",),
                kwargs={"json": records_body(), "timeout": 30},
            )
            busy.start()
            assert served.batcher is not None
            wait_until(lambda: served.batcher.busy == 1)
            response = httpx.post(
                f"{url}/v1/models/dense:predict",
                json=records_body(),
                headers={"x-request-timeout-ms": "200"},
            )
            busy.join(timeout=30)
        assert response.status_code == 503
        assert "expected wait" in response.json()["error"]
        assert served.guard is not None
        assert served.guard.stats()["rejections"] == {"expected_wait": 1}

    def test_a_client_that_disconnects_has_its_queued_work_cancelled(
        self, dense_bundle: Path
    ) -> None:
        app, served, runtime = guarded_app(dense_bundle, batching__runtime_threads=1)
        runtime.hold()
        with live_server(app) as url:
            first = threading.Thread(
                target=httpx.post,
                args=(f"{url}/v1/models/dense:predict",),
                kwargs={"json": records_body(), "timeout": 30},
            )
            first.start()
            wait_until(lambda: runtime.calls == 1)
            address = urlparse(url)
            body = httpx.Request("POST", "http://x", json=records_body(5)).content
            with socket.create_connection((address.hostname, address.port)) as gone:
                gone.sendall(
                    b"POST /v1/models/dense:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                assert served.batcher is not None
                wait_until(lambda: served.batcher.queued == 1)
            wait_until(lambda: app.state.guards.rejections["client_disconnected"] == 1)
            runtime.release()
            first.join(timeout=30)
        assert runtime.calls == 1
        assert runtime.rows_seen == 1
