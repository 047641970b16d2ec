"""Two real models that differ in one segment only, built as bundles, for the compare tests.

OLD is a gradient-boosted pipeline fitted on card transactions labelled by ``fraud_target``.
NEW is the same pipeline fitted on the same rows, except that the labels of one country's rows
are inverted (what a broken join or a mislabelled feed of one market would do). Gradient
boosting splits on the country, so the two models agree almost everywhere else; in that country
NEW ranks risk backwards. Holdout rows carry the true labels in column ``y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rtserve
from tests.conftest import fraud_target, make_transactions

LABEL = "y"
CHANGED_COUNTRY = "FR"


@dataclass(frozen=True)
class SegmentPair:
    """OLD and NEW bundle directories and holdout rows (inputs plus the label ``y``)."""

    old: Path
    new: Path
    holdout: pd.DataFrame


def pipeline() -> Any:
    """One-hot categories, numbers as they are (NaN handled by the booster), boosted trees."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    prepare = ColumnTransformer(
        [
            ("num", "passthrough", ["amount", "hour", "prior_transactions"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["country", "merchant"],
            ),
            ("flag", "passthrough", ["card_present"]),
        ],
        sparse_threshold=0.0,
    )
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0)
    return Pipeline([("prepare", prepare), ("model", model)])


def labelled(n_rows: int, seed: int) -> pd.DataFrame:
    """Transactions with their true label in ``y``."""
    frame = make_transactions(n_rows, seed=seed)
    frame[LABEL] = fraud_target(frame, seed=seed + 1)
    return frame


def build_pair(root: Path, *, holdout_rows: int = 3000) -> SegmentPair:
    """Fit OLD and NEW (labels of ``CHANGED_COUNTRY`` inverted) and save both as bundles."""
    train = labelled(4000, seed=11)
    inputs = train.drop(columns=[LABEL])
    truth = train[LABEL].to_numpy()
    changed = (train["country"] == CHANGED_COUNTRY).to_numpy()
    old_model = pipeline().fit(inputs, truth)
    new_model = pipeline().fit(inputs, np.where(changed, 1 - truth, truth))
    old, new = root / "fraud-1", root / "fraud-2"
    for model, version, target in ((old_model, "1", old), (new_model, "2", new)):
        rtserve.build(model, inputs, name="fraud", version=version, optimize="off").save(target)
    return SegmentPair(old, new, labelled(holdout_rows, seed=12))
