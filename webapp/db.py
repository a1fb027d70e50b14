"""SQLite set-up: WAL, a busy timeout, and BEGIN IMMEDIATE for writers.

pysqlite's own transaction handling is switched off (isolation_level=None) so SQLAlchemy's `begin`
event decides how each transaction starts: plain `BEGIN` for readers, `BEGIN IMMEDIATE` for writers,
which take the write lock up front instead of failing with "database is locked" when two deferred
transactions both try to upgrade.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from webapp.extensions import db

WRITE = {"layerdeck_write": True}


def set_up_connection(dbapi_conn: sqlite3.Connection) -> None:
    """What every SQLite connection of Layerdeck's is set to, the pool's and the journal's own alike."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def plain_connection(engine: Engine) -> sqlite3.Connection | None:
    """A connection of its own to the engine's SQLite file, set up as the pool's are, for a thread that
    writes many small transactions and needs no ORM; None when the database is not a plain SQLite file."""
    url = engine.url
    if engine.dialect.name != "sqlite" or engine.dialect.driver != "pysqlite" or url.query \
            or url.database in (None, "", ":memory:"):
        return None
    conn = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
    set_up_connection(conn)
    return conn


def configure_sqlite(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        set_up_connection(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("layerdeck_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write() -> None:
    """Start the session's transaction as a writer. Call before the transaction's first statement."""
    if db.session().in_transaction():
        db.session.commit()
    db.session.connection(execution_options=WRITE)
