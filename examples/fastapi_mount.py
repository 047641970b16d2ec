"""Mount rtserve inside an existing FastAPI application.

Run: uv run uvicorn examples.fastapi_mount:api   (with BUNDLE=path/to/bundle in the environment)
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from rtserve.server import asgi_app

api = FastAPI(title="My product API")


@api.get("/hello")
def hello() -> dict[str, str]:
    """The host application's own routes keep working."""
    return {"hello": "world"}


# Every rtserve route now lives under /ml: /ml/v1/models/fraud:predict, /ml/v2/health/ready, ...
api.mount("/ml", asgi_app(os.environ.get("BUNDLE", ".rtserve-demo/card-fraud-1")))
