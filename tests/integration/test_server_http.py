"""The HTTP surface of one in-process server: health, metadata, both protocols, every error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

import rtserve
from rtserve.demo import example_record

V2_TYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}


def v2_inputs(frame: pd.DataFrame, predictor: rtserve.Predictor) -> list[dict[str, Any]]:
    """One V2 input per schema field (nulls as JSON null are not allowed in V2, so no NaNs)."""
    inputs = []
    for spec in predictor.schema.inputs:
        values = frame[spec.name].tolist()
        inputs.append(
            {
                "name": spec.name,
                "shape": [len(values)],
                "datatype": V2_TYPE[spec.type.value],
                "data": values,
            }
        )
    return inputs


@pytest.fixture(scope="module")
def fraud(fraud_bundle: Path) -> rtserve.Predictor:
    return rtserve.load(fraud_bundle)


@pytest.fixture(scope="module")
def dense(dense_bundle: Path) -> rtserve.Predictor:
    return rtserve.load(dense_bundle)


@pytest.fixture(scope="module")
def complete_rows(cards: tuple[pd.DataFrame, pd.Series]) -> pd.DataFrame:
    X, _ = cards
    return X.dropna().head(20).reset_index(drop=True)


class TestHealth:
    def test_live_and_ready_answer_200_once_models_are_warm(self, client: TestClient) -> None:
        for path in ("/v2/health/live", "/healthz"):
            assert client.get(path).json() == {"live": True}
        for path in ("/v2/health/ready", "/readyz"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json() == {"ready": True}

    def test_model_ready_with_and_without_version(self, client: TestClient) -> None:
        assert client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}
        assert client.get("/v2/models/fraud/versions/1/ready").status_code == 200
        response = client.get("/v2/models/fraud/versions/7/ready")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


class TestMetadata:
    def test_server_metadata(self, client: TestClient) -> None:
        for path in ("/v2", "/v2/"):
            body = client.get(path).json()
            assert body["name"] == "rtserve"
            assert "binary_tensor_data" in body["extensions"]

    def test_mixed_model_advertises_one_input_per_field(
        self, client: TestClient, fraud: rtserve.Predictor
    ) -> None:
        body = client.get("/v2/models/fraud").json()
        assert body["name"] == "fraud"
        assert body["versions"] == ["1"]
        assert [i["name"] for i in body["inputs"]] == fraud.schema.field_names
        types = {i["name"]: i["datatype"] for i in body["inputs"]}
        assert types["amount"] == "FP64"
        assert types["hour"] == "INT64"
        assert types["country"] == "BYTES"
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["label"]["datatype"] == "INT64"
        assert outputs["probabilities"]["shape"] == [-1, 2]

    def test_the_model_index_lists_every_version_with_its_protocol_state(
        self, client: TestClient
    ) -> None:
        assert client.get("/v2/models").json() == [
            {"name": "dense", "version": "2", "state": "READY"},
            {"name": "fraud", "version": "1", "state": "READY"},
        ]

    def test_the_records_listing_names_each_models_default_version_and_digests(
        self, client: TestClient, fraud: rtserve.Predictor
    ) -> None:
        listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert sorted(listing) == ["dense", "fraud"]
        assert listing["fraud"]["default_version"] == "1"
        assert listing["fraud"]["versions"] == [
            {"version": "1", "state": "ready", "reason": None, "digest": fraud.digest}
        ]

    def test_numeric_model_advertises_a_single_matrix_input(self, client: TestClient) -> None:
        body = client.get("/v2/models/dense/versions/2").json()
        assert len(body["inputs"]) == 1
        assert body["inputs"][0]["shape"] == [-1, 4]

    def test_records_description_holds_json_schema_version_and_digest(
        self, client: TestClient, fraud: rtserve.Predictor
    ) -> None:
        body = client.get("/v1/models/fraud").json()
        assert body["version"] == "1"
        assert body["digest"] == fraud.digest
        assert body["created_at"]
        schema = body["input_schema"]
        assert set(schema["properties"]) == set(fraud.schema.field_names)
        assert schema["properties"]["amount"]["minimum"] == 0.0
        assert "hour" in schema["required"]

    def test_openapi_document_and_docs_page(self, client: TestClient) -> None:
        document = client.get("/openapi.json").json()
        assert "/v2/models/{name}/infer" in document["paths"]
        assert "/v1/models/{name}:predict" in document["paths"]
        assert "swagger" in client.get("/docs").text.lower()


class TestInferV2:
    def test_per_field_inputs_return_the_in_process_predictions(
        self, client: TestClient, fraud: rtserve.Predictor, complete_rows: pd.DataFrame
    ) -> None:
        response = client.post(
            "/v2/models/fraud/infer", json={"id": "r1", "inputs": v2_inputs(complete_rows, fraud)}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_name"] == "fraud"
        assert body["model_version"] == "1"
        assert body["id"] == "r1"
        outputs = {o["name"]: o for o in body["outputs"]}
        expected = fraud.predict(complete_rows)
        assert outputs["label"]["data"] == expected.label.tolist()
        proba = np.array(outputs["probabilities"]["data"]).reshape(
            outputs["probabilities"]["shape"]
        )
        np.testing.assert_allclose(proba, expected.probabilities, rtol=0, atol=1e-12)

    def test_named_outputs_are_the_only_ones_returned(
        self, client: TestClient, fraud: rtserve.Predictor, complete_rows: pd.DataFrame
    ) -> None:
        response = client.post(
            "/v2/models/fraud/versions/1/infer",
            json={
                "inputs": v2_inputs(complete_rows.head(1), fraud),
                "outputs": [{"name": "label"}],
            },
        )
        assert [o["name"] for o in response.json()["outputs"]] == ["label"]

    def test_numeric_model_takes_one_n_by_f_tensor(
        self, client: TestClient, dense: rtserve.Predictor
    ) -> None:
        rows = np.random.default_rng(1).normal(size=(5, 4))
        response = client.post(
            "/v2/models/dense/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": [5, 4],
                        "datatype": "FP64",
                        "data": rows.ravel().tolist(),
                    }
                ]
            },
        )
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        frame = pd.DataFrame(rows, columns=["f0", "f1", "f2", "f3"])
        assert outputs["label"]["data"] == dense.predict(frame).label.tolist()


class TestRecordsApi:
    def test_one_record(self, client: TestClient, fraud: rtserve.Predictor) -> None:
        response = client.post(
            "/v1/models/fraud:predict",
            json={"instances": [example_record()]},
            headers={"X-Request-ID": "abc-123"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "abc-123"
        body = response.json()
        assert body["request_id"] == "abc-123"
        assert body["model"] == {"name": "fraud", "version": "1"}
        assert body["predictions"] == fraud.predict([example_record()]).to_records()

    def test_many_records_with_missing_values(
        self, client: TestClient, fraud: rtserve.Predictor, cards: tuple[pd.DataFrame, pd.Series]
    ) -> None:
        X, _ = cards
        records = [
            {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
            for row in X.head(200).to_dict(orient="records")
        ]
        response = client.post("/v1/models/fraud/versions/1:predict", json={"instances": records})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == fraud.predict(records).to_records()

    def test_a_request_id_is_generated_when_absent(self, client: TestClient) -> None:
        response = client.post("/v1/models/fraud:predict", json={"instances": [example_record()]})
        assert len(response.headers["x-request-id"]) >= 16
        assert response.json()["request_id"] == response.headers["x-request-id"]


class TestErrors:
    def _error(self, response: Any, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert body["code"] == code
        assert body["error"]
        assert "Traceback" not in response.text
        return body

    def test_malformed_json_is_400(self, client: TestClient) -> None:
        for path in ("/v1/models/fraud:predict", "/v2/models/fraud/infer"):
            response = client.post(
                path, content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400
            assert response.json()["code"] == "malformed_request"

    def test_unknown_model_and_version_are_404(self, client: TestClient) -> None:
        self._error(
            client.post("/v1/models/nope:predict", json={"instances": [{}]}), 404, "not_found"
        )
        self._error(client.get("/v2/models/fraud/versions/9"), 404, "not_found")
        self._error(client.get("/no/such/route"), 404, "not_found")

    def test_too_large_body_is_413(self, client: TestClient) -> None:
        big = {"instances": [example_record()] * 2000}
        self._error(client.post("/v1/models/fraud:predict", json=big), 413, "payload_too_large")

    def test_wrong_content_type_is_415(self, client: TestClient) -> None:
        response = client.post(
            "/v1/models/fraud:predict", content=b"amount=1", headers={"Content-Type": "text/plain"}
        )
        self._error(response, 415, "unsupported_media_type")

    def test_schema_violations_are_422_naming_every_field(self, client: TestClient) -> None:
        record = {**example_record(), "amount": -5.0, "hour": "late", "colour": "red"}
        del record["country"]
        body = self._error(
            client.post("/v1/models/fraud:predict", json={"instances": [record]}),
            422,
            "validation_failed",
        )
        assert set(body["fields"]) == {"amount", "hour", "colour", "country"}
        rules = {v["field"]: v["rule"] for v in body["violations"]}
        assert rules == {
            "amount": "minimum",
            "hour": "type",
            "colour": "unknown_field",
            "country": "required",
        }
        assert body["field"] in body["fields"]

    def test_v2_schema_violations_are_422(
        self, client: TestClient, fraud: rtserve.Predictor, complete_rows: pd.DataFrame
    ) -> None:
        inputs = v2_inputs(complete_rows.head(2), fraud)
        for tensor in inputs:
            if tensor["name"] == "amount":
                tensor["data"] = [-1.0, 3.0]
        body = self._error(
            client.post("/v2/models/fraud/infer", json={"inputs": inputs}), 422, "validation_failed"
        )
        assert body["field"] == "amount"

    def test_wrong_method_is_a_json_405(self, client: TestClient) -> None:
        self._error(client.get("/v2/models/fraud/infer"), 405, "method_not_allowed")
