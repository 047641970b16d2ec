"""The OpenAPI 3.1 document, generated from the route table, and the ``/docs`` page."""

from __future__ import annotations

from typing import Any

from rtserve.server.routes import ROUTES, Route

_ERROR = {
    "type": "object",
    "required": ["error", "code", "field"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong and how to fix it."},
        "code": {"type": "string", "description": "Stable machine-readable error code."},
        "field": {
            "type": ["string", "null"],
            "description": "The offending field; null when no single field is at fault.",
        },
        "fields": {"type": "array", "items": {"type": "string"}},
        "violations": {"type": "array", "items": {"type": "object"}},
        "request_id": {"type": "string"},
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_PREDICT_REQUEST = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "description": "One record: {field: value}."},
            "description": "Rows to score; GET /v1/models/{name} gives the record's JSON Schema.",
        },
        "parameters": {"type": "object"},
    },
}
_PREDICT_RESPONSE = {
    "type": "object",
    "required": ["predictions", "model", "request_id"],
    "properties": {
        "predictions": {"type": "array", "items": {"type": "object"}},
        "model": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "request_id": {"type": "string"},
    },
}

_BODIES = {"v2_infer": _INFER_REQUEST, "v1_predict": _PREDICT_REQUEST}
_ERRORS_BY_ROLE = {
    "public": ("503",),
    "read": ("404", "503"),
    "predict": ("400", "404", "413", "415", "422", "500", "503"),
    "admin": ("400", "404"),
}
_DESCRIPTIONS = {
    "400": "Malformed request",
    "404": "Unknown model or version",
    "413": "Body or batch too large",
    "415": "Unsupported content type",
    "422": "Input breaks the model's schema (every offending field is listed)",
    "500": "The model failed on valid input",
    "503": "Not ready (loading, warm-up failed or shutting down)",
}


def _operation(route: Route) -> dict[str, Any]:
    base = route.name.removesuffix("_version").removesuffix("_slash")
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "description": (route.endpoint.__doc__ or "").strip(),
        "responses": {"200": {"description": "OK"}},
    }
    if base in _BODIES:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _BODIES[base]}},
        }
    if base == "v1_predict":
        op["responses"]["200"]["content"] = {"application/json": {"schema": _PREDICT_RESPONSE}}
    for status in _ERRORS_BY_ROLE[route.role]:
        op["responses"][status] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    params = [p for p in ("name", "version") if "{" + p + "}" in route.path]
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
    return op


def openapi_document(version: str) -> dict[str, Any]:
    """OpenAPI for every route in the table."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        if route.name == "index":
            continue
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rtserve",
            "version": version,
            "description": "Open Inference Protocol (KServe V2) and records API for served models.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }


DOCS_HTML = """<!doctype html>
<html><head><title>rtserve API</title><meta charset="utf-8"/>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The machine-readable API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>"""
