"""Which BigQuery table schema was last applied, remembered in the source database, so that a
new process (every Dagster run is one) trusts a table it set up before instead of asking
BigQuery again.

``warehouse.known_tables`` remembers applied schemas per process: in a new process each
(tenant, table) still cost one ``tables.get``, about 100 ms away from BigQuery, and at the
pacing that keeps us inside BigQuery's API limits, 800 tables took 20 s of every cold tick
(bench/bench_tick_latency.py). With the fingerprint kept here, a table whose source schema is
unchanged costs one local index lookup; verification stays lazy (an append refused because the
table is gone or its schema differs sets it up again, ``known_tables.recheck``).
"""

from __future__ import annotations

import psycopg

from glific_bq.source import ensure_state_tables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS glific_bq_applied_schemas (
    table_id text PRIMARY KEY,
    fingerprint text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

def _ensure(conn: psycopg.Connection) -> None:
    ensure_state_tables(conn, "applied_schemas", _SCHEMA)


def recorded(conn: psycopg.Connection, table_id: str) -> str | None:
    """The fingerprint of the schema last applied to ``table_id`` (project.dataset.table)."""
    _ensure(conn)
    row = conn.execute("SELECT fingerprint FROM glific_bq_applied_schemas WHERE table_id = %s", (table_id,)).fetchone()
    return row[0] if row else None


def record(conn: psycopg.Connection, table_id: str, fingerprint: str) -> None:
    """Remember that ``table_id`` now has the schema of ``fingerprint``."""
    _ensure(conn)
    conn.execute(
        "INSERT INTO glific_bq_applied_schemas (table_id, fingerprint) VALUES (%s, %s) "
        "ON CONFLICT (table_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, applied_at = now() "
        "WHERE glific_bq_applied_schemas.fingerprint <> EXCLUDED.fingerprint",
        (table_id, fingerprint),
    )


def forget(conn: psycopg.Connection, table_id: str) -> None:
    """Forget what was applied to ``table_id``: another table now has its name (a repartition's
    swap), so the next sync checks it once instead of trusting it."""
    _ensure(conn)
    conn.execute("DELETE FROM glific_bq_applied_schemas WHERE table_id = %s", (table_id,))
