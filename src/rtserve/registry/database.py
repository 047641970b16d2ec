"""Connections to the registry database: engines, serialized write transactions, migrations.

Every write transaction takes the registry's one write lock before it reads anything it will
decide on: SQLite ``BEGIN IMMEDIATE`` (one writer at a time, across processes), PostgreSQL
``SELECT ... FOR UPDATE`` on the audit head row. Writers therefore see each other's commits and
the audit chain grows one entry at a time, whichever process appends. Reads take no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from rtserve.errors import RegistryStorageError
from rtserve.registry import schema

#: How long a writer waits for another process's write lock before giving up (seconds).
LOCK_TIMEOUT_S = 30.0
#: The execution option that marks a connection as a writer (SQLite: ``BEGIN IMMEDIATE``).
_WRITE = "rtserve_registry_write"
#: PostgreSQL advisory lock key held while migrating ("rtsrvreg" as a number).
_MIGRATION_LOCK = 0x72747372767265


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///file`` or ``postgresql://...``) set up for the registry.

    ``postgresql://`` uses psycopg 3 (the driver rtserve ships). SQLite runs in WAL mode, so
    readers never wait for the writer, with a busy timeout of ``LOCK_TIMEOUT_S``.
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": LOCK_TIMEOUT_S})
            _sqlite_transactions(engine)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise RegistryStorageError(
            f"registry URL {safe_url(url)!r} cannot be used ({type(exc).__name__}: {exc}); use "
            "sqlite:///PATH/registry.db or postgresql://USER@HOST:PORT/DB",
            field="registry_url",
        ) from exc
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, start transactions, so writers can say ``BEGIN IMMEDIATE``."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN by the driver
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(LOCK_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparseable URL>"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the registry's write lock; commits on success, rolls back on error."""
    with _storage_errors(engine), engine.connect() as raw:
        connection = raw.execution_options(**{_WRITE: True})
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(
                    sa.select(schema.audit_head.c.seq)
                    .where(schema.audit_head.c.id == 1)
                    .with_for_update()
                )
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A consistent read (one transaction, no lock)."""
    with _storage_errors(engine), engine.connect() as connection, connection.begin():
        yield connection


@contextmanager
def _storage_errors(engine: Engine) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise RegistryStorageError(
            f"registry database {safe_url(str(engine.url))!r} failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}; check that it is reachable "
            "and writable (a busy SQLite file waits at most "
            f"{LOCK_TIMEOUT_S:g} s for another writer)",
            field="registry_url",
        ) from exc


def migrate(engine: Engine) -> list[str]:
    """Bring the schema to the newest revision; returns the revisions applied (empty: none).

    Runs inside a write-locked transaction (plus an advisory lock on PostgreSQL, where the head
    row may not exist yet), so processes opening a fresh registry at once migrate it once.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("rtserve.registry") / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    with _storage_errors(engine), engine.connect() as raw:
        connection = raw.execution_options(**{_WRITE: True})
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            before = MigrationContext.configure(connection).get_current_revision()
            if before == head:
                return []
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    script = ScriptDirectory.from_config(config)
    applied = [rev.revision for rev in script.iterate_revisions(head, before or "base")]
    return list(reversed(applied))
