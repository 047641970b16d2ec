"""Request bodies: rows from a bundle or a JSON-lines file, encoded for either protocol."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import rtserve
from rtserve.errors import LoadTestError
from rtserve.loadgen import (
    Protocol,
    Rows,
    encode_bodies,
    request_path,
    rows_from_bundle,
    rows_from_jsonl,
)


@pytest.fixture(scope="module")
def mixed_bundle(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "amount": rng.random(60) * 100,
            "count": rng.integers(0, 5, 60),
            "country": rng.choice(["DE", "FR"], 60),
        }
    )
    X.loc[::7, "amount"] = np.nan
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(
        make_column_transformer(
            (SimpleImputer(), ["amount", "count"]), (OneHotEncoder(), ["country"])
        ),
        LogisticRegression(),
    ).fit(X, (X["count"] > 2).astype(int))
    path = tmp_path_factory.mktemp("bodies") / "mixed-1"
    rtserve.build(model, X, name="mixed", version="1").save(path)
    return path


def test_bundle_rows_are_its_validation_sample_with_its_name_and_field_types(mixed_bundle):
    rows = rows_from_bundle(mixed_bundle)
    assert rows.model == "mixed"
    assert rows.datatypes == {"amount": "FP64", "count": "INT64", "country": "BYTES"}
    assert rows.rows == rtserve.Bundle.open(mixed_bundle).read_validation().records()


def test_records_bodies_hold_the_given_number_of_rows_each(mixed_bundle):
    rows = rows_from_bundle(mixed_bundle)
    bodies = encode_bodies(rows, Protocol.RECORDS, rows_per_request=3)
    first = json.loads(bodies[0])
    assert first == {"instances": rows.rows[:3]}
    assert len(bodies) == len(rows.rows) // 3


def test_v2_bodies_have_one_input_per_schema_field_with_null_for_missing(mixed_bundle):
    rows = rows_from_bundle(mixed_bundle)
    missing = next(i for i, row in enumerate(rows.rows) if "amount" not in row)
    body = json.loads(
        encode_bodies(Rows([rows.rows[missing]], "mixed", rows.datatypes), Protocol.V2)[0]
    )
    by_name = {tensor["name"]: tensor for tensor in body["inputs"]}
    assert list(by_name) == ["amount", "count", "country"]
    assert by_name["amount"] == {"name": "amount", "shape": [1], "datatype": "FP64", "data": [None]}
    assert by_name["country"]["datatype"] == "BYTES"
    assert by_name["count"]["datatype"] == "INT64"


def test_v2_datatypes_are_inferred_from_values_without_a_schema():
    rows = Rows([{"a": 1, "b": 1.5, "c": "x", "d": True}, {"a": 2, "b": 2, "c": None, "d": False}])
    body = msgspec.json.decode(encode_bodies(rows, Protocol.V2, rows_per_request=2)[0])
    assert [(t["name"], t["datatype"], t["shape"]) for t in body["inputs"]] == [
        ("a", "INT64", [2]),
        ("b", "FP64", [2]),
        ("c", "BYTES", [2]),
        ("d", "BOOL", [2]),
    ]
    assert body["inputs"][2]["data"] == ["x", None]


def test_more_rows_per_request_than_rows_cycles_through_them():
    bodies = encode_bodies(Rows([{"a": 1}, {"a": 2}]), Protocol.RECORDS, rows_per_request=5)
    assert json.loads(bodies[0])["instances"] == [{"a": v} for v in (1, 2, 1, 2, 1)]


def test_zero_rows_per_request_is_refused():
    with pytest.raises(LoadTestError, match="rows per request: 0"):
        encode_bodies(Rows([{"a": 1}]), Protocol.RECORDS, rows_per_request=0)


def test_jsonl_rows_are_read_line_by_line_skipping_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2, "b": "x"}\n')
    assert rows_from_jsonl(path) == Rows([{"a": 1}, {"a": 2, "b": "x"}])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}\nnot json\n', r"rows.jsonl line 2: not valid JSON"),
        (
            "[1, 2]\n",
            r"rows.jsonl line 1: expected one JSON object of field values per line, got list",
        ),
        ("\n\n", r"no rows"),
    ],
)
def test_bad_jsonl_files_are_refused_with_the_line(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    with pytest.raises(LoadTestError, match=message):
        rows_from_jsonl(path)


def test_request_paths_follow_each_protocol():
    assert request_path(Protocol.RECORDS, "fraud") == "/v1/models/fraud:predict"
    assert request_path(Protocol.RECORDS, "fraud", "2") == "/v1/models/fraud/versions/2:predict"
    assert request_path(Protocol.V2, "fraud") == "/v2/models/fraud/infer"
    assert request_path(Protocol.V2, "fraud", "2") == "/v2/models/fraud/versions/2/infer"
