"""From a notebook: train a pipeline, build a bundle, load it back and predict.

Run: uv run python examples/notebook_to_bundle.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rtserve
from rtserve.demo import card_transactions, example_record, fraud_pipeline


def main(output: Path) -> None:
    """Train, bundle, reload and predict; prints the answers."""
    X, y = card_transactions(5_000)
    model = fraud_pipeline().fit(X, y)

    bundle = rtserve.build(
        model,
        sample=X,
        name="fraud",
        version="1",
        schema_overrides={"amount": {"minimum": 0}, "home_country": {"pii": True}},
    )
    bundle.save(output / "fraud-1")

    predictor = rtserve.load(output / "fraud-1")
    print(predictor.predict([example_record()]).to_records())  # one record
    print(predictor.predict(X.head(3)).to_frame())  # a DataFrame works too
    print(predictor.check_parity().describe())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
