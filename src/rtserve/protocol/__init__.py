"""Wire formats as data: request bytes to plain values, predictions to response bytes.

``v2`` is the Open Inference Protocol (KServe V2) codec with binary tensors; ``records`` the
``/v1/models/{name}:predict`` JSON codec; ``_json`` their shared msgspec plumbing. Every client
mistake is a ``MalformedRequestError`` naming the field; nothing here does I/O.
"""
