"""Connections to the Glific PostgreSQL database.

Two connections, each for what it does best: psycopg (autocommit) for control queries —
catalog, watermarks, locks, organizations — and ADBC for the extract, which hands rows over as
Arrow without a Python object per value. The ADBC session runs every transaction as REPEATABLE
READ, READ ONLY: one round of a sync sees one snapshot, and the extract can never write.

The extract connection is ADBC's low-level API (``AdbcDatabase``/``AdbcConnection``/
``AdbcStatement``, results imported with ``pyarrow.RecordBatchReader._import_from_c``), not its
DB-API layer: ``adbc_driver_manager.dbapi`` imports ``pyarrow.dataset`` and pandas, 63 MB of
memory before the first row for nothing the extract uses (bench/bench_datapath.py, "base MB").
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence

import adbc_driver_manager
import adbc_driver_postgresql
import psycopg
import pyarrow as pa

from glific_bq import postgres
from glific_bq.joins import Joiner


def database_url(environ: dict[str, str] | None = None) -> str:
    """``GLIFIC_DATABASE_URL``, or a clear error."""
    url = (os.environ if environ is None else environ).get("GLIFIC_DATABASE_URL")
    if not url:
        raise ValueError("GLIFIC_DATABASE_URL is not set: the Glific PostgreSQL database to sync from")
    return url


class Source:
    """The control and extract connections to one database. Use as a context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.control = postgres.connect(url, "glific_bq")
        self._reader = None
        self.joiner = Joiner(url)  # its own connection, opened on first use (glific_bq.joins)
        #: Table shapes read from the catalog, shared by the syncs of one tick (``glific_bq.tick``
        #: sets it for the tick's sources; None: every sync reads the catalog afresh). A column
        #: added during a tick is seen at the next one.
        self.shapes: dict | None = None

    @property
    def reader(self) -> ExtractConnection:
        """The ADBC extract connection, opened on first use."""
        if self._reader is None:
            self._reader = ExtractConnection(self.url)
            with self._reader.cursor() as cur:
                cur.run("SET application_name = 'glific_bq_extract'; "
                        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._reader.commit()
        return self._reader

    def healthy_control(self, *, reconnect: bool = False) -> psycopg.Connection:
        """The control connection, opened again if a failure closed or broke it (or if
        ``reconnect``: the server ended it, which the client learns only when it next uses it)."""
        if reconnect or self.control.closed or self.control.broken:
            try:
                self.control.close()
            finally:
                self.control = postgres.connect(self.url, "glific_bq")
        return self.control

    def reset_reader(self) -> None:
        """Drop the extract connection (after an error left its transaction unusable)."""
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # already broken; a new one is opened on next use
                pass
            self._reader = None

    def close(self) -> None:
        self.reset_reader()
        self.joiner.close()
        self.control.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Arrow record batches the extract receives, in bytes (ADBC's ``batch_size_hint_bytes``; its
#: default is 16 MB, about 40,000 Glific message rows): with the read-ahead of two batches and the
#: pages in flight, 4 MB (about 10,000 rows) keeps a backfill's peak near 260 MB instead of 350,
#: at the same speed (bench/bench_datapath.py). Pages gather batches up to ``page_rows``.
BATCH_BYTES = 4 * 1024 * 1024


class ExtractConnection:
    """An ADBC PostgreSQL connection outside autocommit, with the small cursor interface the
    extract uses (``execute`` with positional ``$n`` parameters, ``fetch_record_batch``,
    ``fetch_arrow_table``, ``fetchone``, ``fetchall``)."""

    def __init__(self, url: str) -> None:
        #: Whether a statement ran since the last commit (else the transaction has no snapshot yet,
        #: and committing it would only cost a round trip).
        self.in_transaction = False
        #: The query values (``extract.bind``) and the exported snapshot of this transaction.
        self.bound: dict[str, str] = {}
        self.snapshot: str | None = None
        self._database = adbc_driver_postgresql.connect(postgres.with_deadlines(url, postgres.EXTRACT_STATEMENT_SECONDS))
        try:
            self._connection = adbc_driver_manager.AdbcConnection(self._database)
            self._connection.set_autocommit(False)
        except BaseException:
            self._database.close()
            raise

    def cursor(self) -> ExtractCursor:
        self.in_transaction = True  # a statement is about to run
        return ExtractCursor(self._connection)

    def commit(self) -> None:
        """End the transaction (nothing to do, and no round trip, if no statement ran in it)."""
        if self.in_transaction:
            self._connection.commit()
            self.in_transaction, self.bound, self.snapshot = False, {}, None

    def close(self) -> None:
        try:
            self._connection.close()
        finally:
            self._database.close()


class ExtractCursor:
    """One statement and its result stream; use as a context manager."""

    def __init__(self, connection) -> None:
        self._statement = adbc_driver_manager.AdbcStatement(connection)
        self._result: pa.RecordBatchReader | None = None

    def run(self, statements: str) -> None:
        """Run ``statements`` (one or several, ``;``-separated) that return nothing, without
        parameters: one round trip, where a query takes two or three (measured: 0.09 ms, a
        prepared query with parameters 1.0 ms)."""
        self._close_result()
        self._statement.set_sql_query(statements)
        self._statement.execute_update()

    def execute(self, query: str, parameters: Sequence[object] | None = None) -> None:
        """Run ``query``, binding ``parameters`` (str, int, float or None) to ``$1``, ``$2``...
        Without parameters the result streams through COPY as it arrives."""
        self._close_result()
        self._statement.set_sql_query(query)
        self._statement.set_options(**{adbc_driver_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(BATCH_BYTES)})
        if parameters:
            self._statement.prepare()
            # pa.repeat, not pa.array of a list: that imports pandas (to rule out a pandas object)
            values = pa.record_batch([pa.repeat(pa.scalar(value), 1) for value in parameters],
                                     names=[f"${i}" for i in range(1, len(parameters) + 1)])
            self._statement.bind(values)
        handle, _ = self._statement.execute_query()
        self._result = pa.RecordBatchReader._import_from_c(handle.address)

    def fetch_record_batch(self) -> pa.RecordBatchReader:
        """The result as a stream of record batches."""
        if self._result is None:
            raise RuntimeError("no result: execute a query first")
        return self._result

    def fetch_arrow_table(self) -> pa.Table:
        return self.fetch_record_batch().read_all()

    def fetchall(self) -> list[tuple]:
        table = self.fetch_arrow_table()
        return list(zip(*(column.to_pylist() for column in table.columns), strict=True))

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def _close_result(self) -> None:
        if self._result is not None:
            self._result.close()
            self._result = None

    def close(self) -> None:
        try:
            self._close_result()
        finally:
            self._statement.close()

    def __enter__(self) -> ExtractCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_created: set[tuple[str, str]] = set()


#: Each connection's DSN, read once: ``conn.info.dsn`` asks libpq for every option each time
#: (about 0.1 ms, measured as 8 % of a minute sync's CPU when asked for at every sync).
_dsns: weakref.WeakKeyDictionary[psycopg.Connection, str] = weakref.WeakKeyDictionary()


def _database(conn: psycopg.Connection) -> str:
    dsn = _dsns.get(conn)
    if dsn is None:
        dsn = _dsns[conn] = conn.info.dsn
    return dsn


def ensure_state_tables(conn: psycopg.Connection, name: str, ddl: str) -> None:
    """Run ``ddl`` (``CREATE TABLE IF NOT EXISTS`` of glific_bq's own state tables beside
    ``glific_bq_watermarks``) once per process and database, serialized by an advisory lock: two
    sessions running the same ``IF NOT EXISTS`` at once can still collide."""
    key = (_database(conn), name)
    if key in _created:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"glific_bq:{name}",))
        conn.execute(ddl)
    _created.add(key)
