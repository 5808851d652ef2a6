"""Looked-up values that change: a contact renamed, a flow renamed, a group relabelled, a user
renamed. Glific's layout copies such values into the rows that refer to them (``contact_name``
on messages, ``flow_name`` on flow results…) when it sends them, and Glific never sends those
rows again when the value changes (glific#4586). Here the change reaches them:

1. ``detect``: per organization, the rows of each looked-up table changed since the last look
   (one index probe on ``(organization_id, updated_at)`` each) get a digest of the values
   others copy; a digest that differs from the one kept in ``glific_bq_lookups``, or a row
   without one (new since the last look: its dependents may have been sent before it was
   renamed), queues a refresh of every dependent table in ``glific_bq_refresh``. A changed row
   whose copied values did not change (a contact field set by a flow, the usual case) queues
   nothing. The look moves like the sync's update cursor: up to the sync's horizon
   (``extract.horizon``, which waits for transactions still writing), never past a change
   still being committed; rows stamped exactly at the last position are looked at again.
2. ``refresh`` (called by the sync of each dependent table): the queued rows, already sent,
   are sent again in their current version, in pages, as updates are; then the queue entries
   go. At most ``budget`` rows per call: a parent with more dependents (a flow renamed after a
   million messages) goes on at the next sync, never in one burst.

The state lives in the source database beside ``glific_bq_watermarks``. Cost: for each organization
synced, one probe per looked-up table; per change of a copied value, the dependent rows once.
The first look at an organization records the digests and sends nothing again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import psycopg

from glific_bq.source import ensure_state_tables

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS glific_bq_lookups (
    organization_id bigint NOT NULL,
    parent text NOT NULL,
    id bigint NOT NULL,
    digest text NOT NULL,
    PRIMARY KEY (organization_id, parent, id)
);
CREATE TABLE IF NOT EXISTS glific_bq_lookup_cursors (
    organization_id bigint NOT NULL,
    parent text NOT NULL,
    updated_at timestamp NOT NULL,
    PRIMARY KEY (organization_id, parent)
);
CREATE TABLE IF NOT EXISTS glific_bq_refresh (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    parent text NOT NULL,
    id bigint NOT NULL,
    PRIMARY KEY (organization_id, "table", parent, id)
);
"""

_DETECT = """
WITH seen AS (  -- where the last look stopped; no row: this is the first look
    SELECT updated_at FROM glific_bq_lookup_cursors WHERE organization_id = %(org)s AND parent = %(parent)s
), current AS (
    SELECT p.id, p.updated_at, md5(row({columns})::text) AS digest
    FROM public.{parent} p
    WHERE p.organization_id = %(org)s
      AND p.updated_at >= COALESCE((SELECT updated_at FROM seen), '-infinity')
      AND p.updated_at < %(horizon)s
), changed AS (  -- a row without a digest is new since the last look: its dependents may copy an older value
    SELECT c.id FROM current c
    LEFT JOIN glific_bq_lookups l ON l.organization_id = %(org)s AND l.parent = %(parent)s AND l.id = c.id
    WHERE EXISTS (SELECT 1 FROM seen) AND l.digest IS DISTINCT FROM c.digest
), kept AS (
    INSERT INTO glific_bq_lookups (organization_id, parent, id, digest)
    SELECT %(org)s, %(parent)s, id, digest FROM current
    ON CONFLICT (organization_id, parent, id) DO UPDATE SET digest = EXCLUDED.digest
    WHERE glific_bq_lookups.digest <> EXCLUDED.digest  -- most changes copy nothing: no write
), queued AS (
    INSERT INTO glific_bq_refresh (organization_id, "table", parent, id)
    SELECT %(org)s, d.name, %(parent)s, changed.id FROM changed CROSS JOIN unnest(%(tables)s::text[]) AS d(name)
    ON CONFLICT DO NOTHING
    RETURNING 1
), moved AS (
    INSERT INTO glific_bq_lookup_cursors (organization_id, parent, updated_at)
    SELECT %(org)s, %(parent)s, COALESCE((SELECT max(updated_at) FROM current), (SELECT updated_at FROM seen), '-infinity')
    ON CONFLICT (organization_id, parent)
    DO UPDATE SET updated_at = GREATEST(glific_bq_lookup_cursors.updated_at, EXCLUDED.updated_at)
)
SELECT (SELECT count(*) FROM current), (SELECT count(*) FROM queued)
"""

def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the state tables (once per process and database)."""
    ensure_state_tables(conn, "lookups", _SCHEMA)


def detect(conn: psycopg.Connection, organization_id: int, looked_up: dict[str, tuple[str, ...]],
           dependents: dict[str, list[str]], horizon: datetime) -> int:
    """Queue refreshes for the dependents of every looked-up row of this organization whose
    copied values changed since the last look, or that is new since then; returns the refreshes
    queued.

    ``looked_up``: ``{parent table: columns others copy}``; ``dependents``: ``{parent table:
    [dependent tables]}``. Parents the source lacks are skipped. ``horizon``: the sync's
    (``extract.horizon``, read before this call): a row changed at or after it waits for a later
    look, as it waits for the sync's update cursor, so that a change still being committed is
    never passed.
    """
    ensure_tables(conn)
    queued = 0
    for parent, columns in looked_up.items():
        tables = dependents.get(parent)
        if not tables or not _has_columns(conn, parent, ("organization_id", "updated_at", *columns)):
            continue
        statement = _DETECT.format(parent=parent, columns=", ".join(f"p.{c}" for c in columns))
        with conn.transaction():
            _, count = conn.execute(statement, {"org": organization_id, "parent": parent, "tables": tables,
                                               "horizon": horizon}).fetchone()
        if count:
            log.info("organization %s: %s change(s) of looked-up %s values queued", organization_id, count, parent)
        queued += count
    return queued


def queued(conn: psycopg.Connection, organization_id: int, table: str) -> dict[str, list[int]]:
    """``{parent: [ids]}`` whose dependent rows of ``table`` wait to be sent again."""
    ensure_tables(conn)
    rows = conn.execute(
        'SELECT parent, array_agg(id ORDER BY id) FROM glific_bq_refresh '
        'WHERE organization_id = %s AND "table" = %s GROUP BY parent ORDER BY parent',
        (organization_id, table),
    ).fetchall()
    return {parent: ids for parent, ids in rows}


def done(conn: psycopg.Connection, organization_id: int, table: str, parent: str, ids: Iterable[int]) -> None:
    """Remove refreshes whose rows are confirmed in BigQuery."""
    conn.execute(
        'DELETE FROM glific_bq_refresh WHERE organization_id = %s AND "table" = %s AND parent = %s AND id = ANY(%s)',
        (organization_id, table, parent, list(ids)),
    )


def take(pending: dict[str, list[int]], size: int) -> dict[str, list[int]]:
    """Up to ``size`` ids out of ``pending`` (removed from it), by looked-up table: one refresh
    query sends each dependent row once, however many of its lookups changed."""
    batch: dict[str, list[int]] = {}
    for parent in list(pending):
        room = size - sum(map(len, batch.values()))
        if room <= 0:
            break
        batch[parent], pending[parent] = pending[parent][:room], pending[parent][room:]
        if not pending[parent]:
            del pending[parent]
    return batch


def _has_columns(conn: psycopg.Connection, table: str, columns: tuple[str, ...]) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = ANY(%s) AND NOT attisdropped",
        (f"public.{table}", list(columns)),
    ).fetchone()[0]
    return found == len(set(columns))
