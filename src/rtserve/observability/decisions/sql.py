"""The SQL decision sink for teams: SQLite or PostgreSQL (psycopg 3) through SQLAlchemy 2.

The table ``rtserve_decisions`` is created on start when missing. URLs: ``sqlite:///path.db``,
``postgresql://user@host/db`` (read as ``postgresql+psycopg://``).

A record's key is the server's own id with the row index, ``UNIQUE (server_id, row_index)``; the
client's ``X-Request-ID`` (``request_id``) is kept, indexed, for correlation. A table made before
``server_id`` existed is upgraded on start: the column is added (NULL in the old rows, which had
no such id and stay readable) and the unique index created; both steps are idempotent, so
workers starting together do not trip over each other. The reader reads an old table as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    create_engine,
    insert,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from rtserve.errors import RtserveError
from rtserve.observability.decisions.record import Decision, DecisionQuery, as_utc

TABLE = "rtserve_decisions"
metadata = MetaData()
decisions_table = Table(
    TABLE,
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(128), nullable=False, index=True),
    Column("row_index", Integer, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("model", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("input_hash", String(80), nullable=False),
    Column("inputs", JSON().with_variant(JSONB(), "postgresql"), nullable=True),
    Column("output", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("latency_seconds", Float, nullable=False),
    Column("fallback", Boolean, nullable=False),
    Column("variant", String(128), nullable=False),
    Column("trace_id", String(32), nullable=True),
    # Nullable only for rows written before it existed (an upgraded table); always set since.
    Column("server_id", String(64), nullable=True),
    Index("ix_rtserve_decisions_model_time", "model", "version", "time"),
    Index("ux_rtserve_decisions_server_row", "server_id", "row_index", unique=True),
)
#: The unique key index (created on an upgraded table too).
KEY_INDEX = next(i for i in decisions_table.indexes if i.unique)


class DecisionStoreError(RtserveError):
    """The decision database URL is unusable or the database refused us."""

    code = "decision_store"


def engine_for(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL (``postgresql://`` uses psycopg 3)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain) :]
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}  # several workers share one file
    try:
        return create_engine(url, **options)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DecisionStoreError(
            f"decision log database URL {url.split('@')[-1]!r} is not usable: {exc}; use "
            "sqlite:///path/to/decisions.db or postgresql://user@host:5432/db",
            field="decision_log.database_url",
        ) from exc


def _row(d: Decision) -> dict[str, Any]:
    return {
        "request_id": d.request_id,
        "row_index": d.row,
        "time": d.time,
        "model": d.model,
        "version": d.version,
        "digest": d.digest,
        "protocol": d.protocol,
        "input_hash": d.input_hash,
        "inputs": d.inputs,
        "output": d.output,
        "latency_seconds": d.latency_seconds,
        "fallback": d.fallback,
        "variant": d.variant,
        "trace_id": d.trace_id,
        "server_id": d.server_id or None,  # "" (a record without one) is stored as NULL
    }


class SqlSink:
    """Inserts decisions in one transaction per batch."""

    name = "sql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

    def open(self) -> None:
        """Connect and create the table if it is missing (idempotent)."""
        if self._engine is not None:
            return
        engine = engine_for(self.url)
        try:
            metadata.create_all(engine, checkfirst=True)
            with engine.begin() as connection:
                upgrade(connection)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise DecisionStoreError(
                f"decision log database {self.url.split('@')[-1]!r} cannot be used: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}; check that it runs and that "
                "the user may create tables (or set RTSERVE_DECISION_LOG__ENABLED=false)",
                field="decision_log.database_url",
            ) from exc
        self._engine = engine

    def write(self, decisions: Sequence[Decision]) -> None:
        """Insert a batch of decisions."""
        if not decisions:
            return
        if self._engine is None:
            self.open()
        engine = self._engine
        if engine is None:  # open() always sets it; this keeps the type checker informed
            raise DecisionStoreError("the decision database is not open", field="decision_log")
        with engine.begin() as connection:
            connection.execute(insert(decisions_table), [_row(d) for d in decisions])

    def close(self) -> None:
        """Release the connection pool."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def upgrade(connection: Connection) -> None:
    """Bring a table made by an older rtserve up to date: add ``server_id`` (NULL in the old
    rows) and its unique index. Idempotent, and safe when another worker does it meanwhile."""
    if "server_id" not in _columns(connection):
        try:
            with connection.begin_nested():  # a savepoint: a lost race leaves the rest usable
                connection.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN server_id VARCHAR(64)"))
        except SQLAlchemyError:
            if "server_id" not in _columns(connection):
                raise  # not a race with another worker: a real failure
    try:
        with connection.begin_nested():
            KEY_INDEX.create(connection, checkfirst=True)
    except SQLAlchemyError:
        indexes = inspect(connection).get_indexes(TABLE)
        if KEY_INDEX.name not in {i["name"] for i in indexes}:
            raise


def _columns(connection: Connection) -> set[str]:
    return {c["name"] for c in inspect(connection).get_columns(TABLE)}


class SqlReader:
    """Reads decisions back from the table (one an older rtserve made, too)."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)

    def query(self, query: DecisionQuery) -> list[Decision]:
        """Matching decisions in time order, at most ``query.limit``; ``query.request_id``
        matches the ``X-Request-ID`` or the server id."""
        t = decisions_table.c
        try:
            with self.engine.connect() as connection:
                upgraded = "server_id" in _columns(connection)
                columns = [c for c in decisions_table.c if upgraded or c.name != "server_id"]
                statement = select(*columns)
                if query.request_id is not None:
                    wanted = t.request_id == query.request_id
                    if upgraded:
                        wanted = or_(wanted, t.server_id == query.request_id)
                    statement = statement.where(wanted)
                statement = _filtered(statement, query)
                rows = connection.execute(statement).mappings().all()
        finally:
            self.engine.dispose()
        return [
            Decision(
                request_id=r["request_id"],
                row=r["row_index"],
                time=as_utc(r["time"]),
                model=r["model"],
                version=r["version"],
                digest=r["digest"],
                protocol=r["protocol"],
                input_hash=r["input_hash"],
                output=r["output"],
                latency_seconds=r["latency_seconds"],
                fallback=r["fallback"],
                variant=r["variant"],
                trace_id=r["trace_id"],
                inputs=r["inputs"],
                server_id=r.get("server_id") or "",
            )
            for r in rows
        ]


def _filtered(statement: Select[Any], query: DecisionQuery) -> Select[Any]:
    """``statement`` with the query's model, version and time filters, ordered and limited."""
    t = decisions_table.c
    if query.model is not None:
        statement = statement.where(t.model == query.model)
    if query.version is not None:
        statement = statement.where(t.version == query.version)
    if query.since is not None:
        statement = statement.where(t.time >= query.since)
    if query.until is not None:
        statement = statement.where(t.time <= query.until)
    # ``id`` keeps two requests that share an X-Request-ID (and a moment) apart, rows in order
    return statement.order_by(t.time, t.request_id, t.id).limit(query.limit)
