"""``rtserve bench`` end to end: a real ``rtserve serve`` process, both protocols, the CLI's output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from rtserve.cli.main import app
from rtserve.loadgen.launch import Launched, free_port, launch, rtserve_command

pytestmark = pytest.mark.integration


def bench(*args: object) -> Result:
    return CliRunner().invoke(
        app, ["bench", *map(str, args)], env={"NO_COLOR": "1", "COLUMNS": "200"}
    )


@pytest.fixture(scope="module")
def served(fraud_bundle: Path, dense_bundle: Path) -> Iterator[Launched]:
    """One real server process with both bundles."""
    port = free_port()
    command = rtserve_command([fraud_bundle, dense_bundle], port)
    with launch(command, f"http://127.0.0.1:{port}", "/v2/health/ready") as server:
        yield server


def document(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("protocol", ["records", "v2"])
@pytest.mark.parametrize("which", ["fraud", "dense"])
def test_every_answer_of_both_protocols_succeeds_for_mixed_and_dense_models(
    served, fraud_bundle, dense_bundle, protocol, which
):
    bundle = fraud_bundle if which == "fraud" else dense_bundle
    report = document(
        bench(
            served.url,
            "--bundle",
            bundle,
            "--protocol",
            protocol,
            "-n",
            60,
            "-c",
            4,
            "--warmup",
            0,
            "--json",
        )
    )
    result = report["result"]
    assert report["model"] == which
    assert report["path"] == (
        f"/v1/models/{which}:predict" if protocol == "records" else f"/v2/models/{which}/infer"
    )
    assert (result["ok"], result["error_count"], result["sent"]) == (60, 0, 60)
    assert (
        0
        < result["latency_ms"]["p50"]
        <= result["latency_ms"]["p99"]
        <= result["latency_ms"]["max"]
    )


def test_several_rows_per_request_and_an_open_loop(served, fraud_bundle):
    report = document(
        bench(
            served.url,
            "--bundle",
            fraud_bundle,
            "--rows",
            8,
            "--rate",
            50,
            "-d",
            1,
            "--warmup",
            0,
            "--json",
        )
    )
    assert report["rows_per_request"] == 8
    assert report["result"]["mode"] == "open"
    assert report["result"]["sent"] == 50
    assert report["result"]["error_count"] == 0


def test_rows_from_a_jsonl_file_need_the_model_name(served, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(json.dumps({"f0": v, "f1": 0.5, "f2": -1.0, "f3": 2.0}) for v in (0.1, 0.2))
    )
    report = document(
        bench(served.url, "--data", rows, "--model", "dense", "-n", 20, "--warmup", 0, "--json")
    )
    assert report["result"]["ok"] == 20
    refused = bench(served.url, "--data", rows, "-n", 20)
    assert refused.exit_code == 2
    assert "--model" in refused.output


def test_wrong_bodies_show_up_as_error_counts_by_status(served, fraud_bundle):
    # The fraud bundle's rows sent to the dense model: every answer is a 4xx, none is hidden.
    report = document(
        bench(
            served.url,
            "--bundle",
            fraud_bundle,
            "--model",
            "dense",
            "-n",
            30,
            "--warmup",
            0,
            "--json",
        )
    )
    result = report["result"]
    assert result["ok"] == 0
    assert result["errors"] == {"422": 30}


def test_a_bundle_target_is_served_timed_and_benched(dense_bundle):
    report = document(
        bench(dense_bundle, "-n", 50, "-c", 2, "--warmup", 0, "--self-test", "--json")
    )
    assert report["startup_s"] > 0
    assert report["result"]["ok"] == 50
    assert report["self_test"]["ok"] == 50  # the bare server, with the same load
    assert report["self_test"]["error_count"] == 0


def test_the_table_shows_percentiles_and_errors(served, dense_bundle):
    result = bench(served.url, "--bundle", dense_bundle, "-n", 30, "--warmup", 0)
    assert result.exit_code == 0, result.output
    for word in ("p50", "p90", "p99", "p99.9", "req/s", "errors", "target"):
        assert word in result.stdout


def test_a_url_where_nothing_listens_is_a_one_line_error(dense_bundle):
    result = bench(f"http://127.0.0.1:{free_port()}", "--bundle", dense_bundle, "-n", 5)
    assert result.exit_code == 1
    assert "error: cannot connect to http://127.0.0.1" in result.stderr


def test_a_url_without_bodies_is_a_usage_error():
    result = bench("http://127.0.0.1:9", "-n", 5)
    assert result.exit_code == 2
    assert "--bundle or --data" in result.output
