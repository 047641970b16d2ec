"""The SQL decision sink for teams: SQLite or PostgreSQL (psycopg 3) through SQLAlchemy 2.

The table ``rtserve_decisions`` is created on start when missing. URLs: ``sqlite:///path.db``,
``postgresql://user@host/db`` (read as ``postgresql+psycopg://``).
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
    String,
    Table,
    create_engine,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
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
    Index("ix_rtserve_decisions_model_time", "model", "version", "time"),
)


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


class SqlReader:
    """Reads decisions back from the table."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)

    def query(self, query: DecisionQuery) -> list[Decision]:
        """Matching decisions in time order, at most ``query.limit``."""
        t = decisions_table.c
        statement = select(decisions_table)
        if query.request_id is not None:
            statement = statement.where(t.request_id == query.request_id)
        if query.model is not None:
            statement = statement.where(t.model == query.model)
        if query.version is not None:
            statement = statement.where(t.version == query.version)
        if query.since is not None:
            statement = statement.where(t.time >= query.since)
        if query.until is not None:
            statement = statement.where(t.time <= query.until)
        statement = statement.order_by(t.time, t.request_id, t.row_index).limit(query.limit)
        try:
            with self.engine.connect() as connection:
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
            )
            for r in rows
        ]
