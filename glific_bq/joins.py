"""Columns copied from other tables (a message's contact phone, a flow result's flow name, a
message's tags), joined on the worker instead of in the source database.

Glific's BigQuery rows copy values from the rows they refer to. Written as correlated
subqueries in the extract's SELECT, every row of a backlog ran about fifteen of them on the
server Glific's chatbots run on: 4.7 times the CPU of reading the rows plainly
(``bench/bench_datapath.py``, "server COPY our query (glific)"). Here the extract reads the key
columns only (``KEY_PREFIX``); per page, the worker reads the rows of the other tables
those keys name, one query per table, each distinct key once per snapshot, and joins them in
Arrow (``Joiner``).

The values are read in the extract's own snapshot: the extract exports it
(``pg_export_snapshot``), and the join connection imports it for each read. A page therefore
carries exactly the values the correlated subqueries would have given, whatever commits
between the extract and the join. Renames after the snapshot reach the rows by
``glific_bq.lookups``, as before.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from glific_bq import postgres

#: Extract columns holding a join's key (``KEY_PREFIX + <source column>``), dropped before sending.
KEY_PREFIX = "_glific_bq_key_"

#: Rows of a ``Rows.ONE`` fetch kept per snapshot (about 100 bytes each); past this the cache
#: starts again from the current page's keys, so memory does not grow with the backlog.
CACHE_ROWS = 200_000

#: Keys spanning at most this many times their number are read as one id range (an index range
#: scan that costs what it returns) rather than a list of keys (a probe per key).
DENSE_SPAN = 4


#: What ``pg_export_snapshot()`` returns (``00000003-0000001B-1``).
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


class Rows(str, Enum):
    """How many rows of the other table a key matches, and which give the value."""

    #: At most one (``match`` is ``x.id``): read once per snapshot and kept for the next pages.
    ONE = "one"
    #: The one with the lowest ``x.id`` (``ORDER BY x.id LIMIT 1`` per key).
    FIRST = "first"
    #: All of them: the value is an aggregate over them (``GROUP BY`` the key).
    GROUP = "group"


@dataclass(frozen=True)
class Fetch:
    """How rows of another table are read by key: ``source`` is the FROM clause with that table
    aliased ``x`` (joins of its own allowed), ``match`` the column of ``x`` equal to the key.

    ``tenant``: the aliases of ``source`` whose ``organization_id`` must be the synced
    organization's (every read is tenant-bound: Glific's foreign keys do not stop a row of one
    organization from naming another's). Empty only for global tables (``global.languages``)."""

    source: str
    match: str = "x.id"
    rows: Rows = Rows.ONE
    tenant: tuple[str, ...] = ("x",)


@dataclass(frozen=True)
class Join:
    """A column copied from another table: ``value`` (SQL over ``x``; an aggregate for
    ``Rows.GROUP``) of the rows ``fetch`` reads for the source row's ``key`` column, or
    ``default`` when none matches (or the key is NULL)."""

    fetch: Fetch
    value: str
    key: str
    default: object = None


def key_column(key: str) -> str:
    """The extract's column carrying a join's key."""
    return KEY_PREFIX + key


def keys_of(joins: Mapping[str, Join]) -> list[str]:
    """The source columns a shape's joins read, in first-use order (each selected once)."""
    return list(dict.fromkeys(join.key for join in joins.values()))


@dataclass(frozen=True)
class _Group:
    """The joins of one page that one query serves: one fetch, its values and their Arrow types."""

    fetch: Fetch
    values: tuple[str, ...]
    types: tuple[pa.DataType, ...]

    @functools.cache  # noqa: B019  (a few dozen groups in all, alive for the process anyway)
    def query(self, dense: bool) -> str:
        """The group's read, composed once per process (composing is most of its Python cost)."""
        values = sql.SQL("").join(sql.SQL(", {} AS {}").format(sql.SQL(v), sql.Identifier(f"v{i}"))
                                  for i, v in enumerate(self.values))
        match, source = sql.SQL(self.fetch.match), sql.SQL(self.fetch.source)
        where = (sql.SQL("{} BETWEEN %(low)s AND %(high)s").format(match) if dense
                 else sql.SQL("{} = ANY(%(keys)s::bigint[])").format(match))
        for alias in self.fetch.tenant:
            where += sql.SQL(" AND {}.organization_id = %(organization_id)s").format(sql.Identifier(alias))
        if self.fetch.rows is Rows.GROUP:
            query = sql.SQL("SELECT {} AS key{} FROM {} WHERE {} GROUP BY 1").format(match, values, source, where)
        elif self.fetch.rows is Rows.FIRST:
            query = sql.SQL("SELECT DISTINCT ON ({}) {} AS key{} FROM {} WHERE {} ORDER BY {}, x.id").format(
                match, match, values, source, where, match)
        else:
            query = sql.SQL("SELECT {} AS key{} FROM {} WHERE {}").format(match, values, source, where)
        return query.as_string()

    def table(self, rows: list[tuple]) -> pa.Table:
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(len(self.values) + 1)]
        return pa.table([pa.array(columns[0], pa.int64())]
                        + [pa.array(c, kind) for c, kind in zip(columns[1:], self.types, strict=True)],
                        names=["key"] + [f"v{i}" for i in range(len(self.values))])


class Joiner:
    """Fills a page's joined columns (``fill``) from a connection of its own to the source
    database, in the snapshot the extract exported. Used by one thread at a time (the sync's
    encode stage); ``close`` ends it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None
        self._snapshot: tuple[str, int] | None = None  # the cache's snapshot and organization
        self._cache: dict[_Group, pa.Table] = {}

    @property
    def connection(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = postgres.connect(self.url, "glific_bq_joins")
        return self._conn

    def fill(self, rows: pa.Table, joins: Mapping[str, Join], snapshot: str | None, organization_id: int) -> pa.Table:
        """``rows`` (of ``organization_id``) with each joined column (added as NULLs by
        ``layouts.rows.prepare``) replaced by its values, read in ``snapshot`` (the extract's
        ``pg_export_snapshot()``, whose transaction is still open) from that organization's rows
        only: a key naming another organization's row joins nothing (the column's default)."""
        if not joins or rows.num_rows == 0:
            return rows
        if snapshot is None:
            raise ValueError("joined columns need the extract's snapshot: extract with export_snapshot=True")
        if (snapshot, organization_id) != self._snapshot:
            self._cache.clear()
            self._snapshot = (snapshot, organization_id)
        groups: dict[_Group, list[tuple[str, Join]]] = {}
        for fetch in dict.fromkeys(j.fetch for j in joins.values()):
            members = [(c, j) for c, j in joins.items() if j.fetch == fetch]
            typed = dict((j.value, rows.schema.field(c).type) for c, j in members)
            groups[_Group(fetch, tuple(typed), tuple(typed.values()))] = members
        found = self._read(snapshot, organization_id, {group: _keys(rows, [j.key for _, j in members])
                                                       for group, members in groups.items()})
        for group, members in groups.items():
            matched, positions = found[group], {}
            for column, join in members:
                if join.key not in positions:  # each key column matched once (contact_phone, contact_name)
                    keys = pc.cast(rows.column(key_column(join.key)), pa.int64())
                    positions[join.key] = pc.index_in(keys, value_set=matched.column("key").combine_chunks())
                where = positions[join.key]
                values = matched.column(f"v{group.values.index(join.value)}").take(where)
                if join.default is not None:
                    values = pc.fill_null(values, pa.scalar(join.default, values.type))
                rows = rows.set_column(rows.schema.get_field_index(column), column, values)
        return rows

    def _read(self, snapshot: str, organization_id: int, wanted: dict[_Group, pa.Array]) -> dict[_Group, pa.Table]:
        """For each group, its rows matching the wanted keys (and maybe more): for ``Rows.ONE``
        those cached in this snapshot, and the rest read now, all groups in one transaction."""
        found: dict[_Group, list[pa.Table]] = {}
        reads: list[tuple[_Group, str, dict]] = []
        for group, keys in wanted.items():
            found[group] = []
            cached = self._cache.get(group)
            if cached is not None:
                found[group].append(cached.filter(pc.is_in(cached.column("key"), value_set=keys)))
                keys = keys.filter(pc.invert(pc.is_in(keys, value_set=cached.column("key").combine_chunks())))
            if len(keys) == 0:
                continue
            low, high = pc.min(keys).as_py(), pc.max(keys).as_py()
            dense = group.fetch.rows is not Rows.ONE and high - low + 1 <= DENSE_SPAN * len(keys)
            bounds = {"low": low, "high": high} if dense else {"keys": keys.to_pylist()}
            reads.append((group, group.query(dense), {**bounds, "organization_id": organization_id}))
        for (group, _, _), read in zip(reads, self._run(snapshot, reads) if reads else [], strict=True):
            found[group].append(read)
            if group.fetch.rows is Rows.ONE:
                cached = self._cache.get(group)
                grown = len(cached) + len(read) if cached is not None else len(read)
                self._cache[group] = pa.concat_tables([cached, read]) if cached is not None and grown <= CACHE_ROWS \
                    else pa.concat_tables(found[group])
        return {g: pa.concat_tables(t) if t else g.table([]) for g, t in found.items()}

    def _run(self, snapshot: str, reads: list[tuple[_Group, str, dict]]) -> list[pa.Table]:
        """The reads in one transaction that imports ``snapshot``, in one round trip."""
        if not _SNAPSHOT_ID.fullmatch(snapshot):  # spliced into the statement below
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        conn = self.connection
        try:
            with conn.pipeline():
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                cursors = [conn.execute(query, params) for _, query, params in reads]
                conn.execute("COMMIT")
            return [group.table(cur.fetchall()) for (group, _, _), cur in zip(reads, cursors, strict=True)]
        except BaseException:
            self.close()  # its transaction may be open or aborted; the next fill opens a new one
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self._snapshot = None
                self._cache.clear()


def _keys(rows: pa.Table, keys: Iterable[str]) -> pa.Array:
    """The distinct non-NULL values of these key columns, as int64."""
    arrays = [pc.cast(rows.column(key_column(k)), pa.int64()) for k in dict.fromkeys(keys)]
    combined = pa.chunked_array([chunk for a in arrays for chunk in a.chunks], type=pa.int64())
    return pc.unique(pc.drop_null(combined)) if combined.num_chunks else pa.array([], pa.int64())
