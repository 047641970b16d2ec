"""Call a bundle in-process from a Flask view (the same works in a Django view).

Run: BUNDLE=path/to/bundle uv run flask --app examples.flask_view run
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request

import rtserve
from rtserve.errors import InputError

app = Flask(__name__)
# Load once per process, not per request: loading verifies hashes and warms the runtime up.
predictor = rtserve.load(os.environ.get("BUNDLE", ".rtserve-demo/card-fraud-1"))


@app.post("/score")
def score() -> Any:
    """Validate the posted records against the bundle's schema and answer predictions."""
    try:
        predictions = predictor.predict(request.get_json()["instances"])
    except InputError as exc:  # every offending field, as rtserve's own server reports them
        return jsonify(exc.to_dict()), 422
    return jsonify({"predictions": predictions.to_records(), "version": predictor.version})
