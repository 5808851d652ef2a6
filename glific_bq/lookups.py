"""Looked-up values that change: a contact renamed, a flow renamed, a group relabelled, a user
renamed. Glific's layout copies such values into the rows that refer to them (``contact_name``
on messages, ``flow_name`` on flow results…) when it sends them, and Glific never sends those
rows again when the value changes (glific#4586). Here the change reaches them:

1. ``detect``: per organization, the rows of each looked-up table changed since the last look
   (one index probe on ``(organization_id, updated_at)`` each) get one digest per set of
   columns some tables copy (``glific.COPIES``: messages copy a contact's phone and name,
   contact histories its phone only); a digest that differs from the one kept in
   ``glific_bq_lookup_digests``, or a row without one (new since the last look: its dependents
   may have been sent before it was renamed), queues a refresh in ``glific_bq_refresh`` of the
   tables copying those columns, and of no other. A changed row whose copied values did not
   change (a contact field set by a flow, a staff login for every table but contacts, the usual
   case) queues nothing. The look moves like the sync's update cursor: up to the sync's horizon
   (``horizon.horizon``, which waits for transactions still writing), never past a change
   still being committed. Every row stamped before the horizon is visible when it is read, so
   the next look starts strictly after the newest one seen (a bulk update stamping thousands
   of rows alike is not read again at every look).
2. the refresh (``sync._refresh``, in the sync of each dependent table): the rows referring to
   a batch of queued parents (``next_batch``), already sent, are sent again in their current
   version, in pages, in id order, as updates are. After each page BigQuery confirmed, the
   batch's progress is kept (``progressed``): a sync stops after ``SyncOptions.refresh_rows``
   rows (a flow renamed after a million messages goes on over many syncs, never in one burst),
   and one that dies leaves the rest, not the whole batch, to the next. When a batch has no
   rows left its queue entries go (``done``); one queued again meanwhile (renamed twice) stays.

When to look is ``Checks``'s (one per process, ``checks``): at most every
``SyncOptions.lookup_check_seconds`` per organization, a tick's tenants together.

The state lives in the source database beside ``glific_bq_watermarks``. Cost: for the
organizations synced (a tick's together), one statement per looked-up table, an index probe per
organization; per change of a copied value, the rows copying it once; per looked-up row new
since the last look, its few dependents once. The first look at an organization records the
digests and sends nothing again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from glific_bq import layouts, redact
from glific_bq.source import ensure_state_tables

if TYPE_CHECKING:
    from glific_bq.registry import TableSpec

log = logging.getLogger(__name__)

_SCHEMA = """
-- The digest of each set of copied columns (``copied``: their names, comma-separated) of each
-- looked-up row, as last seen. It replaces glific_bq_lookups (one digest of every copied
-- column, which cannot tell which tables copy what changed): without a digest, a row's next
-- change is sent again to every table copying from it, so dropping those loses nothing.
CREATE TABLE IF NOT EXISTS glific_bq_lookup_digests (
    organization_id bigint NOT NULL,
    parent text NOT NULL,
    copied text NOT NULL,
    id bigint NOT NULL,
    digest text NOT NULL,
    PRIMARY KEY (organization_id, parent, copied, id)
);
DROP TABLE IF EXISTS glific_bq_lookups;
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
-- Added later (tables from before have neither: their refreshes start from the beginning).
-- progress: the id of the last row of "table" sent again for this refresh and confirmed (0: none
--   yet); the refreshes of one batch move together. queued: the transaction that queued it, so
--   that a refresh queued again while it is being sent (renamed twice) is never marked done.
ALTER TABLE glific_bq_refresh ADD COLUMN IF NOT EXISTS progress bigint NOT NULL DEFAULT 0,
                              ADD COLUMN IF NOT EXISTS queued bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS glific_bq_refresh_in_progress ON glific_bq_refresh (organization_id, "table")
    WHERE progress > 0;
"""

_DETECT = """
WITH seen AS (  -- where each organization's last look stopped; NULL: this is its first look
    SELECT o.org, c.updated_at
    FROM unnest(%(orgs)s::bigint[]) AS o(org)
    LEFT JOIN glific_bq_lookup_cursors c ON c.organization_id = o.org AND c.parent = %(parent)s
), current AS (
    SELECT s.org, p.id, p.updated_at, d.copied, d.digest
    FROM seen s
    JOIN {parent} p ON p.organization_id = s.org
                   AND p.updated_at > COALESCE(s.updated_at, '-infinity') AND p.updated_at < %(horizon)s
    CROSS JOIN LATERAL (VALUES {digests}) AS d(copied, digest)
), changed AS (  -- a row without a digest is new since the last look: its dependents may copy an older value
    SELECT c.org, c.id, c.copied FROM current c
    JOIN seen s ON s.org = c.org AND s.updated_at IS NOT NULL  -- a first look only records
    LEFT JOIN glific_bq_lookup_digests l
           ON l.organization_id = c.org AND l.parent = %(parent)s AND l.copied = c.copied AND l.id = c.id
    WHERE l.digest IS DISTINCT FROM c.digest
), kept AS (
    INSERT INTO glific_bq_lookup_digests (organization_id, parent, copied, id, digest)
    SELECT org, %(parent)s, copied, id, digest FROM current
    ON CONFLICT (organization_id, parent, copied, id) DO UPDATE SET digest = EXCLUDED.digest
    WHERE glific_bq_lookup_digests.digest <> EXCLUDED.digest  -- most changes copy nothing: no write
), queued AS (
    INSERT INTO glific_bq_refresh (organization_id, "table", parent, id, queued)
    SELECT DISTINCT changed.org, d.name, %(parent)s, changed.id, txid_current()
    FROM changed JOIN unnest(%(copied)s::text[], %(tables)s::text[]) AS d(copied, name) USING (copied)
    ON CONFLICT (organization_id, "table", parent, id)  -- changed again: sent again from the beginning
    DO UPDATE SET progress = 0, queued = EXCLUDED.queued
    RETURNING organization_id
), moved AS (
    INSERT INTO glific_bq_lookup_cursors (organization_id, parent, updated_at)
    SELECT s.org, %(parent)s,
           COALESCE((SELECT max(c.updated_at) FROM current c WHERE c.org = s.org), s.updated_at, '-infinity')
    FROM seen s
    ON CONFLICT (organization_id, parent) DO UPDATE SET updated_at = EXCLUDED.updated_at
    WHERE EXCLUDED.updated_at > glific_bq_lookup_cursors.updated_at  -- nothing new: no write
)
SELECT queued.organization_id, count(*) FROM queued GROUP BY 1
"""

def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the state tables (once per process and database)."""
    ensure_state_tables(conn, "lookups", _SCHEMA)


def detect(conn: psycopg.Connection, organization_ids: Iterable[int],
           copied: dict[str, dict[tuple[str, ...], list[str]]], horizon: datetime) -> int:
    """Queue refreshes for the rows that copy a value of these organizations' looked-up rows
    that changed since their last look (or of a row new since then); returns the refreshes
    queued. One statement per looked-up table for all the organizations (a tick's tenants are
    checked together), each organization's look moving on its own.

    ``copied``: ``{looked-up table: {columns: [tables copying exactly those]}}``
    (``layouts.lookup_sources``): a change queues only the tables copying a changed column.
    Looked-up tables or columns the source lacks are skipped. ``horizon``: the sync's
    (``horizon.horizon``, read before this call): a row changed at or after it waits for a later
    look, as it waits for the sync's update cursor, so that a change still being committed is
    never passed.
    """
    ensure_tables(conn)
    organization_ids = sorted(set(organization_ids))  # one order for every look: rows locked alike
    queued = 0
    for parent, sets in copied.items():
        present = _columns(conn, parent)
        sets = {columns: tables for columns, tables in sets.items() if tables and set(columns) <= present}
        if not sets or not {"organization_id", "updated_at"} <= present:
            continue
        labels = {columns: ",".join(columns) for columns in sets}
        digests = sql.SQL(", ").join(
            sql.SQL("({}, md5(row({})::text))").format(
                sql.Literal(labels[columns]), sql.SQL(", ").join(sql.Identifier("p", c) for c in columns))
            for columns in sets)
        statement = sql.SQL(_DETECT).format(parent=sql.Identifier("public", parent), digests=digests)
        pairs = [(labels[columns], table) for columns, tables in sets.items() for table in tables]
        with conn.transaction():
            counts = conn.execute(statement, {
                "orgs": organization_ids, "parent": parent, "horizon": horizon,
                "copied": [label for label, _ in pairs], "tables": [table for _, table in pairs],
            }).fetchall()
        for organization_id, count in counts:
            log.info("organization %s: %s change(s) of looked-up %s values queued", organization_id, count, parent)
            queued += count
    return queued


class Checks:
    """When each organization's looked-up values were last checked (``detect``) in this process,
    and the tenants expected next (``expect``: a tick's), checked together: the first sync whose
    tenant is due checks every expected tenant that is due too, one statement per looked-up table
    for all of them instead of one per tenant. Thread-safe: a tick's workers wait for that one
    check rather than each running its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked: dict[tuple[str, int], float] = {}
        self._expected: set[int] = set()

    def expect(self, work: Mapping[int, Sequence[TableSpec]]) -> None:
        """The tenants about to be synced (``{organization id: tables}``): those with a table that
        copies looked-up values are checked with the first that needs its check."""
        copying = {table for sets in layouts.lookup_sources().values() for tables in sets.values() for table in tables}
        with self._lock:
            self._expected = {org for org, specs in work.items() if any(spec.name in copying for spec in specs)}

    def ensure(self, conn: psycopg.Connection, database: str, organization_id: int, every_seconds: float,
               horizon: Callable[[], datetime]) -> None:
        """Check ``organization_id`` of ``database`` (and the expected tenants due as well) unless
        it was checked less than ``every_seconds`` ago; ``horizon`` gives the sync's, read before
        the look (``horizon.horizon``)."""
        with self._lock:
            now = time.monotonic()

            def due(organization: int) -> bool:
                last = self._checked.get((database, organization))
                return last is None or now - last >= every_seconds

            if not due(organization_id):
                return
            together = sorted(org for org in self._expected | {organization_id} if due(org))
            top = horizon()
            try:
                detect(conn, together, layouts.lookup_sources(), top)
            except psycopg.Error as error:
                if together == [organization_id]:
                    raise
                log.warning("looked-up values of %s organizations, checked together: %s; checking organization %s "
                            "alone", len(together), redact.describe(error), organization_id)
                together = [organization_id]  # another tenant's trouble stays its own
                detect(conn, together, layouts.lookup_sources(), top)
            checked = time.monotonic()
            for organization in together:
                self._checked[(database, organization)] = checked
            self._expected.difference_update(together)


#: This process's looked-up values checks.
checks = Checks()


@dataclass(frozen=True)
class Batch:
    """Refreshes of one table sent together, by one query: ``ids``, the changed rows by looked-up
    table (``{parent: [ids]}``, as ``extract.pages`` takes them); ``progress``, the id of the
    last row already sent again for them (0: none yet), where the next page starts."""

    organization_id: int
    table: str
    ids: dict[str, list[int]]
    progress: int
    queued: tuple[tuple[str, int, int], ...]  # (parent, id, queued) of each refresh


#: Looked-up rows per batch: the rows referring to them are read by one query, in pages.
BATCH_PARENTS = 1_000

_BATCH = """
WITH forgotten AS (  -- refreshes for looked-up tables this table no longer copies from
    DELETE FROM glific_bq_refresh
    WHERE organization_id = %(org)s AND "table" = %(table)s AND parent <> ALL(%(parents)s)
)
SELECT parent, id, queued, progress FROM glific_bq_refresh
WHERE organization_id = %(org)s AND "table" = %(table)s AND parent = ANY(%(parents)s)
  AND progress = COALESCE((SELECT max(progress) FROM glific_bq_refresh  -- a batch under way goes on first
                           WHERE organization_id = %(org)s AND "table" = %(table)s AND parent = ANY(%(parents)s)
                             AND progress > 0), 0)
ORDER BY parent, id
LIMIT %(limit)s
"""

#: The refreshes of a batch (``_batch_values``), as ``FROM``/``USING`` and ``WHERE`` of ``r``.
_BATCH_ROWS = "unnest(%(parents)s::text[], %(ids)s::bigint[], %(queued)s::bigint[]) AS b(parent, id, queued)"
_IN_BATCH = """r.organization_id = %(org)s AND r."table" = %(table)s
  AND (r.parent, r.id, r.queued) = (b.parent, b.id, b.queued)"""


def next_batch(conn: psycopg.Connection, organization_id: int, table: str, parents: Iterable[str],
               size: int = BATCH_PARENTS) -> Batch | None:
    """The refreshes of ``table`` for changes of the looked-up tables ``parents`` to send next
    (None: nothing queued): the batch a sync left under way, or else up to ``size`` queued ones.
    Refreshes queued for other looked-up tables are dropped on the way: nothing in ``table``
    copies from them any more (a layout changed), and left queued they would keep it planned."""
    ensure_tables(conn)
    rows = conn.execute(_BATCH, {"org": organization_id, "table": table, "parents": list(parents),
                                 "limit": size}).fetchall()
    if not rows:
        return None
    ids: dict[str, list[int]] = {}
    for parent, id_, _, _ in rows:
        ids.setdefault(parent, []).append(id_)
    return Batch(organization_id, table, ids, rows[0][3], tuple((p, i, q) for p, i, q, _ in rows))


def _batch_values(batch: Batch) -> dict[str, object]:
    parents, ids, queued = zip(*batch.queued, strict=True)
    return {"org": batch.organization_id, "table": batch.table, "parents": list(parents), "ids": list(ids),
            "queued": list(queued)}


def progressed(conn: psycopg.Connection, batch: Batch, last_id: int) -> Batch:
    """Record that the rows of ``batch`` up to ``last_id`` are sent again and confirmed: a sync that
    stops now goes on after them. Refreshes queued again meanwhile keep their own progress."""
    conn.execute(f"UPDATE glific_bq_refresh r SET progress = %(progress)s FROM {_BATCH_ROWS} WHERE {_IN_BATCH}",
                 {**_batch_values(batch), "progress": last_id})
    return replace(batch, progress=last_id)


def done(conn: psycopg.Connection, batch: Batch) -> None:
    """Remove the refreshes of ``batch``: every row referring to them is sent again and confirmed.
    A refresh queued again meanwhile stays, to be sent from the beginning."""
    conn.execute(f"DELETE FROM glific_bq_refresh r USING {_BATCH_ROWS} WHERE {_IN_BATCH}",
                 _batch_values(batch))


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    """The columns of ``public.<table>`` (none if it does not exist)."""
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                        "AND NOT attisdropped", (f"public.{table}",)).fetchall()
    return {name for (name,) in rows}
