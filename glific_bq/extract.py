"""The incremental query, built in exactly one place, and the pages it streams.

Two passes read a tenant's table, each one streamed query handed over in pages of bounded size,
so that a backlog of millions of rows never sits in memory and a bulk update giving thousands of
rows one ``updated_at`` is read page by page (glific#5468):

- the insert pass: rows with ``id > table_id``, in id order;
- the update pass: rows already sent (``id <= table_id``) whose ``(updated_at, id)`` lies beyond the
  compound cursor, in that order.

Every value that varies (organization, positions, limit, timezone) is bound (see ``bind``),
never spliced into the statement; the identifiers come from the registry and the catalog and
are quoted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from glific_bq import pipeline
from glific_bq.schema import Column

if TYPE_CHECKING:
    from glific_bq.catalog import TableSpec
    from glific_bq.layouts import Shape

# Arrow's default allocator (jemalloc) keeps the freed buffers of pages already written; the
# system allocator hands them back: a backfill's peak RSS 260 MB instead of 310, at the same
# speed (bench/bench_datapath.py, load-ready). An explicit ARROW_DEFAULT_MEMORY_POOL wins.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    pa.set_memory_pool(pa.system_memory_pool())


#: Columns the extract carries with each row for the sync's own use, never sent: the source
#: row's id and organization (the watermark and the tenant check; a layout's ``id`` column need
#: not be the source row's, e.g. Glific's ``flows`` rows are flow revisions) and the raw cursor
#: value (UTC, as stored).
ID_COLUMN = "_glific_bq_id"
ORGANIZATION_COLUMN = "_glific_bq_organization_id"
CURSOR_COLUMN = "_glific_bq_cursor"
#: Whether the row is exported (a layout's row filters: Glific leaves out simulator contacts and
#: draft flow revisions). Filtered rows are read and their positions passed like any other, so
#: that a page of rows all filtered out still moves its watermark (glific#4108). Read only when
#: the shape has a filter: without one every row is exported.
EXPORT_COLUMN = "_glific_bq_export"


class Pass(str, Enum):
    INSERT = "insert"
    UPDATE = "update"
    BY_ID = "by_id"  # given ids, to re-drive rows BigQuery refused
    REFRESH = "refresh"  # rows already sent whose looked-up values changed (see glific_bq.lookups)


@dataclass(frozen=True)
class Page:
    """One page of rows and the position of its last row."""

    rows: pa.Table
    last_id: int
    last_cursor: tuple[datetime, int] | None
    #: The pass's exported snapshot (``export_snapshot``), for ``glific_bq.joins``; else None.
    snapshot: str | None = None


def _setting(name: str, cast: str) -> sql.Composable:
    return sql.SQL("current_setting('glific_bq.{}')::{}").format(sql.SQL(name), sql.SQL(cast))


# The values of a query are bound to transaction-local settings by ``bind`` (``set_config`` of
# values quoted by psycopg, in one statement without parameters: one round trip, where ADBC's
# prepared statements take three) and read back by the query. No value is ever spliced into the
# query's text, and the query itself takes no parameters, so ADBC streams its result through COPY
# as it arrives instead of fetching it whole (as it does for a prepared statement with parameters).
_ORG = _setting("organization_id", "bigint")
_ID = _setting("id_bound", "bigint")
_IDS = _setting("ids", "text")
_LIMIT = _setting("limit", "bigint")
#: The organization's timezone, as layouts' expressions read it.
TIMEZONE = _setting("timezone", "text")
_CURSOR_TS = _setting("cursor_ts", "timestamp")
_CURSOR_ID = _setting("cursor_id", "bigint")
_HORIZON = _setting("horizon", "timestamp")
_AFTER = _setting("after_id", "bigint")
_SETTINGS = ("organization_id", "id_bound", "ids", "limit", "timezone", "cursor_ts", "cursor_id", "horizon", "after_id")


def bind(reader, export_snapshot: bool = False, **values: object) -> str | None:
    """Set the values the next queries of this transaction read (see ``build_query``; a None is
    not set: no query reads it); with ``export_snapshot``, also export the transaction's snapshot
    (``pg_export_snapshot``, for ``glific_bq.joins``) and return its id. Values this transaction
    already holds, and a snapshot it already exported, are not set again: a minute sync's insert
    pass, after an update pass that read nothing, costs no statement here."""
    unknown = set(values) - set(_SETTINGS)
    if unknown:
        raise ValueError(f"unknown query values: {sorted(unknown)}")
    bound = reader.bound
    wanted = {name: str(value) for name, value in values.items() if value is not None and bound.get(name) != str(value)}
    if wanted:
        settings = sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(f"glific_bq.{name}"), sql.Literal(value))
            for name, value in wanted.items())
        with reader.cursor() as cur:
            cur.run(sql.SQL("SELECT {}").format(settings).as_string())
        bound.update(wanted)
    if export_snapshot and reader.snapshot is None:
        with reader.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            (reader.snapshot,) = cur.fetchone()
    return reader.snapshot if export_snapshot else None


def build_query(shape: Shape, pass_: Pass, schema: str = "public") -> str:
    """``_build_query``, once per shape object and pass: a tick shares its shapes across its
    syncs (``Source.shapes``), and composing the SQL costs more than a minute sync's page
    (about 1.4 ms of CPU per sync, bench/bench_tick_scale.py)."""
    built = shape.__dict__.setdefault("_queries", {})  # a frozen dataclass: its own memo, beside its fields
    if (pass_, schema) not in built:
        built[(pass_, schema)] = _build_query(shape, pass_, schema)
    return built[(pass_, schema)]


def _build_query(shape: Shape, pass_: Pass, schema: str = "public") -> str:
    """The SELECT of one pass over ``shape``'s source table (aliased ``t``) for one organization
    and position.

    It reads its values with ``current_setting``, set by ``bind``: ``organization_id``,
    ``id_bound`` (``ids``, comma-separated, for ``BY_ID``), ``limit``, ``timezone``, and for the
    update pass ``cursor_ts``/``cursor_id`` (the cursor) and ``horizon``: rows changed at or
    after it are left for a later sync (see ``horizon``). ``REFRESH`` reads the rows already
    sent (``after_id < id <= id_bound``: ``after_id`` is where an earlier sync's refresh stopped)
    that refer to one of ``ids`` (``refresh_ids``: a JSON object of id lists by looked-up table),
    as ``shape.refresh`` says how, each row once.
    """
    cursor_expr = shape.cursor or sql.SQL("NULL::timestamp")
    filters = [f for f in (shape.where, shape.update_where if pass_ is Pass.UPDATE else None) if f is not None]
    exported = sql.SQL(" AND ").join(sql.SQL("({})").format(f) for f in filters)
    select = sql.SQL(", ").join(
        list(shape.select)
        + [
            sql.SQL("t.id AS {}").format(sql.Identifier(ID_COLUMN)),
            # A cross-organization row belongs to no tenant: the tenant check refuses it, always.
            sql.SQL("{} AS {}").format(sql.SQL("NULL::bigint" if shape.cross_organization else "t.organization_id"),
                                       sql.Identifier(ORGANIZATION_COLUMN)),
            sql.SQL("{} AS {}").format(cursor_expr, sql.Identifier(CURSOR_COLUMN)),
        ]
        + ([sql.SQL("COALESCE({}, false) AS {}").format(exported, sql.Identifier(EXPORT_COLUMN))] if filters else [])
    )
    table = sql.Identifier(schema, shape.source)
    # Every read is one organization's, but for the platform organization's cross-organization
    # tables (``glific_bq.platform``, which only that organization's sync may read).
    conditions = [] if shape.cross_organization else [sql.SQL("t.organization_id = {}").format(_ORG)]
    if pass_ is Pass.INSERT:
        conditions.append(sql.SQL("t.id > {}").format(_ID))
        order = sql.SQL("t.id")
    elif pass_ is Pass.BY_ID:
        conditions.append(sql.SQL("t.id = ANY(string_to_array({}, ',')::bigint[])").format(_IDS))
        order = sql.SQL("t.id")
    elif pass_ is Pass.REFRESH:
        matches = [
            _refers(key, sql.SQL("ARRAY(SELECT jsonb_array_elements_text(({}::jsonb) -> {})::bigint)").format(
                _IDS, sql.Literal(parent)))
            for parent, keys in shape.refresh.items() for key in keys
        ]
        conditions.append(sql.SQL("t.id > {} AND t.id <= {} AND ({})").format(
            _AFTER, _ID, sql.SQL(" OR ").join(matches)))
        order = sql.SQL("t.id")
    else:
        conditions.append(sql.SQL("t.id <= {} AND ({}, t.id) > ({}, {}) AND {} < {}").format(
            _ID, cursor_expr, _CURSOR_TS, _CURSOR_ID, cursor_expr, _HORIZON))
        order = sql.SQL("{}, t.id").format(cursor_expr)
    query = sql.SQL("SELECT {} FROM {} AS t WHERE {} ORDER BY {} LIMIT {}").format(
        select, table, sql.SQL(" AND ").join(conditions), order, _LIMIT)
    return query.as_string(None)


def build_backlog_query(shape: Shape, schema: str = "public") -> str:
    """How many rows the insert pass would read, counted up to the bound ``limit``: the insert
    query itself, counted (PostgreSQL drops the unused select list of a counted subquery)."""
    return f"SELECT count(*) FROM ({build_query(shape, Pass.INSERT, schema)}) AS backlog"


def backlog_at_least(reader, query: str, *, organization_id: int, timezone: str, id_bound: int, rows: int) -> bool:
    """Whether the insert pass above ``id_bound`` holds at least ``rows`` rows (a
    ``build_backlog_query``): it reads at most ``rows`` index entries, so a minute sync's check
    costs as little as its few new rows."""
    bind(reader, organization_id=organization_id, timezone=timezone, id_bound=id_bound, limit=rows)
    with reader.cursor() as cur:
        cur.execute(query)
        (count,) = cur.fetchone()
    return count >= rows


def _refers(key: str, wanted: sql.Composable) -> sql.Composable:
    """A row's reference to the wanted ids: a key column of ``t``, or an SQL condition (a
    layout's constant) where ``{ids}`` stands for them."""
    if "{ids}" not in key:
        return sql.SQL("t.{} = ANY({})").format(sql.Identifier(key), wanted)
    before, after = key.split("{ids}", 1)
    return sql.Composed([sql.SQL(before), wanted, sql.SQL(after)])


def cursor_expression(spec: TableSpec, columns: list[Column]) -> sql.Composable | None:
    """The update cursor as a UTC ``timestamp``, or None if the table has no usable cursor column."""
    for column in columns:
        if column.name == spec.cursor_column and not column.is_array:
            if column.type_name == "timestamp":
                return sql.SQL("t.{}").format(sql.Identifier(column.name))
            if column.type_name == "timestamptz":
                return sql.SQL("(t.{} AT TIME ZONE 'UTC')").format(sql.Identifier(column.name))
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
    refresh_ids: dict[str, list[int]] | None = None,
    after_id: int = 0,
    page_rows: int,
    max_rows: int | None = None,
    export_snapshot: bool = False,
) -> Iterator[Page]:
    """Stream one pass as pages of at most ``page_rows`` rows, until the pass is exhausted or
    ``max_rows`` have been read (reading fewer than ``max_rows`` means it is exhausted).

    ``reader`` is an ADBC PostgreSQL connection; run every pass of a round inside one
    REPEATABLE READ transaction so that they see one snapshot. One query per pass, streamed: the
    rows arrive in record batches of a few MB while the previous ones are being written, so
    memory stays bounded whatever the backlog. With ``export_snapshot`` each page carries the
    pass's snapshot, for the joins of its shape (``glific_bq.joins``).
    """
    if pass_ is Pass.UPDATE and (cursor is None or horizon is None):
        raise ValueError("the update pass needs a cursor and a horizon")
    snapshot = bind(reader, export_snapshot, organization_id=organization_id, timezone=timezone, id_bound=id_bound,
         limit=max_rows if max_rows is not None else 2**62,
         cursor_ts=cursor[0] if cursor else None, cursor_id=cursor[1] if cursor else None, horizon=horizon,
         ids=json.dumps(refresh_ids) if refresh_ids is not None else None, after_id=after_id)
    with reader.cursor() as cur:
        cur.execute(query)
        gathered: list[pa.RecordBatch] = []  # record batches (or parts) of the next page
        rows = 0
        for batch in _read_ahead(cur.fetch_record_batch()):
            start = 0
            while start < batch.num_rows:
                part = batch.slice(start, page_rows - rows)
                gathered.append(part)
                rows += part.num_rows
                start += part.num_rows
                if rows == page_rows:
                    yield _page(gathered, snapshot)
                    gathered, rows = [], 0
        if gathered:
            yield _page(gathered, snapshot)


def _page(batches: list[pa.RecordBatch], snapshot: str | None) -> Page:
    rows = pa.Table.from_batches(batches)
    last_ts = batches[-1].column(CURSOR_COLUMN)[-1].as_py()
    last_id = batches[-1].column(ID_COLUMN)[-1].as_py()
    return Page(rows, last_id, (last_ts, last_id) if last_ts is not None else None, snapshot)


def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read up to ``depth`` record batches ahead in a thread, so that PostgreSQL keeps streaming
    while the previous page is encoded and written (about 20 % faster end to end in
    the former bench/bench_extract.py, for at most ``depth`` batches more in memory)."""
    return pipeline.ahead(batches, depth, name="glific_bq-read-ahead", inline_first=True)


def rows_by_id(reader, query: str, organization_id: int, timezone: str, ids: list[int],
               export_snapshot: bool = False) -> tuple[pa.Table, str | None]:
    """The current rows with these ids (a ``Pass.BY_ID`` query; ids gone from the source are
    absent), and the exported snapshot with ``export_snapshot`` (keep the transaction open
    until the rows are joined)."""
    snapshot = bind(reader, export_snapshot, organization_id=organization_id, timezone=timezone, limit=len(ids),
                    ids=",".join(str(int(i)) for i in ids))
    with reader.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table(), snapshot


def max_cursor(rows: pa.Table, below: datetime) -> tuple[datetime, int] | None:
    """The greatest (cursor, id) among rows whose cursor is below ``below`` (NULLs ignored)."""
    ts = rows.column(CURSOR_COLUMN)
    rows = rows.filter(pc.less(ts, pa.scalar(below, ts.type)))
    ts = rows.column(CURSOR_COLUMN)
    top = pc.max(ts).as_py()
    if top is None:
        return None
    ids = rows.column(ID_COLUMN).filter(pc.equal(ts, pa.scalar(top, ts.type)))
    return top, pc.max(ids).as_py()
