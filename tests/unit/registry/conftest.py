"""Registries on SQLite (a tmp_path file) and on the real PostgreSQL (a schema per test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rtserve
from rtserve.registry import Registry
from tests.conftest import require_service

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import sqlalchemy as sa

    require_service("postgres")
    name = f"rtreg_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES.replace("://", "+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of an empty registry, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def registry(registry_url: str, tmp_path: Path) -> Iterator[Registry]:
    """An initialised registry: admin ``key:admin``, maintainers ``key:mae``/``key:max``,
    approvers ``key:ann``/``key:abe``, viewer ``key:vic``."""
    reg = Registry.open(url=registry_url, store=str(tmp_path / "artifacts"))
    reg.init("key:admin")
    for principal, role in [
        ("key:mae", "maintainer"),
        ("key:max", "maintainer"),
        ("key:ann", "approver"),
        ("key:abe", "approver"),
        ("key:vic", "viewer"),
    ]:
        reg.grant("key:admin", principal, role)
    yield reg
    reg.close()


def build_versions(
    tmp_path: Path, fraud_pipeline: Any, transactions: Any, *labels: str
) -> dict[str, Path]:
    """Bundles of the fraud model under each version label (different digests)."""
    out = {}
    for label in labels:
        target = tmp_path / f"fraud-{label}"
        rtserve.build(fraud_pipeline, transactions.head(60), name="fraud", version=label,
                      validation_rows=20, optimize="off").save(target)  # fmt: skip
        out[label] = target
    return out


@pytest.fixture(scope="session")
def fraud_versions(
    tmp_path_factory: pytest.TempPathFactory, fraud_pipeline: Any, transactions: Any
) -> dict[str, Path]:
    """fraud@1 .. fraud@4, built once."""
    return build_versions(tmp_path_factory.mktemp("registry-bundles"), fraud_pipeline,
                          transactions, "1", "2", "3", "4")  # fmt: skip
