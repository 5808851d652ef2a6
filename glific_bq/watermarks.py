"""The watermark table ``bigquery_jobs``: how far each (organization, table) has been synced.

It lives in the source database, as in Glific, and is adopted as it is when Glific created it
already. Columns (Glific's first, then ours):

- ``table``, ``organization_id``: the key; one row per pair, enforced by a unique index.
- ``table_id``: every row with ``id <= table_id`` has been sent at least once.
- ``last_updated_at``, ``last_updated_id``: the update pass's compound cursor. Every row at or
  below ``(last_updated_at, last_updated_id)`` in (updated_at, id) order, and with
  ``id <= table_id``, has its latest version in BigQuery. The id breaks ties between the thousands
  of rows a bulk update gives the same ``updated_at``.
- ``advanced_at``: when the watermark last moved (stalled-watermark alerts read it).
- ``deduped_at``: when the last successful dedup pass of this tenant-table started; the next
  pass examines only ids changed since.
- ``failures``, ``last_error``, ``last_failed_at``: consecutive failed syncs and the latest
  error, for backoff (a tenant with invalid credentials is not retried every minute, glific#5570)
  and alerts. A successful sync resets them.
- ``loads_on``, ``loads``: BigQuery load jobs into the table on that UTC day (backfills), held
  to the table's daily modification budget.

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

_ENSURE = """
CREATE TABLE IF NOT EXISTS bigquery_jobs (
    id bigserial PRIMARY KEY,
    "table" varchar(255) NOT NULL,
    table_id bigint NOT NULL DEFAULT 0,
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    last_updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    inserted_at timestamp(0) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at timestamp(0) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS last_updated_id bigint NOT NULL DEFAULT 0;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS advanced_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS last_failed_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS deduped_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS loads_on date;
ALTER TABLE bigquery_jobs ADD COLUMN IF NOT EXISTS loads integer NOT NULL DEFAULT 0;
"""

# Glific's table has only a non-unique index on (organization_id, table). Before the unique index
# can exist, duplicate rows are merged into the most conservative one: the lowest watermarks, so
# that nothing is skipped (a few rows may be sent again; dedup removes the copies).
_MERGE_DUPLICATES = """
WITH merged AS (
    SELECT organization_id, "table", min(id) AS keep_id, min(table_id) AS table_id,
           min(COALESCE(last_updated_at, '1970-01-01')) AS last_updated_at
    FROM bigquery_jobs GROUP BY organization_id, "table" HAVING count(*) > 1
), kept AS (
    UPDATE bigquery_jobs j
    SET table_id = m.table_id, last_updated_at = m.last_updated_at, last_updated_id = 0
    FROM merged m WHERE j.id = m.keep_id
    RETURNING j.id
)
DELETE FROM bigquery_jobs j USING merged m
WHERE j.organization_id = m.organization_id AND j."table" = m."table" AND j.id <> m.keep_id
"""

_UNIQUE = """
CREATE UNIQUE INDEX IF NOT EXISTS bigquery_jobs_organization_id_table_uniq
ON bigquery_jobs (organization_id, "table")
"""

# Glific leaves some rows with NULL table_id or last_updated_at: read as "nothing sent yet" (the
# most conservative reading: rows are sent again rather than skipped; dedup keeps one).
_COLUMNS = (
    'organization_id, "table", COALESCE(table_id, 0) AS table_id, '
    "COALESCE(last_updated_at, '1970-01-01') AS last_updated_at, last_updated_id, advanced_at, "
    "failures, last_error, last_failed_at, deduped_at"
)


@dataclass(frozen=True)
class Watermark:
    organization_id: int
    table: str
    table_id: int
    last_updated_at: datetime
    last_updated_id: int
    advanced_at: datetime | None
    failures: int = 0
    last_error: str | None = None
    last_failed_at: datetime | None = None
    deduped_at: datetime | None = None

    @property
    def cursor(self) -> tuple[datetime, int]:
        """The update pass's position in (updated_at, id) order."""
        return self.last_updated_at, self.last_updated_id

    def as_metadata(self) -> dict[str, object]:
        return {
            "table_id": self.table_id,
            "last_updated_at": self.last_updated_at.isoformat(),
            "last_updated_id": self.last_updated_id,
        }


_OUR_COLUMNS = ("last_updated_id", "advanced_at", "failures", "last_error", "last_failed_at", "deduped_at",
                "loads_on", "loads")


def ensure_table(conn: psycopg.Connection) -> None:
    """Create ``bigquery_jobs`` or adopt Glific's, adding our columns and the unique key.

    Idempotent and cheap when all is in place (one catalog query, no DDL, no lock on the table),
    so every run can call it before it plans.
    """
    present = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('bigquery_jobs') "
        "AND attname = ANY(%s) AND NOT attisdropped",
        (list(_OUR_COLUMNS),),
    ).fetchone()[0]
    unique = conn.execute("SELECT to_regclass('bigquery_jobs_organization_id_table_uniq') IS NOT NULL").fetchone()[0]
    if present == len(_OUR_COLUMNS) and unique:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('glific_bq:bigquery_jobs', 0))")
        conn.execute(_ENSURE)
        unique = conn.execute(
            "SELECT 1 FROM pg_indexes WHERE tablename = 'bigquery_jobs' "
            "AND indexname = 'bigquery_jobs_organization_id_table_uniq'"
        ).fetchone()
        if not unique:
            conn.execute(_MERGE_DUPLICATES)
            conn.execute(_UNIQUE)
        # Glific's table_id is a 32-bit integer; ids past 2^31 need 64 bits (Ecto reads both).
        conn.execute(
            "DO $$ BEGIN IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'bigquery_jobs'::regclass AND attname = 'table_id') = 'integer' THEN "
            "ALTER TABLE bigquery_jobs ALTER COLUMN table_id TYPE bigint; END IF; END $$"
        )


def create(conn: psycopg.Connection, organization_id: int, table: str) -> None:
    """Give (organization, table) a watermark row, at the beginning, unless it has one: where a
    sync starts, and where a failure or a dedup pass must be recorded. Reads never create rows."""
    conn.execute(
        # Glific's own table has NOT NULL inserted_at/updated_at without a database default (Ecto
        # sets them in the application): set them here, as Glific would (naive UTC, seconds).
        'INSERT INTO bigquery_jobs (organization_id, "table", table_id, last_updated_at, inserted_at, updated_at) '
        "VALUES (%s, %s, 0, %s, date_trunc('second', now() AT TIME ZONE 'UTC'), "
        "date_trunc('second', now() AT TIME ZONE 'UTC')) ON CONFLICT (organization_id, \"table\") DO NOTHING",
        (organization_id, table, BEGINNING),
    )


def get(conn: psycopg.Connection, organization_id: int, table: str) -> Watermark:
    """The watermark of one (organization, table); the beginning if it has none yet (not stored:
    reading never writes; ``create`` does, where a sync starts)."""
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(
            f'SELECT {_COLUMNS} FROM bigquery_jobs WHERE organization_id = %s AND "table" = %s',
            (organization_id, table),
        )
        watermark = cur.fetchone()
    return watermark or Watermark(organization_id, table, 0, BEGINNING, 0, None)


def advance(
    conn: psycopg.Connection,
    organization_id: int,
    table: str,
    *,
    table_id: int | None = None,
    cursor: tuple[datetime, int] | None = None,
) -> Watermark:
    """Move a watermark forward; a position behind the stored one leaves it where it is.

    Call only once the rows up to the new position are confirmed in BigQuery.
    """
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(
            f"""
            UPDATE bigquery_jobs SET
                table_id = GREATEST(table_id, COALESCE(%(table_id)s, table_id)),
                last_updated_at = CASE WHEN (%(ts)s::timestamp, %(id)s::bigint) > (last_updated_at, last_updated_id)
                                       THEN %(ts)s ELSE last_updated_at END,
                last_updated_id = CASE WHEN (%(ts)s::timestamp, %(id)s::bigint) > (last_updated_at, last_updated_id)
                                       THEN %(id)s ELSE last_updated_id END,
                advanced_at = now(),
                updated_at = now() AT TIME ZONE 'UTC'
            WHERE organization_id = %(org)s AND "table" = %(table)s
            RETURNING {_COLUMNS}
            """,
            {
                "table_id": table_id,
                "ts": cursor[0] if cursor else None,
                "id": cursor[1] if cursor else None,
                "org": organization_id,
                "table": table,
            },
        )
        watermark = cur.fetchone()
    if watermark is None:
        raise LookupError(f"no watermark for organization {organization_id}, table {table}")
    return watermark


def reset(conn: psycopg.Connection, organization_id: int, table: str) -> None:
    """Send the whole table again from the beginning (rows already in BigQuery become duplicates
    until the next dedup)."""
    conn.execute(
        "UPDATE bigquery_jobs SET table_id = 0, last_updated_at = %s, last_updated_id = 0, "
        "advanced_at = now() WHERE organization_id = %s AND \"table\" = %s",
        (BEGINNING, organization_id, table),
    )


#: Longest error text kept; the rest is cut.
_MAX_ERROR = 2000


def record_failure(conn: psycopg.Connection, organization_id: int, table: str, error: str) -> None:
    """Count one more consecutive failure of this (organization, table) and keep its error."""
    create(conn, organization_id, table)
    conn.execute(
        'UPDATE bigquery_jobs SET failures = failures + 1, last_error = %s, last_failed_at = now() '
        'WHERE organization_id = %s AND "table" = %s',
        (error[:_MAX_ERROR], organization_id, table),
    )


def record_success(conn: psycopg.Connection, organization_id: int, table: str) -> None:
    """Clear the failure count after a successful sync (a no-op write-free query when already 0)."""
    conn.execute(
        "UPDATE bigquery_jobs SET failures = 0, last_error = NULL "
        'WHERE organization_id = %s AND "table" = %s AND failures > 0',
        (organization_id, table),
    )


def loads_today(conn: psycopg.Connection, organization_id: int, table: str) -> int:
    """BigQuery load jobs into this tenant-table so far today (UTC): they count against the
    table's daily modifications (see ``warehouse.writes.LOADS_PER_TABLE_PER_DAY``)."""
    row = conn.execute(
        "SELECT loads FROM bigquery_jobs WHERE organization_id = %s AND \"table\" = %s "
        "AND loads_on = (now() AT TIME ZONE 'UTC')::date",
        (organization_id, table),
    ).fetchone()
    return row[0] if row else 0


def record_load(conn: psycopg.Connection, organization_id: int, table: str) -> None:
    """Count one load job into this tenant-table today (UTC), before it is started: a load that
    fails may still have counted at BigQuery."""
    conn.execute(
        "UPDATE bigquery_jobs SET loads = CASE WHEN loads_on = (now() AT TIME ZONE 'UTC')::date "
        "THEN loads + 1 ELSE 1 END, loads_on = (now() AT TIME ZONE 'UTC')::date "
        'WHERE organization_id = %s AND "table" = %s',
        (organization_id, table),
    )


def record_dedup(conn: psycopg.Connection, organization_id: int, table: str, started_at: datetime) -> None:
    """Remember when the last successful dedup pass of this tenant-table started."""
    create(conn, organization_id, table)
    conn.execute(
        'UPDATE bigquery_jobs SET deduped_at = %s WHERE organization_id = %s AND "table" = %s',
        (started_at, organization_id, table),
    )


def all_watermarks(conn: psycopg.Connection) -> list[Watermark]:
    with conn.cursor(row_factory=class_row(Watermark)) as cur:
        cur.execute(f'SELECT {_COLUMNS} FROM bigquery_jobs ORDER BY organization_id, "table"')
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
        if acquired:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
