"""The journal: the one writer of websocket messages (builds' and runs' alike).

Producers (build workers, container log followers) emit log, status and end messages; one thread writes
them to SQLite in batches (one `BEGIN IMMEDIATE` transaction for whatever has arrived since the last
commit), gives each its `seq`, and only after the commit publishes them to live viewers. Batching is
natural, not timed: while one batch commits, the next one gathers, so a quiet producer gets each line
out at once and a chatty one gets large batches. Log bytes are capped here, so every path into a log
obeys the cap. Subclasses say which rows own the messages and how a status message looks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flask import Flask
from sqlalchemy import bindparam, func, select

from webapp.broadcast import Hub
from webapp.db import begin_write, plain_connection
from webapp.extensions import db

log = logging.getLogger(__name__)

MAX_BATCH = 2000

Add = Callable[[int, str, dict[str, Any]], None]  # (owner id, message type, message fields)


@dataclass
class _Item:
    owner_id: int
    kind: str  # log | status | sync, or a subclass's own (step)
    data: dict[str, Any] = field(default_factory=dict)
    done: threading.Event | None = None
    end: bool = False  # a status followed by the owner's end message, in the same batch


@dataclass
class _State:
    seq: int
    log_bytes: int
    truncated: bool


class Journal:
    owner_model: ClassVar[Any]  # Build or Run: has id, log_bytes, log_truncated
    event_model: ClassVar[Any]  # BuildEvent or RunEvent: owner fk, seq, type, data
    owner_key: ClassVar[str]  # the event's foreign key column: build_id | run_id
    what: ClassVar[str]  # "build" | "run", for messages

    def __init__(self, app: Flask, hub: Hub, log_cap: int) -> None:
        self._app = app
        self._hub = hub
        self._log_cap = log_cap
        self._queue: queue.SimpleQueue[_Item | list[_Item] | None] = queue.SimpleQueue()
        self._gathering = threading.local()  # .items: what together() is gathering on this thread
        self._states: dict[int, _State] = {}
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}
        # On SQLite, batches of nothing but lines and steps of owners already known go through a connection
        # of the journal's own, without the ORM's session (see _write).
        self._plain: sqlite3.Connection | None = None
        self._plain_dialect: Any = None
        self._plain_checked = False
        self._processors: dict[str, Any] = {}  # column name -> its type's result processor (None: none needed)
        self._driver: sqlite3.Connection | None = None  # the plain connection, during a batch written on it
        self._thread = threading.Thread(target=self._run, name=f"layerdeck-{self.what}-journal", daemon=True)
        self._thread.start()

    # --- emitting (any thread) -------------------------------------------------------------------------

    def status(self, owner_id: int, **changes: Any) -> None:
        """Apply changes to the owner's row (possibly none) and send it as it then is."""
        self._put(_Item(owner_id, "status", self.status_changes(owner_id, changes)))

    def finish(self, owner_id: int, **changes: Any) -> None:
        """The owner's last status, then its `end`: written, committed and published together, so no viewer
        (or reader of the database) ever sees the one without the other."""
        self._put(_Item(owner_id, "status", self.status_changes(owner_id, changes), end=True))

    def sync(self, timeout: float = 30) -> None:
        """Wait until everything emitted before this call is committed and published."""
        if getattr(self._gathering, "items", None) is not None:
            raise RuntimeError("journal.sync() inside journal.together() would wait for itself")
        done = threading.Event()
        self._queue.put(_Item(0, "sync", done=done))
        if not done.wait(timeout):
            raise TimeoutError(f"the {self.what} journal did not catch up")

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _put_log(self, owner_id: int, data: dict[str, Any]) -> None:
        self._put(_Item(owner_id, "log", data))

    def _put(self, item: _Item) -> None:
        gathered: list[_Item] | None = getattr(self._gathering, "items", None)
        if gathered is not None:
            gathered.append(item)
        else:
            self._queue.put(item)

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """What this thread emits inside the block reaches the journal as one item, so it is written in one
        batch: one transaction, and one wake-up for each viewer (a build's last lines and its end)."""
        if getattr(self._gathering, "items", None) is not None:
            raise RuntimeError("journal.together() blocks do not nest")
        items: list[_Item] = []
        self._gathering.items = items
        try:
            yield
        finally:
            self._gathering.items = None
            if items:
                self._queue.put(items)

    # --- what subclasses decide ------------------------------------------------------------------------

    def status_changes(self, owner_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """The changes a status message makes, as they are to be stored and sent."""
        return changes

    def snapshot(self, owner: Any) -> dict[str, Any]:
        raise NotImplementedError

    def end_message(self, owner: Any) -> dict[str, Any]:
        return {"status": owner.status}

    def truncation(self, data: dict[str, Any]) -> dict[str, Any]:
        """The log line that says the cap was reached, shaped like `data`."""
        raise NotImplementedError

    def handle(self, owner_id: int, item: _Item, add: Add) -> None:
        """Messages of a kind the base does not know."""
        raise ValueError(f"unknown {self.what} message kind {item.kind!r}")

    def settle(self) -> None:
        """Write what handle() held back; called before a status snapshot reads the owner and before commit."""

    def drop(self, owner_id: int) -> None:
        """Forget what was kept in memory for an owner that has ended (or for all after a failed batch)."""
        self._states.pop(owner_id, None)

    def plain(self, item: _Item) -> bool:
        """Whether the message can be written without the ORM's session: a log line of an owner whose state
        is known. Subclasses add their own kinds, and status messages whose snapshot needs no session
        (written by _plain_owner)."""
        return item.kind == "log" and item.owner_id in self._states

    def _plain_owner(self, owner_id: int, state: _State, changes: dict[str, Any]) -> Any:
        """A status on the journal's own connection: the owner's row read, `changes` (and the log's size)
        written with one UPDATE, and the row as it now is returned as a transient model object, for
        snapshot() and end_message() to read as they read a loaded one."""
        assert self._driver is not None
        table = self.owner_model.__table__
        cursor = self._driver.execute(f'SELECT * FROM "{table.name}" WHERE id = ?', (owner_id,))
        try:
            names = [d[0] for d in cursor.description]
            raw = cursor.fetchone()
        finally:
            cursor.close()
        if raw is None:
            raise LookupError(f"{self.what} {owner_id} is gone")
        values: dict[str, Any] = {}
        for name, value in zip(names, raw, strict=True):
            column = table.c.get(name)
            if column is None:
                continue
            processor = self._processors.get(name, False)
            if processor is False:  # as the ORM would load it: SQLite's 0 and 1 as booleans, and so on
                processor = self._processors[name] = column.type.result_processor(self._plain_dialect, None)
            values[column.key] = processor(value) if processor is not None and value is not None else value
        written = {**changes, "log_bytes": state.log_bytes, "log_truncated": state.truncated}
        values.update(written)
        self.execute_many("status " + ",".join(written), table.update().where(table.c.id == bindparam("owner")),
                          [{"owner": owner_id, **written}])
        return self.owner_model(**values)

    # --- writing (the journal thread) ----------------------------------------------------------------
    # Log lines and a subclass's own messages are written with plain SQL statements; the ORM, several
    # times dearer per row, only for a status a subclass's plain() does not take (see _plain_owner).

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            items = first if isinstance(first, list) else [first]
            stopping = False
            while len(items) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if isinstance(nxt, list):
                    items.extend(nxt)
                else:
                    items.append(nxt)
            try:
                plain = self._plain_connection()
                with self._app.app_context():  # a snapshot may look up a name even in a plain batch
                    if plain is not None and all(item.kind == "sync" or self.plain(item) for item in items):
                        self._write(items, plain)
                    else:
                        self._write(items, None)
            except Exception:  # the journal must outlive one bad batch
                log.exception("could not write %d %s events", len(items), self.what)
                for owner_id in list(self._states):
                    self.drop(owner_id)
            finally:
                for item in items:
                    if item.done is not None:
                        item.done.set()
            if stopping:
                break
        if self._plain is not None:
            self._plain.close()
            self._plain = None

    def _plain_connection(self) -> sqlite3.Connection | None:
        if not self._plain_checked:
            self._plain_checked = True
            with self._app.app_context():
                self._plain = plain_connection(db.engine)
                self._plain_dialect = db.engine.dialect
        return self._plain

    def execute_many(self, name: str, statement: Any, rows: list[dict[str, Any]]) -> None:
        """Run an INSERT or UPDATE for `rows` (all with the same keys) in the batch's transaction. On SQLite
        it goes straight to the driver's cursor, compiled once per `name` and set of keys: for the few rows
        of a batch SQLAlchemy's work per statement cost more than SQLite's own, on the thread every live
        message waits for."""
        driver: Any
        if self._driver is not None:  # a batch on the journal's own connection
            driver, dialect = self._driver, self._plain_dialect
        else:
            connection = db.session.connection()
            if connection.dialect.name != "sqlite":
                db.session.execute(statement, rows)
                return
            driver, dialect = connection.connection.driver_connection, connection.dialect
        assert driver is not None
        keys = tuple(rows[0])
        compiled = self._compiled.get((name, keys))
        if compiled is None:
            done = statement.compile(dialect=dialect, column_keys=list(keys))
            compiled = self._compiled[(name, keys)] = (str(done), tuple(done.positiontup or ()))
        sql, order = compiled
        cursor = driver.cursor()
        try:
            cursor.executemany(sql, [tuple(row[key] for key in order) for row in rows])
        finally:
            cursor.close()

    def _state(self, owner_id: int) -> _State | None:
        state = self._states.get(owner_id)
        if state is None:
            model, event = self.owner_model, self.event_model
            row = db.session.execute(
                select(model.log_bytes, model.log_truncated).where(model.id == owner_id)
            ).first()
            if row is None:
                return None
            last = db.session.scalar(select(func.max(event.seq)).where(getattr(event, self.owner_key) == owner_id))
            state = _State(int(last or 0), row.log_bytes, row.log_truncated)
            self._states[owner_id] = state
        return state

    def _write(self, items: list[_Item], plain: sqlite3.Connection | None = None) -> None:
        """One transaction for the batch: on the session, or on `plain` (the journal's own SQLite connection)
        when every message is one plain() accepts. A session costs about a millisecond a batch in
        SQLAlchemy's own work, and most of a build's batches are only lines and steps."""
        if plain is None:
            begin_write()
        else:
            plain.execute("BEGIN IMMEDIATE")
            self._driver = plain
        try:
            published, ended = self._write_batch(items)
            if plain is None:
                db.session.commit()
            else:
                plain.execute("COMMIT")
        except BaseException:
            if plain is not None and plain.in_transaction:
                plain.execute("ROLLBACK")
            raise
        finally:
            self._driver = None
        for owner_id, messages in published.items():
            self._hub.publish(owner_id, messages)
        for owner_id in ended:
            self.drop(owner_id)

    def _write_batch(self, items: list[_Item]) -> tuple[dict[int, list[dict[str, Any]]], list[int]]:
        """The batch's statements, in the transaction _write began; returns the messages to publish once it
        is committed (by owner) and the owners that ended."""
        rows: list[dict[str, Any]] = []
        published: dict[int, list[dict[str, Any]]] = defaultdict(list)
        owners: dict[int, Any] = {}  # rows loaded for status and end messages
        logged: set[int] = set()  # owners whose log size changed
        ended: list[int] = []

        def add(owner_id: int, kind: str, data: dict[str, Any]) -> None:
            state = self._states[owner_id]
            state.seq += 1
            message = {"type": kind, "seq": state.seq, **data}
            rows.append({self.owner_key: owner_id, "seq": state.seq, "type": kind, "data": json.dumps(message)})
            published[owner_id].append(message)

        def owner_row(owner_id: int, state: _State) -> Any:
            owner: Any = owners.get(owner_id) or db.session.get(self.owner_model, owner_id)
            owners[owner_id] = owner
            owner.log_bytes, owner.log_truncated = state.log_bytes, state.truncated
            return owner

        for item in items:
            if item.kind == "sync":
                continue
            state = self._state(item.owner_id)
            if state is None:
                log.warning("event for unknown %s %s dropped", self.what, item.owner_id)
                continue
            if item.kind == "log":
                self._add_log(item.owner_id, state, item.data, add)
                logged.add(item.owner_id)
            elif item.kind == "status":
                self.settle()
                if self._driver is not None:  # a batch plain() accepted whole
                    owner = self._plain_owner(item.owner_id, state, item.data)
                else:
                    owner = owner_row(item.owner_id, state)
                    for key, value in item.data.items():
                        setattr(owner, key, value)
                    db.session.flush()
                add(item.owner_id, "status", {self.what: self.snapshot(owner)})
                if item.end:
                    add(item.owner_id, "end", self.end_message(owner))
                    ended.append(item.owner_id)
            else:
                self.handle(item.owner_id, item, add)
        self.settle()
        table = self.owner_model.__table__
        sizes = [{"owner": owner_id, "log_bytes": self._states[owner_id].log_bytes,
                  "log_truncated": self._states[owner_id].truncated} for owner_id in logged - owners.keys()]
        if sizes:
            self.execute_many("log sizes", table.update().where(table.c.id == bindparam("owner")), sizes)
        for owner_id, owner in owners.items():
            state = self._states[owner_id]
            owner.log_bytes, owner.log_truncated = state.log_bytes, state.truncated
        if rows:
            self.execute_many("events", self.event_model.__table__.insert(), rows)
        return published, ended

    def _add_log(self, owner_id: int, state: _State, data: dict[str, Any], add: Add) -> None:
        if state.truncated:
            return
        size = len(data["text"].encode("utf-8", "replace")) + 1
        if state.log_bytes + size > self._log_cap:
            state.truncated = True
            add(owner_id, "log", self.truncation(data))
            return
        state.log_bytes += size
        add(owner_id, "log", data)


def truncation_notice(cap: int, goes_on: str) -> str:
    return f"[layerdeck] The log passed its cap of {cap / 1024**2:g} MiB; later lines are not stored. {goes_on}"
