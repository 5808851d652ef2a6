"""The incremental query, built in exactly one place, and the pages it streams.

Two passes read a tenant's table, both as keyset pages of bounded size, so that a backlog of
millions of rows never sits in memory and a bulk update giving thousands of rows one
``updated_at`` is read page by page (glific#5468):

- the insert pass: rows with ``id > table_id``, in id order;
- the update pass: rows already sent (``id <= table_id``) whose ``(updated_at, id)`` lies beyond the
  compound cursor, in that order.

Every value that varies (organization, positions, page size, timezone) is a bound parameter; the
identifiers come from the registry and the catalog and are quoted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from glific_bq.registry import TableSpec
from glific_bq.schema import Column

#: Default margin behind the database clock that the update cursor never passes (see ``horizon``).
HORIZON_SECONDS = 5.0

#: The raw cursor value (UTC, as stored) carried with each row for the watermark; never sent.
CURSOR_COLUMN = "_glific_bq_cursor"


class Pass(str, Enum):
    INSERT = "insert"
    UPDATE = "update"
    BY_ID = "by_id"  # given ids, to re-drive rows BigQuery refused


@dataclass(frozen=True)
class Page:
    """One page of rows and the position of its last row."""

    rows: pa.Table
    last_id: int
    last_cursor: tuple[datetime, int] | None


# Positional parameters, the same for every query ADBC prepares.
_ORG, _ID, _LIMIT, _TZ, _CURSOR_TS, _CURSOR_ID, _HORIZON = (sql.SQL(f"${n}") for n in range(1, 8))


def build_query(spec: TableSpec, columns: list[Column], pass_: Pass, schema: str = "public") -> str:
    """The SELECT of one pass over ``spec``'s table for one organization and position.

    Parameters: $1 organization id, $2 id bound (comma-separated ids for ``BY_ID``), $3 page size,
    $4 timezone, and for the update
    pass $5/$6 the cursor (updated_at, id) and $7 the horizon: rows changed at or after it are
    left for a later sync (see ``horizon``).
    """
    cursor_expr = cursor_expression(spec, columns) or sql.SQL("NULL::timestamp")
    select = sql.SQL(", ").join(
        [c.select_expression(sql.SQL("{}::text").format(_TZ)) for c in columns]
        + [sql.SQL("{} AS {}").format(cursor_expr, sql.Identifier(CURSOR_COLUMN))]
    )
    table = sql.Identifier(schema, spec.name)
    if pass_ is Pass.INSERT:
        where = sql.SQL("organization_id = {} AND id > {}").format(_ORG, _ID)
        order = sql.SQL("id")
    elif pass_ is Pass.BY_ID:
        where = sql.SQL("organization_id = {} AND id = ANY(string_to_array({}::text, ',')::bigint[])").format(_ORG, _ID)
        order = sql.SQL("id")
    else:
        where = sql.SQL(
            "organization_id = {} AND id <= {} AND ({}, id) > ({}::timestamp, {}::bigint) AND {} < {}::timestamp"
        ).format(_ORG, _ID, cursor_expr, _CURSOR_TS, _CURSOR_ID, cursor_expr, _HORIZON)
        order = sql.SQL("{}, id").format(cursor_expr)
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}::bigint").format(
        select, table, where, order, _LIMIT
    )
    return query.as_string(None)


def cursor_expression(spec: TableSpec, columns: list[Column]) -> sql.Composable | None:
    """The update cursor as a UTC ``timestamp``, or None if the table has no usable cursor column."""
    for column in columns:
        if column.name == spec.cursor_column and not column.is_array:
            if column.type_name == "timestamp":
                return sql.Identifier(column.name)
            if column.type_name == "timestamptz":
                return sql.SQL("({} AT TIME ZONE 'UTC')").format(sql.Identifier(column.name))
    return None


def pages(
    reader,
    query: str,
    pass_: Pass,
    *,
    organization_id: int,
    timezone: str,
    id_bound: int,
    cursor: tuple[datetime, int] | None = None,
    horizon: datetime | None = None,
    page_rows: int,
    max_rows: int | None = None,
) -> Iterator[Page]:
    """Stream the pages of one pass, each a separate bounded query, until the pass is exhausted
    or ``max_rows`` have been read (reading fewer than ``max_rows`` means it is exhausted).

    ``reader`` is an ADBC PostgreSQL connection; run all pages inside one REPEATABLE READ
    transaction so that they see one snapshot. ADBC fetches a prepared statement's result whole,
    so the page size is what bounds memory.
    """
    read = 0
    while max_rows is None or read < max_rows:
        limit = page_rows if max_rows is None else min(page_rows, max_rows - read)
        params: tuple = (organization_id, id_bound, limit, timezone)
        if pass_ is Pass.UPDATE:
            assert cursor is not None and horizon is not None
            params += (*cursor, horizon)
        with reader.cursor() as cur:
            cur.execute(query, parameters=params)
            rows = cur.fetch_arrow_table()
        if rows.num_rows == 0:
            return
        last_id = rows.column("id")[-1].as_py()
        last_ts = rows.column(CURSOR_COLUMN)[-1].as_py()
        if pass_ is Pass.INSERT:
            id_bound = last_id
        else:
            cursor = (last_ts, last_id)
        read += rows.num_rows
        yield Page(rows, last_id, (last_ts, last_id) if last_ts is not None else None)
        if rows.num_rows < limit:
            return


_HORIZON_QUERY = """
SELECT least(
    clock_timestamp(),
    (SELECT min(xact_start) FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid())
) AT TIME ZONE 'UTC' - make_interval(secs => $1::float8)
"""


def rows_by_id(reader, query: str, organization_id: int, timezone: str, ids: list[int]) -> pa.Table:
    """The current rows with these ids (a ``Pass.BY_ID`` query); ids gone from the source are absent."""
    with reader.cursor() as cur:
        cur.execute(query, parameters=(organization_id, ",".join(str(int(i)) for i in ids), len(ids), timezone))
        return cur.fetch_arrow_table()


def horizon(reader, margin_seconds: float) -> datetime:
    """How far the update cursor may go in this snapshot: the database clock, or the start of
    the oldest transaction still writing if that is earlier, minus a margin (UTC).

    Read as the first statement of the snapshot. Rows become visible when their transaction
    commits, but carry the ``updated_at`` (and id) of when they were written: a change stamped in
    the current second (Glific's ``timestamp(0)``), by a writer whose clock runs a little ahead,
    or by a transaction still open could otherwise get a key below a cursor that has already
    moved on, and be skipped for good. Such changes wait for a later sync instead. A
    transaction left open for hours holds the cursor back (inserts still flow; their rows are
    sent again once it moves, and dedup keeps one), and rows stamped in the future wait for
    their time without dragging the cursor past rows written later.

    Seeing other sessions' transactions needs the ``pg_read_all_stats`` role (or superuser);
    without it only the clock and the margin protect.
    """
    with reader.cursor() as cur:
        cur.execute(_HORIZON_QUERY, parameters=(float(margin_seconds),))
        (value,) = cur.fetchone()
    return value


def max_cursor(rows: pa.Table, below: datetime) -> tuple[datetime, int] | None:
    """The greatest (cursor, id) among rows whose cursor is below ``below`` (NULLs ignored)."""
    ts = rows.column(CURSOR_COLUMN)
    rows = rows.filter(pc.less(ts, pa.scalar(below, ts.type)))
    ts = rows.column(CURSOR_COLUMN)
    top = pc.max(ts).as_py()
    if top is None:
        return None
    ids = rows.column("id").filter(pc.equal(ts, pa.scalar(top, ts.type)))
    return top, pc.max(ids).as_py()
