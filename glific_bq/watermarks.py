"""Watermarks: how far each (organization, table, destination) has been synced.

glific_bq's state lives in its own table, ``glific_bq_watermarks``, in the source database. Glific's
``bigquery_jobs`` keeps exactly Glific's columns, types, indexes and meanings: glific_bq only moves
its two watermarks as Glific's own sync would (``table_id``, ``last_updated_at``), for the
organization's Glific dataset, so that either sync can take over from the other at any minute
without losing or re-sending history.

``glific_bq_watermarks``, one row per (organization, table, destination):

- ``destination``: where the rows went, ``layout:project.dataset`` (``config.destination``). Rows
  sent to one dataset say nothing about another: a new dataset (a bot's phone number changed),
  another project or a layout override starts from the beginning.
- ``table_id``: every row with ``id <= table_id`` has been sent at least once.
- ``last_updated_at``, ``last_updated_id``: the update pass's compound cursor. Every row at or
  below ``(last_updated_at, last_updated_id)`` in (cursor, id) order, and with ``id <= table_id``,
  has its latest version in BigQuery. The id breaks ties between the thousands of rows a bulk
  update gives the same ``updated_at``.
- ``advanced_at``: when the update cursor last moved forward (for a table synced by id only, or
  before its cursor first moves: the id watermark); ``created_at``: when the row was made (or,
  when taken over from Glific, when Glific's sync last moved it). Stalled-watermark alerts read
  both. Inserts moving ``table_id`` alone do not count: a cursor held back by a transaction left
  open must show as stalled while inserts keep flowing (a healthy sync moves the cursor past the
  rows it inserted at the end of each round), and a call that moves nothing stamps nothing.
- ``deduped_at``: when the last successful dedup pass of this tenant-table started.
- ``failures``, ``last_error``, ``last_failed_at``: consecutive failed syncs and the latest
  error, for backoff (glific#5570) and alerts. A successful sync resets them.
- ``loads_on``, ``loads``: BigQuery load jobs into the table on that UTC day (backfills).

**Taking over from Glific** (a ``glific`` destination without a row of its own): the row starts
where Glific's ``bigquery_jobs`` row of (organization, table) stands (the lowest of Glific's
duplicate rows, so nothing is skipped). Whenever Glific's ``table_id`` is ahead of ours (Glific's
sync ran while glific_bq was stopped), ours moves up to Glific's row. **Handing back:** each advance of a ``glific``
destination moves Glific's row too: ``table_id`` to ours (capped at Glific's 32-bit column, which
only re-sends), ``last_updated_at`` to just before our cursor's timestamp (Glific reads
``updated_at > last_updated_at``: rows tied at our cursor are sent again, never skipped). glific_bq
never inserts or deletes rows of ``bigquery_jobs``: Glific creates them when BigQuery is enabled.

**Installations from before this table** kept this state in extra columns of ``bigquery_jobs``:
``ensure_table`` moves it here (destination unknown: claimed by the first destination of the
pair that syncs) and gives ``bigquery_jobs`` back its own shape, in one transaction.

A watermark only moves forward, and only after the rows below it are confirmed in BigQuery.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

#: Where the update cursor of a new (organization, table) starts: before any row.
BEGINNING = datetime(1970, 1, 1)

#: glific_bq's watermark table.
TABLE = "glific_bq_watermarks"

#: The destination of state moved from an old ``bigquery_jobs``, until a destination claims it.
UNCLAIMED = ""

_ENSURE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    destination text NOT NULL,
    table_id bigint NOT NULL DEFAULT 0,
    last_updated_at timestamp NOT NULL DEFAULT '1970-01-01',
    last_updated_id bigint NOT NULL DEFAULT 0,
    advanced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    failures integer NOT NULL DEFAULT 0,
    last_error text,
    last_failed_at timestamptz,
    deduped_at timestamptz,
    loads_on date,
    loads integer NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, "table", destination)
)
"""

#: Glific's own ``bigquery_jobs`` (what ``ensure_table`` creates where Glific has not).
_GLIFIC_JOBS = """
CREATE TABLE IF NOT EXISTS bigquery_jobs (
    id bigserial PRIMARY KEY,
    "table" varchar(255),
    table_id integer,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(0) NOT NULL,
    updated_at timestamp(0) NOT NULL,
    last_updated_at timestamp
);
CREATE INDEX IF NOT EXISTS bigquery_jobs_organization_id_table_index ON bigquery_jobs (organization_id, "table");
"""

#: Columns and the index earlier glific_bq versions added to ``bigquery_jobs``.
_LEGACY_COLUMNS = ("last_updated_id", "advanced_at", "failures", "last_error", "last_failed_at", "deduped_at",
                   "loads_on", "loads")
_LEGACY_INDEX = "bigquery_jobs_organization_id_table_uniq"

_MOVE_LEGACY = f"""
INSERT INTO {TABLE} (organization_id, "table", destination, table_id, last_updated_at, last_updated_id,
                     advanced_at, created_at, failures, last_error, last_failed_at, deduped_at, loads_on, loads)
SELECT organization_id, "table", '{UNCLAIMED}', min(COALESCE(table_id, 0)), min(COALESCE(last_updated_at, '1970-01-01')),
       CASE WHEN count(*) = 1 THEN min(last_updated_id) ELSE 0 END, max(advanced_at),
       COALESCE(max(updated_at) AT TIME ZONE 'UTC', now()), max(failures), max(last_error), max(last_failed_at),
       min(deduped_at), max(loads_on), max(loads)
FROM bigquery_jobs WHERE "table" IS NOT NULL
GROUP BY organization_id, "table"
ON CONFLICT DO NOTHING
"""

_COLUMNS = ('organization_id, "table", destination, table_id, last_updated_at, last_updated_id, advanced_at, '
            "created_at, failures, last_error, last_failed_at, deduped_at")


@dataclass(frozen=True)
class Watermark:
    organization_id: int
    table: str
    destination: str
    table_id: int
    last_updated_at: datetime
    last_updated_id: int
    advanced_at: datetime | None = None
    created_at: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    last_failed_at: datetime | None = None
    deduped_at: datetime | None = None

    @property
    def cursor(self) -> tuple[datetime, int]:
        """The update pass's position in (cursor, id) order."""
        return self.last_updated_at, self.last_updated_id

    def as_metadata(self) -> dict[str, object]:
        return {
            "table_id": self.table_id,
            "last_updated_at": self.last_updated_at.isoformat(),
            "last_updated_id": self.last_updated_id,
        }


def is_glific(destination: str) -> bool:
    """Whether rows for ``destination`` go to Glific's own layout (whose watermarks Glific's
    ``bigquery_jobs`` mirrors)."""
    return destination.startswith("glific:")


def _present(conn: psycopg.Connection) -> tuple[bool, bool, bool]:
    """Whether our table exists, Glific's exists, and Glific's still carries our old columns."""
    return conn.execute(
        f"SELECT to_regclass('{TABLE}') IS NOT NULL, to_regclass('bigquery_jobs') IS NOT NULL, "
        "EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('bigquery_jobs') "
        "AND attname = ANY(%s) AND NOT attisdropped) OR to_regclass(%s) IS NOT NULL",
        (list(_LEGACY_COLUMNS), _LEGACY_INDEX),
    ).fetchone()


def ensure_table(conn: psycopg.Connection) -> None:
    """Create ``glific_bq_watermarks`` (and Glific's ``bigquery_jobs`` where Glific has not), and
    move the state of earlier glific_bq versions out of ``bigquery_jobs``.

    Idempotent and cheap when all is in place (one catalog query, no DDL, no lock), so every run
    can call it before it plans. The move is one transaction: it happens whole or not at all.
    """
    ours, glifics, legacy = _present(conn)
    if ours and glifics and not legacy:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('glific_bq:bigquery_jobs', 0))")
        conn.execute(_ENSURE)
        if not _present(conn)[1]:  # Glific's own, where Glific has not created it (tests, the demo)
            conn.execute(_GLIFIC_JOBS)
        if _present(conn)[2]:
            conn.execute(_MOVE_LEGACY)
            conn.execute(f"DROP INDEX IF EXISTS {_LEGACY_INDEX}")
            for column in _LEGACY_COLUMNS:
                conn.execute(f"ALTER TABLE bigquery_jobs DROP COLUMN IF EXISTS {column}")
            # Glific's table_id is a 32-bit integer; earlier versions widened it.
            conn.execute(
                "DO $$ BEGIN IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                "'bigquery_jobs'::regclass AND attname = 'table_id') = 'bigint' AND NOT EXISTS "
                "(SELECT FROM bigquery_jobs WHERE table_id > 2147483647) THEN "
                "ALTER TABLE bigquery_jobs ALTER COLUMN table_id TYPE integer; END IF; END $$"
            )


# A missing row of a ``glific`` destination starts where Glific's ``bigquery_jobs`` stands (or a
# row claims the state moved from an old ``bigquery_jobs``); an existing one moves up to Glific's
# row when Glific's sync got further. One statement, one round trip.
_TAKEN_OVER = f"""
glifics AS (
    SELECT min(COALESCE(table_id, 0))::bigint AS table_id,
           min(COALESCE(last_updated_at, '1970-01-01')) AS last_updated_at,
           max(updated_at) AT TIME ZONE 'UTC' AS moved_at
    FROM bigquery_jobs WHERE organization_id = %(org)s AND "table" = %(table)s AND %(glific)s
    HAVING count(*) > 0
), claimed AS (
    DELETE FROM {TABLE} WHERE organization_id = %(org)s AND "table" = %(table)s AND destination = '{UNCLAIMED}'
      AND NOT EXISTS (SELECT FROM {TABLE} WHERE organization_id = %(org)s AND "table" = %(table)s
                      AND destination = %(destination)s)
    RETURNING *
)"""
_UPSERT = f"""
INSERT INTO {TABLE} AS w (organization_id, "table", destination, table_id, last_updated_at, last_updated_id,
                          created_at, advanced_at, failures, last_error, last_failed_at, deduped_at, loads_on, loads)
SELECT %(org)s, %(table)s, %(destination)s,
       COALESCE(c.table_id, g.table_id, 0), COALESCE(c.last_updated_at, g.last_updated_at, %(beginning)s),
       COALESCE(c.last_updated_id, 0), COALESCE(c.created_at, g.moved_at, now()), c.advanced_at,
       COALESCE(c.failures, 0), c.last_error, c.last_failed_at, c.deduped_at, c.loads_on, COALESCE(c.loads, 0)
FROM (SELECT 1) one LEFT JOIN claimed c ON true LEFT JOIN glifics g ON true
ON CONFLICT (organization_id, "table", destination) DO UPDATE SET
    table_id = excluded.table_id,
    last_updated_at = GREATEST(w.last_updated_at, excluded.last_updated_at),
    last_updated_id = CASE WHEN excluded.last_updated_at > w.last_updated_at THEN 0 ELSE w.last_updated_id END
WHERE %(glific)s AND excluded.table_id > w.table_id  -- only a sync that ran past ours moves it
"""
_CREATE = f"WITH {_TAKEN_OVER} {_UPSERT}"
# The same, and the row it leaves, in one statement: as the upsert wrote it, or else as it stood
# (the statement's snapshot, taken before the upsert, holds a row the upsert left untouched).
_OPEN = f"""WITH {_TAKEN_OVER}, upserted AS ({_UPSERT} RETURNING {_COLUMNS})
SELECT {_COLUMNS} FROM upserted
UNION ALL
SELECT {_COLUMNS} FROM {TABLE}
WHERE organization_id = %(org)s AND "table" = %(table)s AND destination = %(destination)s
  AND NOT EXISTS (SELECT FROM upserted)
"""


def create(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> None:
    """Give (organization, table, destination) its watermark row unless it has one: where a sync
    starts, and where a failure or a dedup pass must be recorded. For a ``glific`` destination,
    also take over from Glific's ``bigquery_jobs`` (see the module's docstring). Reads never
    create rows."""
    # With the row in place and Glific behind, the upsert's WHERE leaves it untouched (no write).
    conn.execute(_CREATE, {"org": organization_id, "table": table, "destination": destination,
                           "glific": is_glific(destination), "beginning": BEGINNING})


def ensure(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> Watermark:
    """The watermark a sync starts from: ``create``, then ``get``, in one round trip."""
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(_OPEN, {"org": organization_id, "table": table, "destination": destination,
                            "glific": is_glific(destination), "beginning": BEGINNING})
        watermark = cur.fetchone()
    # None: another session created the row after this statement's snapshot (its upsert then
    # left it untouched, unseen); it is there now.
    return watermark or get(conn, organization_id, table, destination)


def get(conn: psycopg.Connection, organization_id: int, table: str, destination: str | None = None) -> Watermark:
    """The watermark of one (organization, table, destination); the beginning if it has none yet
    (not stored: reading never writes; ``create`` does, where a sync starts). Without
    ``destination``: the pair's only one (for tools and tests; an error if it has several)."""
    where, params = 'organization_id = %s AND "table" = %s', [organization_id, table]
    if destination is not None:
        where, params = where + " AND destination = %s", [*params, destination]
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where}", params)
        found = cur.fetchall()
    if len(found) > 1:
        raise LookupError(f"organization {organization_id}, {table} has watermarks for {len(found)} destinations: "
                          "name one")
    return found[0] if found else Watermark(organization_id, table, destination or "", 0, BEGINNING, 0)


_ADVANCE = f"""
WITH moved AS (
    UPDATE {TABLE} SET
        table_id = GREATEST(table_id, COALESCE(%(table_id)s, table_id)),
        last_updated_at = CASE WHEN (%(ts)s::timestamp, %(id)s::bigint) > (last_updated_at, last_updated_id)
                               THEN %(ts)s ELSE last_updated_at END,
        last_updated_id = CASE WHEN (%(ts)s::timestamp, %(id)s::bigint) > (last_updated_at, last_updated_id)
                               THEN %(id)s ELSE last_updated_id END,
        -- the update cursor moved; or the id watermark, while there is no cursor to move (see advanced_at)
        advanced_at = CASE WHEN (%(ts)s::timestamp, %(id)s::bigint) > (last_updated_at, last_updated_id)
                             OR (%(table_id)s > table_id AND last_updated_at = %(beginning)s)
                           THEN now() ELSE advanced_at END
    WHERE organization_id = %(org)s AND "table" = %(table)s AND destination = %(destination)s
    RETURNING {_COLUMNS}
), mirrored AS (
    UPDATE bigquery_jobs j SET
        table_id = GREATEST(COALESCE(j.table_id, 0), LEAST(m.table_id, 2147483647)),
        last_updated_at = CASE WHEN m.last_updated_at > '1970-01-01'
            THEN GREATEST(j.last_updated_at, m.last_updated_at - interval '1 microsecond') ELSE j.last_updated_at END,
        updated_at = date_trunc('second', now() AT TIME ZONE 'UTC')
    FROM moved m
    WHERE %(glific)s AND j.organization_id = m.organization_id AND j."table" = m."table"
)
SELECT * FROM moved
"""


def advance(
    conn: psycopg.Connection,
    organization_id: int,
    table: str,
    destination: str,
    *,
    table_id: int | None = None,
    cursor: tuple[datetime, int] | None = None,
) -> Watermark:
    """Move a watermark forward (and Glific's ``bigquery_jobs`` with it, for a ``glific``
    destination); a position behind the stored one leaves it where it is.

    Call only once the rows up to the new position are confirmed in BigQuery.
    """
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(_ADVANCE, {
            "table_id": table_id, "ts": cursor[0] if cursor else None, "id": cursor[1] if cursor else None,
            "org": organization_id, "table": table, "destination": destination, "glific": is_glific(destination),
            "beginning": BEGINNING,
        })
        watermark = cur.fetchone()
    if watermark is None:
        raise LookupError(f"no watermark for organization {organization_id}, table {table}, {destination}")
    return watermark


def reset(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> None:
    """Send the whole table again from the beginning (rows already in BigQuery become duplicates
    until the next dedup). Glific's ``bigquery_jobs`` is left alone: it only ever moves forward."""
    conn.execute(
        f"UPDATE {TABLE} SET table_id = 0, last_updated_at = %s, last_updated_id = 0, advanced_at = now() "
        'WHERE organization_id = %s AND "table" = %s AND destination = %s',
        (BEGINNING, organization_id, table, destination),
    )


#: Longest error text kept; the rest is cut.
_MAX_ERROR = 2000

_KEY = 'organization_id = %s AND "table" = %s AND destination = %s'


def record_failure(conn: psycopg.Connection, organization_id: int, table: str, destination: str, error: str) -> None:
    """Count one more consecutive failure of this tenant-table and keep its error."""
    create(conn, organization_id, table, destination)
    conn.execute(f"UPDATE {TABLE} SET failures = failures + 1, last_error = %s, last_failed_at = now() WHERE {_KEY}",
                 (error[:_MAX_ERROR], organization_id, table, destination))


def record_success(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> None:
    """Clear the failure count after a successful sync (a no-op write-free query when already 0)."""
    conn.execute(f"UPDATE {TABLE} SET failures = 0, last_error = NULL WHERE {_KEY} AND failures > 0",
                 (organization_id, table, destination))


def loads_today(conn: psycopg.Connection, organization_id: int, table: str, destination: str | None = None) -> int:
    """BigQuery load jobs into this tenant-table so far today (UTC): they count against the
    table's daily modifications (see ``warehouse.writes.LOADS_PER_TABLE_PER_DAY``)."""
    where, params = 'organization_id = %s AND "table" = %s', [organization_id, table]
    if destination is not None:
        where, params = where + " AND destination = %s", [*params, destination]
    row = conn.execute(
        f"SELECT sum(loads) FROM {TABLE} WHERE {where} AND loads_on = (now() AT TIME ZONE 'UTC')::date", params,
    ).fetchone()
    return int(row[0] or 0)


def record_load(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> None:
    """Count one load job into this tenant-table today (UTC), before it is started: a load that
    fails may still have counted at BigQuery."""
    conn.execute(
        f"UPDATE {TABLE} SET loads = CASE WHEN loads_on = (now() AT TIME ZONE 'UTC')::date "
        f"THEN loads + 1 ELSE 1 END, loads_on = (now() AT TIME ZONE 'UTC')::date WHERE {_KEY}",
        (organization_id, table, destination),
    )


def record_dedup(conn: psycopg.Connection, organization_id: int, table: str, destination: str,
                 started_at: datetime) -> None:
    """Remember when the last successful dedup pass of this tenant-table started."""
    create(conn, organization_id, table, destination)
    conn.execute(f"UPDATE {TABLE} SET deduped_at = %s WHERE {_KEY}", (started_at, organization_id, table, destination))


def all_watermarks(conn: psycopg.Connection) -> list[Watermark]:
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(f'SELECT {_COLUMNS} FROM {TABLE} ORDER BY organization_id, "table", destination')
        return cur.fetchall()


@contextlib.contextmanager
def exclusive(conn: psycopg.Connection, organization_id: int, table: str) -> Iterator[bool]:
    """Hold the sync lock of one (organization, table) while the block runs.

    Yields False, without waiting, if another sync holds it: two runs never sync the same
    tenant-table at once, and an overlapping one skips cleanly. A session-level advisory lock, so
    it is released when the connection closes, even after a crash.
    """
    key = f"glific_bq:{organization_id}:{table}"
    acquired = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
    try:
        yield acquired
    finally:
        # A connection that broke or was closed took the lock with its session: nothing to
        # release, and the error that broke it is the one to see.
        if acquired and not (conn.closed or conn.broken):
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
            except psycopg.OperationalError:  # the server ended the session: the lock went with it
                pass
