"""Repartitioning a table Glific created unpartitioned, while the minute sync goes on writing to it.

Glific partitions a table (monthly by ``inserted_at``, clustered on its own keys) only when it
creates it, so the datasets of older organizations hold unpartitioned tables: every dashboard
query reads the whole table. BigQuery cannot change a table's partitioning in place, and a
``CREATE OR REPLACE`` with another partitioning is refused. This module gives one such table the
partitioning and clustering Glific gives new tables today (``warehouse.tables.layout_for``), with
every row kept, in three steps, each recorded in ``glific_bq_repartitions`` so that a run that dies
at any point is resumed by the next one:

1. **copy** (no lock: the sync goes on writing to ``<table>``): create ``<table>__repartitioned``
   with the old table's schema and the new partitioning, and ``INSERT … SELECT`` every row into
   it: one full read of the old table, the one cost that grows with the table. A run that dies
   here copies again from scratch (the copy is one statement: all of it or none).
2. **catch up** (under the tenant-table's sync lock, ``watermarks.exclusive``: the minute sync of
   this one tenant-table skips, every other tenant and table goes on): the rows the sync appended
   since the copy are the rows of the old table whose ``bq_uuid`` the copy lacks (every row
   glific_bq or Glific sends carries a fresh ``bq_uuid``; rows without one are history from before
   the copy began, copied with it). They are inserted, rows another pass deleted from the old table
   meanwhile (dedup, deletes) are deleted from the copy, and then the two tables are compared: per
   ``bq_uuid`` (NULL included) the same number of rows, and the same columns. Anything else (a
   dedup pass gave keys to unkeyed rows, a column was added) and the copy is made again, still under
   the lock, where nothing writes. The comparison reads only ``bq_uuid``; the catch-up insert, when
   rows did arrive, reads the old table whole once more.
3. **swap** (same lock hold): rename ``<table>`` to ``<table>__unpartitioned_<yyyymmdd>`` (kept:
   nothing drops it but the operator) and ``<table>__repartitioned`` to ``<table>``. Both renames
   are metadata only. Between them ``<table>`` does not exist for an instant, and no sync can write
   (the lock); dashboards querying at that instant get "not found" and succeed on a retry. A run
   that dies between the renames releases the lock: a sync may then find ``<table>`` missing and
   create it (partitioned, as it creates tables) with the rows it sends; the next run moves those
   rows into the copy before the second rename.

The sync appends by table name, through a new stream per page, so after the swap its next page
lands in the new table; its caches of set-up tables (``warehouse.known_tables`` in this process,
``glific_bq.applied_schemas`` across processes) are cleared for the table, so the next sync checks
the table's metadata once instead of trusting what it knew of the old one.

A table that is already partitioned (by Glific, by glific_bq, by an earlier run) is reported and
left alone; so is a table Glific does not partition (its ``TableSpec`` is not ``partitioned``).
Only the organization's own dataset (``warehouse.dataset_ref``) is ever read or written, and every
name spliced into SQL passes ``glific_bq.identifiers`` first.

On real BigQuery a table that had rows streamed into it recently may refuse to be renamed until
BigQuery says streaming is no longer in use: under the lock (nothing streams), the swap waits for
the table's streaming buffer to be reported empty, up to ``RepartitionOptions.streaming_wait_seconds``;
a rename still refused fails the run with the old table in place, and the next run retries.
(The emulator has no streaming buffer: that wait is not exercised by the tests.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone

import psycopg
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from psycopg.rows import dict_row

from glific_bq import applied_schemas, identifiers, redact, registry, watermarks
from glific_bq.registry import TableSpec
from glific_bq.schema import BQ_UUID
from glific_bq.source import ensure_state_tables
from glific_bq.warehouse import Warehouse, WarehouseConfig, known_tables, queries
from glific_bq.warehouse.tables import layout_for

log = logging.getLogger(__name__)

#: Where each repartition stands, in the source database beside ``glific_bq_watermarks``.
TABLE = "glific_bq_repartitions"

#: Suffix of the copy being built; the old table's is ``__unpartitioned_<yyyymmdd>``.
STAGING_SUFFIX = "__repartitioned"
KEPT_SUFFIX = "__unpartitioned_"

#: Points at which ``on_step`` is called, in order, so that tests can run syncs or crash there.
#: ``planned``: recorded, nothing copied; ``copied``: the copy holds every row of its snapshot (no
#: lock held); ``caught_up``: the copy holds every row of the old table (lock held);
#: ``old_renamed``: the old table is kept under its new name (lock held); ``swapped``: the copy
#: is ``<table>`` (lock held); ``done``: recorded, lock released.
STEPS = ("planned", "copied", "caught_up", "old_renamed", "swapped", "done")

#: Seconds each BigQuery statement of a repartition may take (a full copy of a large table takes
#: minutes, beyond the minute sync's deadline).
DEADLINE_SECONDS = 3600.0

# step: copying (recorded before the copy) → copied (the copy finished) → done (swapped).
# kept_as is chosen once, when the repartition starts, so that a run resumed on a later day keeps
# the old table under the same name.
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    dataset text NOT NULL,
    step text NOT NULL CHECK (step IN ('copying', 'copied', 'done')),
    kept_as text NOT NULL,
    rows_copied bigint,
    rows_caught_up bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (organization_id, "table", dataset)
)
"""


@dataclass(frozen=True)
class RepartitionOptions:
    """Knobs of one repartition.

    Attributes:
        lock_attempts, lock_wait_seconds: how often, and how far apart, the swap tries to take the
            tenant-table's sync lock while a sync holds it (a sync of one table takes seconds).
            All refused: the run reports ``busy`` and the next one resumes at the swap.
        streaming_wait_seconds: how long the swap, holding the lock, waits for BigQuery to report
            the old table's streaming buffer empty before renaming it (see the module docstring).
        sleep: how to wait (injectable).
    """

    lock_attempts: int = 30
    lock_wait_seconds: float = 2.0
    streaming_wait_seconds: float = 300.0
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Repartition:
    """What one repartition of one tenant-table did."""

    organization_id: int
    table: str
    status: str  # repartitioned | already_partitioned | not_partitioned_by_glific | missing | busy | failed
    message: str = ""
    kept_as: str | None = None
    rows_copied: int | None = None
    rows_caught_up: int = 0
    copies: int = 0  # full copies made by this run (each reads the old table whole)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, object]:
        data: dict[str, object] = {"organization_id": self.organization_id, "table": self.table,
                                   "status": self.status, "rows_caught_up": self.rows_caught_up,
                                   "full_copies": self.copies, "seconds": round(self.seconds, 3)}
        for key in ("message", "kept_as", "rows_copied"):
            if getattr(self, key) not in (None, ""):
                data[key] = getattr(self, key)
        return data


def warehouse_config(config: WarehouseConfig) -> WarehouseConfig:
    """``config`` with a deadline long enough for a full copy (``DEADLINE_SECONDS``)."""
    return replace(config, deadline_seconds=max(config.deadline_seconds, DEADLINE_SECONDS))


def tables_to_repartition(layout, table: str | None, all_tables: bool) -> list[TableSpec]:
    """The tables of ``layout`` (a ``glific_bq.layouts.Layout``) named by ``table`` or
    ``all_tables`` (exactly one of them); with ``all_tables``, those Glific partitions (the others
    would only be reported as left alone)."""
    if (table is None) == (not all_tables):
        raise ValueError("name one table, or all of them (not both)")
    tables = registry.tables_for(layout)
    if table is not None:
        return [registry.table(table, tables)]
    return [spec for spec in tables if spec.partitioned]


def repartition_tenant(control: psycopg.Connection, warehouse: Warehouse, specs: Sequence[TableSpec],
                       options: RepartitionOptions = RepartitionOptions(), **kwargs) -> list[Repartition]:
    """``repartition_table`` for each of ``specs`` of the warehouse's organization; a table that
    fails comes back ``failed`` with its error (secrets masked) and the others go on."""
    results = []
    for spec in specs:
        try:
            results.append(repartition_table(control, warehouse, spec, options, **kwargs))
        except Exception as error:  # this table only: its progress is recorded, a re-run resumes it
            message = redact.describe(error)
            log.error("organization %s, %s: repartition failed: %s", warehouse.organization.id, spec.name, message)
            results.append(Repartition(warehouse.organization.id, spec.name, "failed", message))
    return results


def repartition_table(
    control: psycopg.Connection,
    warehouse: Warehouse,
    spec: TableSpec,
    options: RepartitionOptions = RepartitionOptions(),
    *,
    on_step: Callable[[str], None] = lambda step: None,
    today: date | None = None,
) -> Repartition:
    """Give the organization's ``spec`` table Glific's partitioning and clustering, keeping every
    row, or resume the repartition an earlier run left unfinished (see the module docstring).

    ``control`` is a connection of this run's own: the sync lock is a session lock, which a sync on
    the same session would take again. ``today`` (UTC by default) names the kept old table.
    Raises on BigQuery or database errors, with the progress so far recorded.
    """
    started = time.monotonic()
    with _one_run(control, warehouse.organization.id, spec.name) as alone:
        if not alone:
            return Repartition(warehouse.organization.id, spec.name, "busy",
                               f"another run is repartitioning {spec.name}: nothing done")
        result = _repartition(control, warehouse, spec, options, on_step, today)
    result.seconds = time.monotonic() - started
    return result


def _repartition(control, warehouse, spec, options, on_step, today) -> Repartition:
    _ensure(control)
    names = _Names.of(warehouse, spec.name)
    organization_id = warehouse.organization.id
    result = Repartition(organization_id, spec.name, "repartitioned")
    record = _record(control, organization_id, spec.name, warehouse.dataset_ref)
    if not spec.partitioned:
        result.status, result.message = "not_partitioned_by_glific", f"Glific does not partition {spec.name}: left alone"
        return result
    if record is None or record["step"] == "copying":
        old = _table(warehouse, names.table)
        if old is None:
            result.status, result.message = "missing", f"{names.table} does not exist"
            return result
        if old.time_partitioning or old.range_partitioning:
            result.status = "already_partitioned"
            result.message = f"{names.table} is already partitioned ({_describe_layout(old)}): left alone"
            if record is not None:  # planned while it was unpartitioned, partitioned since by someone else
                _forget_record(control, organization_id, spec.name, warehouse.dataset_ref)
            return result
        kept_as = record["kept_as"] if record else f"{spec.name}{KEPT_SUFFIX}{(today or _utc_today()):%Y%m%d}"
        names = replace(names, kept=identifiers.checked_table(kept_as))
        _start(control, organization_id, spec.name, warehouse.dataset_ref, kept_as)
        on_step("planned")
        result.rows_copied = _copy(warehouse, spec, old, names)
        result.copies += 1
        _advance(control, organization_id, spec.name, warehouse.dataset_ref, "copied", rows_copied=result.rows_copied)
        on_step("copied")
    elif record["step"] == "done":
        result.status, result.kept_as = "already_partitioned", record["kept_as"]
        result.message = f"{names.table} was repartitioned on {record['finished_at']:%Y-%m-%d}; the old table is kept as {record['kept_as']}"
        return result
    else:
        names = replace(names, kept=identifiers.checked_table(record["kept_as"]))
        result.rows_copied = record["rows_copied"]
    result.kept_as = names.kept
    with _locked(control, organization_id, spec.name, options) as acquired:
        if not acquired:
            result.status = "busy"
            result.message = f"a sync held {spec.name}'s lock throughout: copied, not swapped; run again to finish"
            return result
        _swap(warehouse, spec, names, result, options, on_step)
        _forget_caches(control, names.id(names.table))
        _advance(control, organization_id, spec.name, warehouse.dataset_ref, "done", rows_caught_up=result.rows_caught_up)
    on_step("done")
    log.info("organization %s: %s repartitioned (%s rows copied, %s caught up); the old table is kept as %s",
             organization_id, spec.name, result.rows_copied, result.rows_caught_up, names.kept)
    return result


@dataclass(frozen=True)
class _Names:
    """The three tables of one repartition, in the organization's dataset, checked for SQL."""

    dataset_ref: str
    table: str
    staging: str
    kept: str = ""

    @classmethod
    def of(cls, warehouse: Warehouse, table: str) -> _Names:
        return cls(identifiers.checked_dataset_ref(warehouse.dataset_ref), identifiers.checked_table(table),
                   identifiers.checked_table(table + STAGING_SUFFIX))

    def id(self, name: str) -> str:
        """``project.dataset.name``, as the client takes it."""
        return f"{self.dataset_ref}.{name}"

    def sql(self, name: str) -> str:
        """``name`` quoted for SQL, with its project and dataset."""
        return f"`{self.dataset_ref}.{name}`"


def _swap(warehouse: Warehouse, spec: TableSpec, names: _Names, result: Repartition, options: RepartitionOptions,
          on_step: Callable[[str], None]) -> None:
    """Steps 2 and 3, under the lock, from wherever BigQuery stands (each step finds out whether
    an earlier run already did it)."""
    old, staging, kept = (_table(warehouse, name) for name in (names.table, names.staging, names.kept))
    if kept is None:  # the old table is still <table>
        if old is None:
            raise RuntimeError(f"{names.table} disappeared during its repartition (neither it nor {names.kept} exists); "
                               f"the copy {names.staging} is left as it is")
        if staging is None:  # the copy was dropped by hand: made again, here where nothing writes
            result.rows_copied = _copy(warehouse, spec, old, names)
            result.copies += 1
        result.rows_caught_up += _catch_up(warehouse, spec, old, names, result)
        on_step("caught_up")
        _wait_for_streaming(warehouse, names, options)
        queries.run(warehouse, f"ALTER TABLE {names.sql(names.table)} RENAME TO `{names.kept}`")
        on_step("old_renamed")
        old = None
        staging = staging or _table(warehouse, names.staging)
    if staging is not None:
        if old is not None:  # a sync created <table> after a run died between the renames
            result.rows_caught_up += _move_rows(warehouse, old, names)
        queries.run(warehouse, f"ALTER TABLE {names.sql(names.staging)} RENAME TO `{names.table}`")
        on_step("swapped")
    elif old is None:
        raise RuntimeError(f"neither {names.table} nor its copy {names.staging} exists; the old table is {names.kept}")


def _copy(warehouse: Warehouse, spec: TableSpec, old: bigquery.Table, names: _Names) -> int:
    """(Re)create the copy with the old table's schema, description and labels and the new
    partitioning and clustering, and fill it with every row of the old table; how many."""
    client = warehouse.client
    client.delete_table(names.id(names.staging), not_found_ok=True, **warehouse.calls.calls)
    copy = bigquery.Table(names.id(names.staging), schema=old.schema)
    copy.time_partitioning, copy.clustering_fields = layout_for(spec, old.schema)
    copy.description, copy.labels = old.description, dict(old.labels or {})
    client.create_table(copy, **warehouse.calls.calls)
    columns = _columns(old)
    return queries.dml(warehouse, f"INSERT INTO {names.sql(names.staging)} ({columns}) "
                                  f"SELECT {columns} FROM {names.sql(names.table)}")


# Per bq_uuid, how many rows each table holds; the NULL keys (rows without one: history from
# before glific_bq) form one group on each side, never joined (a FULL JOIN wants an equality), and
# are compared by their counts. Reads the bq_uuid column of each table once.
_TALLY = """
WITH old AS (SELECT {key} AS k, COUNT(*) AS n FROM {old} GROUP BY k),
     new AS (SELECT {key} AS k, COUNT(*) AS n FROM {new} GROUP BY k)
SELECT COALESCE(SUM(IF(old.k IS NOT NULL AND new.n IS NULL, old.n, 0)), 0) AS missing,
       COALESCE(SUM(IF(new.k IS NOT NULL AND old.n IS NULL, new.n, 0)), 0) AS gone,
       COUNTIF(old.n != new.n)
         + IF(COALESCE(SUM(IF(old.k IS NULL, old.n, 0)), 0) != COALESCE(SUM(IF(new.k IS NULL, new.n, 0)), 0), 1, 0)
         AS differing
FROM old FULL OUTER JOIN new ON old.k = new.k
"""


def _tally(warehouse: Warehouse, names: _Names) -> dict[str, int]:
    """How the copy differs from the old table, in rows: ``missing`` from the copy, ``gone`` from
    the old table; ``differing``: keys both hold in different numbers (rows without a key
    count as one key)."""
    statement = _TALLY.format(key=f"`{BQ_UUID}`", old=names.sql(names.table), new=names.sql(names.staging))
    (row,) = queries.rows(warehouse, statement)
    return {key: int(value) for key, value in row.items()}


def _catch_up(warehouse: Warehouse, spec: TableSpec, old: bigquery.Table, names: _Names, result: Repartition) -> int:
    """Make the copy hold exactly the old table's rows (under the lock: nothing writes to either);
    the rows inserted. See step 2 of the module docstring."""
    staging = _table(warehouse, names.staging)
    if BQ_UUID not in {f.name for f in old.schema} or _columns(staging) != _columns(old):
        # Without bq_uuid, appended rows cannot be told apart; a column added since the copy
        # must be in it: copy again, here, where nothing writes.
        result.rows_copied, result.copies = _copy(warehouse, spec, old, names), result.copies + 1
        return 0
    tally, inserted = _tally(warehouse, names), 0
    if tally["missing"]:
        columns = _columns(old)
        inserted = queries.dml(
            warehouse,
            f"INSERT INTO {names.sql(names.staging)} ({columns}) SELECT {columns} FROM {names.sql(names.table)} "
            f"WHERE `{BQ_UUID}` IS NOT NULL AND `{BQ_UUID}` NOT IN "
            f"(SELECT `{BQ_UUID}` FROM {names.sql(names.staging)} WHERE `{BQ_UUID}` IS NOT NULL)")
    if tally["gone"]:
        queries.dml(warehouse,
                    f"DELETE FROM {names.sql(names.staging)} WHERE `{BQ_UUID}` IS NOT NULL AND `{BQ_UUID}` NOT IN "
                    f"(SELECT `{BQ_UUID}` FROM {names.sql(names.table)} WHERE `{BQ_UUID}` IS NOT NULL)")
    if tally["missing"] or tally["gone"]:
        tally = _tally(warehouse, names)
    if any(tally.values()):
        result.warnings.append(f"the old table changed in ways a catch-up cannot follow ({tally}): copied again")
        result.rows_copied, result.copies = _copy(warehouse, spec, old, names), result.copies + 1
        if any(_tally(warehouse, names).values()):
            raise RuntimeError(f"{names.table} and its copy still differ after a copy under the lock: "
                               "something other than the sync writes to it; nothing swapped")
        return 0
    return inserted


def _move_rows(warehouse: Warehouse, stray: bigquery.Table, names: _Names) -> int:
    """Move into the copy the rows of a ``<table>`` a sync created while no table had that name,
    then drop it; how many. The sync stamps every row with a ``bq_uuid``, so a move repeated after
    a run died between its insert and its drop inserts nothing twice; a row without one was not
    sent by the sync, and the table is left for the operator."""
    if queries.rows(warehouse, f"SELECT COUNTIF(`{BQ_UUID}` IS NULL) AS n FROM {names.sql(names.table)}")[0]["n"]:
        raise RuntimeError(f"{names.table} was created during its repartition by something other than the sync "
                           f"(rows without {BQ_UUID}): left as it is, beside the copy {names.staging} and the old "
                           f"table {names.kept}")
    columns = _columns(stray)
    moved = queries.dml(
        warehouse, f"INSERT INTO {names.sql(names.staging)} ({columns}) SELECT {columns} FROM {names.sql(names.table)} "
                   f"WHERE `{BQ_UUID}` NOT IN (SELECT `{BQ_UUID}` FROM {names.sql(names.staging)} "
                   f"WHERE `{BQ_UUID}` IS NOT NULL)")
    warehouse.client.delete_table(names.id(names.table), **warehouse.calls.calls)
    return moved


def _wait_for_streaming(warehouse: Warehouse, names: _Names, options: RepartitionOptions) -> None:
    """Wait, up to ``options.streaming_wait_seconds``, until BigQuery reports no streaming buffer
    on the old table (a rename is refused while streaming is in use)."""
    deadline = time.monotonic() + options.streaming_wait_seconds
    while (table := _table(warehouse, names.table)) is not None and table.streaming_buffer is not None:
        if time.monotonic() >= deadline:
            log.warning("%s still reports a streaming buffer after %ss: renaming it anyway", names.table,
                        options.streaming_wait_seconds)
            return
        options.sleep(min(10.0, options.streaming_wait_seconds))


@contextlib.contextmanager
def _locked(control: psycopg.Connection, organization_id: int, table: str, options: RepartitionOptions) -> Iterator[bool]:
    """Hold the tenant-table's sync lock (``watermarks.exclusive``), trying ``options.lock_attempts``
    times; yields False if a sync held it every time."""
    for attempt in range(options.lock_attempts):
        with watermarks.exclusive(control, organization_id, table) as acquired:
            if acquired:
                yield True
                return
        if attempt + 1 < options.lock_attempts:
            options.sleep(options.lock_wait_seconds)
    yield False


@contextlib.contextmanager
def _one_run(control: psycopg.Connection, organization_id: int, table: str) -> Iterator[bool]:
    """Hold the repartition's own lock of one tenant-table (two runs launched at once would drop
    each other's copy); yields False, without waiting, if another run holds it. A session lock:
    it goes with a run that dies."""
    key = f"glific_bq:repartition:{organization_id}:{table}"
    acquired = control.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired and not (control.closed or control.broken):
            control.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _forget_caches(control: psycopg.Connection, table_id: str) -> None:
    """The table under this name is a new one: no process may trust what it knew of the old one."""
    known_tables.forget(table_id)
    applied_schemas.forget(control, table_id)


def _table(warehouse: Warehouse, name: str) -> bigquery.Table | None:
    try:
        return warehouse.client.get_table(f"{warehouse.dataset_ref}.{name}", **warehouse.calls.calls)
    except NotFound:
        return None


def _columns(table: bigquery.Table) -> str:
    """The table's columns, quoted, in its order."""
    return ", ".join(f"`{_checked_column(f.name)}`" for f in table.schema)


def _checked_column(name: str) -> str:
    if not identifiers.is_column(name):
        raise ValueError(f"not a valid BigQuery column name: {name!r}")
    return name


def _describe_layout(table: bigquery.Table) -> str:
    if table.time_partitioning:
        by = f"{table.time_partitioning.type_} of {table.time_partitioning.field or '_PARTITIONTIME'}"
    else:
        by = f"integer ranges of {table.range_partitioning.field}"
    return f"by {by}" + (f", clustered by {', '.join(table.clustering_fields)}" if table.clustering_fields else "")


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


# -- glific_bq_repartitions (one statement per function) -------------------------------------------


def _ensure(control: psycopg.Connection) -> None:
    ensure_state_tables(control, "repartitions", _SCHEMA)


_KEY = 'organization_id = %s AND "table" = %s AND dataset = %s'


def _record(control: psycopg.Connection, organization_id: int, table: str, dataset: str) -> dict | None:
    with control.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT step, kept_as, rows_copied, finished_at FROM {TABLE} WHERE {_KEY}",
                    (organization_id, table, dataset))
        return cur.fetchone()


def _start(control: psycopg.Connection, organization_id: int, table: str, dataset: str, kept_as: str) -> None:
    """Record that a copy is starting (again, after a run that died copying)."""
    control.execute(
        f'INSERT INTO {TABLE} (organization_id, "table", dataset, step, kept_as) VALUES (%s, %s, %s, %s, %s) '
        "ON CONFLICT (organization_id, \"table\", dataset) DO UPDATE SET step = 'copying', updated_at = now()",
        (organization_id, table, dataset, "copying", kept_as))


def _advance(control: psycopg.Connection, organization_id: int, table: str, dataset: str, step: str,
             rows_copied: int | None = None, rows_caught_up: int | None = None) -> None:
    control.execute(
        f"UPDATE {TABLE} SET step = %s, rows_copied = COALESCE(%s, rows_copied), "
        "rows_caught_up = rows_caught_up + COALESCE(%s, 0), updated_at = now(), "
        f"finished_at = CASE WHEN %s = 'done' THEN now() END WHERE {_KEY}",
        (step, rows_copied, rows_caught_up, step, organization_id, table, dataset))


def _forget_record(control: psycopg.Connection, organization_id: int, table: str, dataset: str) -> None:
    control.execute(f"DELETE FROM {TABLE} WHERE {_KEY}", (organization_id, table, dataset))


def progress(control: psycopg.Connection) -> list[dict]:
    """Every repartition recorded, finished or not (for operators and tests)."""
    _ensure(control)
    with control.cursor(row_factory=dict_row) as cur:
        cur.execute(f'SELECT * FROM {TABLE} ORDER BY organization_id, "table", dataset')
        return cur.fetchall()


__all__ = ["DEADLINE_SECONDS", "STEPS", "Repartition", "RepartitionOptions", "progress", "repartition_table",
           "repartition_tenant", "tables_to_repartition", "warehouse_config"]
