"""The HTTP transport: the ASGI app over the engine, embeddable via ``asgi_app``/``serve``.

``app`` composes it; ``routes`` is the one route table, served by ``endpoints``, ``fastpath`` (the
inference hot path) and ``monitoring`` (/metrics, drift); ``request_guards`` applies auth, rate
limits, deadlines and body bounds; ``error_handlers`` maps errors to HTTP; ``middleware``,
``http_protocol``, ``openapi`` and ``runner`` cover request ids, bounded heads, docs and uvicorn.
"""

from rtserve.server.embed import asgi_app, serve

__all__ = ["asgi_app", "serve"]
