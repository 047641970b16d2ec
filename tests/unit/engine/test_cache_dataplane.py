"""Specification: with ``cache.max_entries`` set, the data plane answers a repeated validated input from
the model version's cache before the batcher, whatever its JSON spelling; off by default."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rtserve.engine.dataplane import DataPlane
from rtserve.engine.manager import ModelManager
from rtserve.events import RequestTrace
from rtserve.settings import Settings

ROW = {"amount": 12.5, "hour": 3, "prior_transactions": 4, "country": "DE", "card_present": True}


def _body(*rows: dict[str, Any]) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def _ask(plane: DataPlane, *bodies: bytes) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        replies = [
            await plane.predict_records("fraud", None, body, RequestTrace(f"r{i}", 0.0))
            for i, body in enumerate(bodies)
        ]
        return [json.loads(reply.body) for reply in replies]

    return asyncio.run(run())


def test_a_repeated_input_is_answered_from_the_cache_without_reaching_the_model(
    fraud_bundle_dir: Path,
) -> None:
    manager = ModelManager(Settings.load(cache={"max_entries": 8, "ttl_s": 60}))
    served = manager.load(fraud_bundle_dir)
    plane = DataPlane(manager)
    reordered = dict(reversed(list(ROW.items())))
    as_float = {**ROW, "hour": 3.0, "amount": 12.50}

    first, again, other_spelling, different = _ask(
        plane, _body(ROW), _body(ROW), _body(reordered), _body({**ROW, "hour": 4})
    )
    spelled = _ask(plane, _body(as_float))[0]

    assert served.cache is not None
    assert served.batcher is not None
    assert again["predictions"] == first["predictions"]
    assert other_spelling["predictions"] == first["predictions"]
    assert spelled["predictions"] == first["predictions"]
    assert different["predictions"] != first["predictions"]
    stats = served.cache.stats()
    assert stats.misses == 2  # the first request and the one with another hour
    assert stats.hits == 3
    assert served.batcher.stats.requests == 2
    description = plane.model_description("fraud", None)
    assert description["cache"]["hits"] == 3
    assert description["cache"]["capacity"] == 8


def test_a_multi_row_request_is_one_entry(fraud_bundle_dir: Path) -> None:
    manager = ModelManager(Settings.load(cache__max_entries=8))
    served = manager.load(fraud_bundle_dir)
    plane = DataPlane(manager)

    two, single, two_again = _ask(
        plane, _body(ROW, {**ROW, "hour": 5}), _body(ROW), _body(ROW, {**ROW, "hour": 5})
    )

    assert served.cache is not None
    assert two_again["predictions"] == two["predictions"]
    assert single["predictions"] == two["predictions"][:1]
    assert (served.cache.stats().hits, served.cache.stats().size) == (1, 2)


def test_the_cache_is_off_by_default(fraud_bundle_dir: Path) -> None:
    manager = ModelManager(Settings.load())
    served = manager.load(fraud_bundle_dir)
    plane = DataPlane(manager)

    _ask(plane, _body(ROW), _body(ROW))

    assert served.cache is None
    assert served.batcher is not None
    assert served.batcher.stats.requests == 2
    assert plane.model_description("fraud", None)["cache"] is None
