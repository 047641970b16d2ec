"""The protections around serving, as policies the server and engine apply.

Per request: ``auth``, ``ratelimit``, ``limits`` and ``deadline`` (the server's
``request_guards`` applies them). Per model: ``per_model`` composes ``admission``, ``breaker``,
``fallback`` (with its ``rules`` language) and ``hardening`` around each prediction.
"""
