"""Both bundles score the same rows: rows either schema refuses (or whose label is missing or
unknown) are counted and listed with every reason; regressors and multiclass models compare too;
models whose outputs differ in kind are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import root_mean_squared_error

import rtserve
from rtserve.errors import ComparisonError
from rtserve.evaluation.compare import Options, compare
from rtserve.evaluation.data import Chunk, parse_source
from rtserve.evaluation.pairing import Side, pair
from tests.conftest import fraud_target, loss_target, risk_target

Loader = Callable[..., rtserve.Predictor]


def _sides(old: rtserve.Predictor, new: rtserve.Predictor) -> tuple[Side, Side]:
    return (
        Side(old.name, old.version, old.digest, "old"),
        Side(new.name, new.version, new.digest, "new"),
    )


@pytest.fixture
def strict_pair(
    build_and_load: Loader, fraud_pipeline: Any, transactions: pd.DataFrame
) -> tuple[rtserve.Predictor, rtserve.Predictor]:
    """OLD refuses an hour above 23, NEW a negative amount; both refuse a missing hour."""
    old = build_and_load(
        fraud_pipeline, transactions, name="fraud", schema_overrides={"hour": {"maximum": 23}}
    )
    new = build_and_load(
        fraud_pipeline,
        transactions,
        name="fraud",
        version="2",
        schema_overrides={"amount": {"minimum": 0.0}},
    )
    return old, new


def test_rows_invalid_for_either_model_are_counted_and_listed_with_their_reasons(
    strict_pair: tuple[rtserve.Predictor, rtserve.Predictor],
    holdout_transactions: pd.DataFrame,
    tmp_path: Path,
) -> None:
    old, new = strict_pair
    rows = json.loads(holdout_transactions.to_json(orient="records"))
    for row, label in zip(rows, fraud_target(holdout_transactions), strict=True):
        row["y"] = int(label)
    rows[3]["hour"] = 30  # OLD's maximum
    rows[5]["amount"] = -1.0  # NEW's minimum
    del rows[7]["hour"]  # both need it
    del rows[9]["y"]  # no label
    rows[11]["y"] = "maybe"  # not a class
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    paired = pair(
        old,
        new,
        parse_source(str(path)).chunks(16, []),  # several chunks
        sides=_sides(old, new),
        labels="y",
        fields=["country"],
    )

    assert paired.rows_read == len(rows)
    assert paired.invalid_count == 5
    assert paired.rows == len(rows) - 5
    assert 3 not in paired.positions
    assert 12 in paired.positions
    reasons = {r.row: [(x.by, x.field, x.rule) for x in r.reasons] for r in paired.invalid}
    assert reasons == {
        3: [("old", "hour", "maximum")],
        5: [("new", "amount", "minimum")],
        7: [("old", "hour", "required"), ("new", "hour", "required")],
        9: [("data", "y", "label_missing")],
        11: [("data", "y", "label_unknown")],
    }
    assert "'maybe' is not one of the classes ['0', '1']" in paired.invalid[-1].reasons[0].error
    assert paired.invalid_reasons[("old", "hour", "required")] == 1
    # the scored rows are the same for both, in order, with labels and segment values
    assert paired.old_labels.shape == paired.new_labels.shape == paired.truth.shape
    assert set(paired.fields["country"]) <= {"DE", "FR", "GB", "NL", "US"}


def test_a_table_with_extra_columns_is_scored_on_each_models_own_fields(
    strict_pair: tuple[rtserve.Predictor, rtserve.Predictor], holdout_transactions: pd.DataFrame
) -> None:
    old, new = strict_pair
    frame = holdout_transactions.assign(y=fraud_target(holdout_transactions), id=range(120))
    paired = pair(old, new, [Chunk(0, frame)], sides=_sides(old, new), labels="y")
    assert paired.invalid_count == 0  # 'y' and 'id' are not inputs: nobody refuses them
    expected = old.predict(holdout_transactions).probabilities
    np.testing.assert_allclose(paired.old_proba, expected)


def test_a_missing_label_column_or_segment_field_is_named(
    strict_pair: tuple[rtserve.Predictor, rtserve.Predictor], holdout_transactions: pd.DataFrame
) -> None:
    old, new = strict_pair
    chunks = [Chunk(0, holdout_transactions)]
    with pytest.raises(ComparisonError, match="--labels is_fraud: the data has no column"):
        pair(old, new, chunks, sides=_sides(old, new), labels="is_fraud")
    with pytest.raises(ComparisonError, match="--segment-by cntry: the data has no column"):
        pair(old, new, chunks, sides=_sides(old, new), fields=["cntry"])


def test_no_valid_row_is_an_error_with_the_commonest_reasons(
    strict_pair: tuple[rtserve.Predictor, rtserve.Predictor], holdout_transactions: pd.DataFrame
) -> None:
    old, new = strict_pair
    broken = holdout_transactions.assign(hour=99)
    with pytest.raises(ComparisonError, match=r"none of the 120 rows.*120 × old hour maximum"):
        pair(old, new, [Chunk(0, broken)], sides=_sides(old, new))


def test_regressors_compare_their_values_and_errors(
    build_and_load: Loader, loss_pipeline: Any, transactions: pd.DataFrame
) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    target = loss_target(transactions)
    stiffer = Pipeline([("prepare", loss_pipeline[0]), ("model", Ridge(alpha=300.0))])
    old = build_and_load(loss_pipeline, transactions, name="loss")
    new = build_and_load(stiffer.fit(transactions, target), transactions, name="loss", version="2")
    frame = transactions.assign(loss=target)
    paired = pair(old, new, [Chunk(0, frame)], sides=_sides(old, new), labels="loss")
    result = compare(paired, source="t", labels="loss", specs=[], options=Options(resamples=200))

    rmse = result.overall.check("rmse_increase")
    assert rmse is not None
    assert rmse.old is not None
    assert rmse.new is not None
    old_values = old.predict(transactions).value
    assert rmse.old == pytest.approx(root_mean_squared_error(target, old_values))
    assert rmse.value == pytest.approx(rmse.new / rmse.old - 1)  # relative to OLD
    assert rmse.value > 0  # heavier regularisation fits worse
    assert result.overall.agreement is None  # regressors have no labels to agree on
    moved = result.overall.deltas["value"]
    new_values = new.predict(transactions).value
    assert moved["max"] == pytest.approx(np.max(np.abs(new_values - old_values)))
    assert {c.metric.delta for c in result.overall.checks} == {
        "value_shift",
        "rmse_increase",
        "mae_increase",
    }


def test_a_multiclass_comparison_aligns_classes_and_averages_auc(
    build_and_load: Loader, risk_pipeline: Any, transactions: pd.DataFrame
) -> None:
    old = build_and_load(risk_pipeline, transactions, name="risk")
    paired = pair(
        old,
        old,
        [Chunk(0, transactions.assign(risk=risk_target(transactions)))],
        sides=_sides(old, old),
        labels="risk",
    )
    result = compare(paired, source="t", labels="risk", specs=[], options=Options(resamples=100))
    assert paired.classes == ["high", "low", "medium"]
    assert result.overall.agreement == 1.0
    assert result.flags == []
    auc = result.overall.check("auc_drop")
    assert auc is not None
    assert auc.value == 0.0
    assert auc.old is not None
    assert auc.old > 0.8
    assert "max_over_classes" in result.overall.deltas


def test_models_answering_different_kinds_of_output_are_refused(
    build_and_load: Loader,
    fraud_pipeline: Any,
    loss_pipeline: Any,
    risk_pipeline: Any,
    transactions: pd.DataFrame,
) -> None:
    fraud = build_and_load(fraud_pipeline, transactions, name="fraud")
    loss = build_and_load(loss_pipeline, transactions, name="loss")
    risk = build_and_load(risk_pipeline, transactions, name="risk")
    chunks = [Chunk(0, transactions)]
    with pytest.raises(ComparisonError, match="different kinds of output"):
        pair(fraud, loss, chunks, sides=_sides(fraud, loss))
    with pytest.raises(ComparisonError, match=r"predict different classes \(\['0', '1'\] vs"):
        pair(fraud, risk, chunks, sides=_sides(fraud, risk))
