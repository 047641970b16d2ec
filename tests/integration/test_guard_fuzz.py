"""Fuzzing the HTTP surface with schemathesis: our own OpenAPI document and the Open Inference
Protocol's REST spec. Every answer is below 500; every rejection is a 4xx JSON error body that
names the offending field where there is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from starlette.applications import Starlette

from rtserve.engine.manager import ModelManager
from rtserve.server.app import create_app
from rtserve.settings import Settings

#: Vendored from kserve/open-inference-protocol (see the SOURCE.md beside it).
OIP_SPEC = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "open-inference-protocol"
    / "open_inference_rest.yaml"
)
#: Rejections of a request body name the part of it they refuse (``field``) or say "body".
BODY_ERRORS = (400, 413, 415, 422)


def ready_app(*bundles: Path) -> Starlette:
    """An app with its models loaded up front (ready without a lifespan; each schema gets its
    own, as a client that runs the lifespan unloads the models when it closes)."""
    settings = Settings.load(limits__max_body_bytes=64 * 1024)
    manager = ModelManager(settings)
    for bundle in bundles:
        assert manager.load(bundle).ready
    return create_app(settings, manager)


@pytest.fixture
def own_schema(fraud_bundle: Path, dense_bundle: Path) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", ready_app(fraud_bundle, dense_bundle))


@pytest.fixture
def oip_schema(fraud_bundle: Path, dense_bundle: Path) -> Any:
    document = yaml.safe_load(OIP_SPEC.read_text())
    # The spec writes path parameters as ${NAME}; OpenAPI templating is {NAME}.
    document["paths"] = {path.replace("${", "{"): item for path, item in document["paths"].items()}
    schema = schemathesis.openapi.from_dict(document)
    schema.app = ready_app(fraud_bundle, dense_bundle)
    return schema


def check_answer(case: Any, response: Any) -> None:
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert {"error", "code"} <= set(body), f"{where}: error body {body}"
        if response.status_code in BODY_ERRORS and case.method == "POST":
            named = body.get("field") is not None  # "" is a real (empty) key of a record
            assert named or body["error"].startswith("body"), f"{where}: no field named in {body}"


FUZZ = settings(
    max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def fuzz(schema: Any, path_parameters: dict[str, str]) -> int:
    """Fuzz every operation of ``schema``; known path parameters point at a served model."""
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @FUZZ
        @given(case=operation.as_strategy())
        def one(case: Any) -> None:
            if case.path_parameters:
                known = {k: v for k, v in path_parameters.items() if k in case.path_parameters}
                case.path_parameters = {**case.path_parameters, **known}
            check_answer(case, case.call())

        one()
    return operations


@pytest.mark.slow
def test_our_openapi_document_fuzzed_gives_no_5xx_and_named_4xx(own_schema: Any) -> None:
    assert fuzz(own_schema, {"name": "dense"}) >= 10


@pytest.mark.slow
def test_the_open_inference_protocol_spec_fuzzed_gives_no_5xx_and_named_4xx(
    oip_schema: Any,
) -> None:
    assert fuzz(oip_schema, {"MODEL_NAME": "dense", "MODEL_VERSION": "2"}) == 6
