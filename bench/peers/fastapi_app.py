"""The "notebook in FastAPI" baseline: one pydantic model per input, a DataFrame per request.

Run: BENCH_MODELS_DIR=... uvicorn fastapi_app:app --host 127.0.0.1 --port 8000 (one worker,
the way such a service is usually started).
"""

from typing import Any

from common import FIELDS, NAMES, answers, frame, load
from fastapi import FastAPI
from pydantic import BaseModel, create_model

app = FastAPI(title="notebook in FastAPI")
MODELS = {name: load(name) for name in NAMES}


def _input_model(name: str) -> type[BaseModel]:
    spec = FIELDS[name]
    fields: dict[str, Any] = dict.fromkeys(spec["numeric"], (float | None, None))
    fields.update(dict.fromkeys(spec["categorical"], (str | None, None)))
    return create_model(f"{name.title().replace('_', '')}Row", **fields)


def _route(name: str) -> None:
    row_model = _input_model(name)
    model = MODELS[name]

    def predict(row: row_model) -> dict[str, Any]:  # type: ignore[valid-type]
        return answers(model, frame(name, [row.model_dump()]))[0]

    app.post(f"/predict/{name}")(predict)


for _name in NAMES:
    _route(_name)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
