"""`rtserve build`: a bundle from a model file and a sample file, with schema overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import rtserve
from rtserve.bundle.schema import MissingPolicy, UnseenPolicy
from tests.unit.cli.conftest import Invoke, ModelFiles, NumericFiles


def _build(cli: Invoke, model: Path, sample: Path, output: Path, *extra: object) -> Any:
    return cli("build", model, "--sample", sample, "--name", "fraud", "--version", "1",
               "--output", output, *extra)  # fmt: skip


def test_build_from_a_skops_file_saves_a_bundle_that_predicts_like_the_model(
    rtserve_cli: Invoke,
    model_files: ModelFiles,
    fraud_pipeline: Any,
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
) -> None:
    result = _build(rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b")

    assert result.exit_code == 0, result.output
    bundle = rtserve.Bundle.open(tmp_path / "b")
    assert bundle.manifest.runtime.format == "skops"
    for text in ("fraud", bundle.digest, "sklearn / skops", "amount", "country", "saved"):
        assert text in result.stdout
    predicted = rtserve.load(tmp_path / "b").predict(holdout_transactions)
    np.testing.assert_allclose(
        predicted.probabilities, fraud_pipeline.predict_proba(holdout_transactions), atol=1e-12
    )


def test_build_reads_a_csv_sample_like_the_parquet_one(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    from_csv = _build(rtserve_cli, model_files.skops, model_files.sample_csv, tmp_path / "c")
    from_parquet = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "p"
    )

    assert from_csv.exit_code == 0, from_csv.output
    assert from_parquet.exit_code == 0, from_parquet.output
    csv_schema = rtserve.Bundle.open(tmp_path / "c").manifest.model_schema
    parquet_schema = rtserve.Bundle.open(tmp_path / "p").manifest.model_schema
    assert csv_schema.inputs == parquet_schema.inputs


def test_build_json_prints_the_saved_bundle_description(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b.tar.gz", "--json"
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    bundle = rtserve.Bundle.open(tmp_path / "b.tar.gz")
    assert document["digest"] == bundle.digest
    assert document["path"] == str(tmp_path / "b.tar.gz")
    assert [
        f["name"] for f in document["schema"]["inputs"]
    ] == bundle.manifest.model_schema.field_names
    assert document["profile_summary"]["rows"] == 400
    assert document["runtime"]["format"] == "skops"


def test_build_applies_set_overrides_over_an_overrides_file(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("hour: {minimum: 0, maximum: 30}\ncountry: {pii: true}\n")

    result = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b",
        "--schema-overrides", overrides,
        "--set", "hour.maximum=23",
        "--set", "amount.minimum=0",
        "--set", "country.unseen=reject",
        "--set", "merchant.missing=impute",
        "--set", "merchant.impute=unknown",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    schema = rtserve.Bundle.open(tmp_path / "b").manifest.model_schema
    assert (schema.field("hour").minimum, schema.field("hour").maximum) == (0, 23)
    assert schema.field("amount").minimum == 0
    assert schema.field("country").pii is True
    assert schema.field("country").unseen is UnseenPolicy.REJECT
    assert schema.field("merchant").missing is MissingPolicy.IMPUTE
    assert schema.field("merchant").impute == "unknown"


def test_build_refuses_an_override_the_sample_breaks(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b",
        "--set", "hour.maximum=5",
    )  # fmt: skip

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "hour" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("model", ["onnx", "xgboost_ubj", "xgboost_json", "lightgbm_txt"])
def test_build_reads_every_safe_native_format(
    rtserve_cli: Invoke, numeric_files: NumericFiles, tmp_path: Path, model: str
) -> None:
    result = _build(
        rtserve_cli, getattr(numeric_files, model), numeric_files.sample, tmp_path / "b"
    )

    assert result.exit_code == 0, result.output
    predictor = rtserve.load(tmp_path / "b")
    assert predictor.check_parity().passed
    assert len(predictor.predict(numeric_files.frame.head(3))) == 3


def test_build_refuses_a_pickle_without_trust_pickle(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = _build(rtserve_cli, model_files.pickle, model_files.sample_parquet, tmp_path / "b")

    assert result.exit_code == 1
    assert "runs code" in result.stderr
    assert "--trust-pickle" in result.stderr
    assert not (tmp_path / "b").exists()


def test_build_from_a_trusted_pickle_says_so_and_stores_a_safe_format(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    result = _build(
        rtserve_cli,
        model_files.pickle,
        model_files.sample_parquet,
        tmp_path / "b",
        "--trust-pickle",
    )

    assert result.exit_code == 0, result.output
    assert "runs code stored in the file" in result.stderr
    assert "your own decision" in result.stderr
    assert rtserve.Bundle.open(tmp_path / "b").manifest.runtime.format == "skops"


def test_build_stores_a_pickle_bundle_only_when_skops_cannot_hold_the_model(
    rtserve_cli: Invoke, numeric_files: NumericFiles, foreign_type_model: Any, tmp_path: Path
) -> None:
    import joblib

    joblib.dump(foreign_type_model, tmp_path / "model.joblib")

    result = _build(
        rtserve_cli,
        tmp_path / "model.joblib",
        numeric_files.sample,
        tmp_path / "b",
        "--trust-pickle",
    )

    assert result.exit_code == 0, result.output
    assert "warning: stored the model as a pickle" in result.stderr
    assert "pickle: loading runs code" in result.stdout
    manifest = rtserve.Bundle.open(tmp_path / "b").manifest
    assert manifest.runtime.unsafe is True


def test_build_refuses_a_skops_file_with_types_outside_ml_libraries(
    rtserve_cli: Invoke, numeric_files: NumericFiles, foreign_type_model: Any, tmp_path: Path
) -> None:
    import skops.io as sio

    sio.dump(foreign_type_model, tmp_path / "model.skops")

    result = _build(rtserve_cli, tmp_path / "model.skops", numeric_files.sample, tmp_path / "b")

    assert result.exit_code == 1
    assert "_operator.neg" in result.stderr
    assert "rtserve will not load" in result.stderr
    assert not (tmp_path / "b").exists()


def test_build_names_a_sample_that_lacks_the_models_columns(
    rtserve_cli: Invoke, model_files: ModelFiles, numeric_files: NumericFiles, tmp_path: Path
) -> None:
    result = _build(rtserve_cli, model_files.skops, numeric_files.sample, tmp_path / "b")

    assert result.exit_code == 1
    assert "cannot predict on the sample" in result.stderr
    assert "Traceback" not in result.output


def test_a_categorical_booster_with_a_csv_sample_says_to_use_parquet(
    rtserve_cli: Invoke, tmp_path: Path
) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=200), "c": pd.Categorical(rng.choice(["x", "y", "z"], 200))}
    )
    model = xgb.XGBClassifier(n_estimators=3, enable_categorical=True, tree_method="hist")
    model.fit(frame, (frame.a > 0).astype(int))
    model.get_booster().save_model(tmp_path / "model.json")
    frame.to_csv(tmp_path / "sample.csv", index=False)
    frame.to_parquet(tmp_path / "sample.parquet")

    from_csv = _build(rtserve_cli, tmp_path / "model.json", tmp_path / "sample.csv", tmp_path / "b")
    from_parquet = _build(
        rtserve_cli, tmp_path / "model.json", tmp_path / "sample.parquet", tmp_path / "b"
    )

    assert from_csv.exit_code == 1
    assert from_csv.stderr.splitlines() == [
        "error: the model treats column(s) c as categorical, but in the sample they have dtype "
        "str, not pandas 'category' (a CSV file cannot carry that dtype); pass the sample as "
        "parquet, or build from Python with a DataFrame whose columns have the training dtypes"
    ]
    assert from_parquet.exit_code == 0, from_parquet.output


def test_build_refuses_to_replace_a_bundle_unless_told_to(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    first = _build(rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b")
    again = _build(rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b")
    replaced = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b", "--overwrite"
    )

    assert first.exit_code == 0, first.output
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert replaced.exit_code == 0, replaced.output


def test_build_refuses_an_unreadable_model_file(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"not": "a booster"}')

    result = _build(rtserve_cli, broken, model_files.sample_parquet, tmp_path / "b")

    assert result.exit_code == 1
    assert "cannot read it as a .json model" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "amount"], "FIELD.ATTR=VALUE"),
        (["--set", "amount.minimun=0"], "not a field attribute"),
        (["--set", "amount.minimum=[0"], "not a YAML scalar"),
        (["--validation-rows", "0"], "--validation-rows"),
    ],
)
def test_build_usage_mistakes_exit_2(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path, args: list[str], message: str
) -> None:
    result = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b", *args
    )

    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "b").exists()


def test_build_with_an_unknown_file_extension_is_a_usage_error(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    odd_sample = tmp_path / "train.xlsx"
    odd_sample.write_bytes(b"")
    odd_model = tmp_path / "model.h5"
    odd_model.write_bytes(b"")

    bad_sample = _build(rtserve_cli, model_files.skops, odd_sample, tmp_path / "b")
    bad_model = _build(rtserve_cli, odd_model, model_files.sample_parquet, tmp_path / "b")
    missing = rtserve_cli("build", model_files.skops, "--sample", model_files.sample_parquet)

    assert (bad_sample.exit_code, bad_model.exit_code, missing.exit_code) == (2, 2, 2)
    assert ".parquet" in bad_sample.stderr
    assert ".skops" in bad_model.stderr
    assert "Missing option" in missing.stderr


def test_build_overrides_file_with_wrong_content_fails_naming_the_file(
    rtserve_cli: Invoke, model_files: ModelFiles, tmp_path: Path
) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("- amount\n")

    result = _build(
        rtserve_cli, model_files.skops, model_files.sample_parquet, tmp_path / "b",
        "--schema-overrides", overrides,
    )  # fmt: skip

    assert result.exit_code == 1
    assert "overrides.yaml" in result.stderr


def test_the_validation_rows_default_in_the_help_is_the_builders() -> None:
    from rtserve.bundle.sample import DEFAULT_ROWS
    from rtserve.cli.bundle_commands import DEFAULT_VALIDATION_ROWS

    assert DEFAULT_VALIDATION_ROWS == DEFAULT_ROWS
