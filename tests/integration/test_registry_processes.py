"""Concurrent pushes and promotions from several processes (not threads) stay consistent."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path

import pytest

from rtserve.registry import Registry
from tests.unit.registry import conftest as registry_fixtures

pytestmark = pytest.mark.integration

WORKERS = 4

# The SQLite and PostgreSQL registries of the unit tests (both backends, a schema per test).
postgres_url = registry_fixtures.postgres_url
registry_url = registry_fixtures.registry_url
fraud_versions = registry_fixtures.fraud_versions


def _push(url: str, store: str, bundle: str, barrier: multiprocessing.synchronize.Barrier) -> str:
    reg = Registry.open(url=url, store=store)
    barrier.wait()
    try:
        return reg.push(bundle, "key:mae").digest
    finally:
        reg.close()


def _promote(
    url: str, store: str, version: str, barrier: multiprocessing.synchronize.Barrier
) -> int:
    reg = Registry.open(url=url, store=store)
    barrier.wait()
    try:
        moves = 0
        for _ in range(3):
            reg.promote("fraud", version, to="staging", actor="key:mae")
            moves += 1
        return moves
    finally:
        reg.close()


def _open_fresh(url: str, store: str, barrier: multiprocessing.synchronize.Barrier) -> list[str]:
    barrier.wait()
    reg = Registry.open(url=url, store=store)
    reg.close()
    return reg.migrated


@pytest.fixture
def fresh(registry_url, tmp_path):
    return registry_url, str(tmp_path / "artifacts")


@pytest.fixture
def ready(fresh):
    url, store = fresh
    reg = Registry.open(url=url, store=store)
    reg.init("key:admin")
    reg.grant("key:admin", "key:mae", "maintainer")
    reg.close()
    return url, store


def _worker(target, args, barrier, results):
    try:
        results.put(("ok", target(*args, barrier)))
    except Exception as exc:  # noqa: BLE001 - reported to the test instead of dying silently
        results.put(("error", repr(exc)))


def _run(target, argument_sets):
    """Run ``target(*args, barrier)`` in one spawned process per argument set, all at once."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(argument_sets))
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(target, args, barrier, results))
                 for args in argument_sets]  # fmt: skip
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [kind for kind, _ in outcomes] == ["ok"] * len(processes), outcomes
    return [value for _, value in outcomes]


def test_processes_opening_a_fresh_registry_at_once_migrate_it_once(fresh):
    url, store = fresh
    applied = _run(_open_fresh, [(url, store)] * WORKERS)
    assert sorted(applied, key=len) == [[]] * (WORKERS - 1) + [["0001", "0002"]]


def test_four_processes_pushing_the_same_bundle_make_one_version(ready, fraud_versions, tmp_path):
    url, store = ready
    digests = _run(_push, [(url, store, str(fraud_versions["1"]))] * WORKERS)
    assert len(set(digests)) == 1
    reg = Registry.open(url=url, store=store)
    assert [v.version for v in reg.versions("fraud")] == ["1"]
    assert [e.action for e in reg.audit()].count("push") == 1
    assert len(list(Path(store).rglob("*.tar.gz"))) == 1
    assert reg.verify_audit().ok
    reg.close()


def test_processes_racing_to_promote_leave_a_consistent_pointer_and_full_history(
    ready, fraud_versions
):
    url, store = ready
    reg = Registry.open(url=url, store=store)
    for label in ("1", "2", "3", "4"):
        reg.push(fraud_versions[label], "key:mae")
    moves = _run(_promote, [(url, store, label) for label in ("1", "2", "3", "4")])
    history = reg.history("fraud", "staging")
    assert len(history) == sum(moves) == 12
    assert [m.generation for m in history] == list(range(1, 13))
    assert all(a.to_version == b.from_version for a, b in itertools.pairwise(history))
    pointer = reg.pointer("fraud", "staging")
    assert (pointer.version, pointer.generation) == (history[-1].to_version, 12)
    report = reg.verify_audit()
    assert report.ok, report.problem
    reg.close()
