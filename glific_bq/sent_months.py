"""The months of ``inserted_at`` each tenant-table's sends touched, so that the in-place dedup
surveys only those months (glific#5255), never a bare time window.

A version's duplicates share its ``inserted_at`` (the source row's creation time, immutable), so
they all sit in that row's month: on a table partitioned by ``inserted_at`` (as glific_bq and
Glific create them) in one partition. A re-sent old row keeps its old ``inserted_at``: its
duplicate lands in an old month, which a window on the send time would miss. So the months are
taken from the rows themselves: the sync records, per (organization, table, destination), each
month (of the layout's ``inserted_at``, as BigQuery holds it: the organization's local DATETIME
in the Glific layout, month boundaries included) a page touches, with when (``sent_at``).

**Recorded before the write, not after its confirmation.** A month recorded for a page that then
fails to be written only makes the next dedup survey one month more; a month recorded after
BigQuery confirmed would be lost if the process died between the confirmation and the record,
and the duplicate in that month would never be examined. Over-approximation is sound;
under-approximation is not.

**When the months can be trusted.** Versions sent before this module existed were never
recorded. The dedup records ``recording_since`` (the start of its first pass that read the
months, ``start``) and trusts the months only for a lower bound at or after it; before that (or
without a record) it surveys the whole table as before. A sync process of older code still
running at the first pass (a tick lasts a minute) is the one gap, and the hour of
``dedup.SINCE_MARGIN`` covers it.

``glific_bq_sent_months``, one row per (organization, table, destination, month):

- ``month``: the first day of the month of ``inserted_at``; ``NO_MONTH`` for rows without one.
- ``sent_at``: the latest time (PostgreSQL's clock) a page with rows of that month was about to
  be sent. Only moves forward (``GREATEST``).
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from glific_bq.source import ensure_state_tables

TABLE = "glific_bq_sent_months"
SINCE_TABLE = "glific_bq_sent_months_since"
#: The ``month`` of rows whose ``inserted_at`` is NULL.
NO_MONTH = date(1, 1, 1)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    destination text NOT NULL,
    month date NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (organization_id, "table", destination, month)
);
CREATE TABLE IF NOT EXISTS {SINCE_TABLE} (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    destination text NOT NULL,
    recording_since timestamptz NOT NULL,
    PRIMARY KEY (organization_id, "table", destination)
)
"""


def ensure_tables(conn: psycopg.Connection) -> None:
    ensure_state_tables(conn, "sent_months", _SCHEMA)


def months_of(rows: pa.Table, column: str = "inserted_at") -> list[date]:
    """The months ``rows`` touch in ``column`` (``NO_MONTH`` for NULLs); none if it has no such
    time column (the dedup then cannot restrict by month, and does not)."""
    if rows.num_rows == 0 or column not in rows.column_names:
        return []
    values = rows.column(column)
    if not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        return []
    months = {NO_MONTH if v is None else date(v.year, v.month, 1) for v in pc.unique(values).to_pylist()}
    return sorted(months)


def record(conn: psycopg.Connection, organization_id: int, table: str, destination: str, rows: pa.Table,
           column: str = "inserted_at") -> None:
    """Record the months ``rows`` touch, before they are written (one statement; nothing for an
    empty page)."""
    months = months_of(rows, column)
    if not months:
        return
    ensure_tables(conn)
    conn.execute(
        f"""INSERT INTO {TABLE} (organization_id, "table", destination, month, sent_at)
            SELECT %s, %s, %s, m, now() FROM unnest(%s::date[]) AS m
            ON CONFLICT (organization_id, "table", destination, month)
            DO UPDATE SET sent_at = GREATEST({TABLE}.sent_at, EXCLUDED.sent_at)""",
        (organization_id, table, destination, months),
    )


def since(conn: psycopg.Connection, organization_id: int, table: str, destination: str,
          lower: datetime) -> list[date] | None:
    """The months sends of this tenant-table touched at or after ``lower``; None when recording
    did not cover ``lower`` (then every month may hold a candidate)."""
    ensure_tables(conn)
    row = conn.execute(
        f'SELECT recording_since FROM {SINCE_TABLE} WHERE organization_id = %s AND "table" = %s AND destination = %s',
        (organization_id, table, destination),
    ).fetchone()
    if row is None or row[0] > lower:
        return None
    return [r[0] for r in conn.execute(
        f'SELECT month FROM {TABLE} WHERE organization_id = %s AND "table" = %s AND destination = %s '
        "AND sent_at >= %s ORDER BY month",
        (organization_id, table, destination, lower),
    )]


def start(conn: psycopg.Connection, organization_id: int, table: str, destination: str, at: datetime) -> None:
    """Note that months are recorded from ``at`` on (the start of a dedup pass that read them);
    the first note stays."""
    ensure_tables(conn)
    conn.execute(
        f"""INSERT INTO {SINCE_TABLE} (organization_id, "table", destination, recording_since)
            VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (organization_id, table, destination, at),
    )
