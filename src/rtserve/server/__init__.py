"""HTTP layer: the ASGI app, its routes and error mapping; embeddable via ``asgi_app``/``serve``."""

from rtserve.server.embed import asgi_app, serve

__all__ = ["asgi_app", "serve"]
