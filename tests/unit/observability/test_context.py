"""The request-id context: bound while a request is served, for log correlation only."""

from __future__ import annotations

import asyncio

from rtserve.observability import context


def test_the_bound_request_id_is_current_until_unbound() -> None:
    assert context.current_request_id() == ""
    token = context.bind("req-1")
    try:
        assert context.current_request_id() == "req-1"
        inner = context.bind("req-2")
        assert context.current_request_id() == "req-2"
        context.unbind(inner)
        assert context.current_request_id() == "req-1"
    finally:
        context.unbind(token)
    assert context.current_request_id() == ""


def test_concurrent_requests_each_see_their_own_id() -> None:
    async def serve(request_id: str) -> str:
        token = context.bind(request_id)
        try:
            await asyncio.sleep(0)  # the other request runs meanwhile
            return context.current_request_id()
        finally:
            context.unbind(token)

    async def both() -> list[str]:
        return list(await asyncio.gather(serve("a"), serve("b")))

    assert asyncio.run(both()) == ["a", "b"]


def test_the_context_carries_the_request_id_and_nothing_else() -> None:
    """Facts about a request travel in its ``RequestTrace``, passed explicitly, never here."""
    public = {name for name in vars(context) if not name.startswith("_")}
    assert {name for name in public if callable(getattr(context, name))} >= {
        "bind",
        "unbind",
        "current_request_id",
    }
    assert not any(name.startswith("note_") for name in public)
    assert "current" not in public
    assert "RequestContext" not in public
