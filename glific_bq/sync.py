"""The incremental sync of one (organization, table), and of one organization.

Per (organization, table), under an advisory lock so that two runs never sync it at once:

1. read the source columns from the catalog; create or evolve the BigQuery table;
2. open one REPEATABLE READ snapshot (a *round*) and run, page by page:
   - the update pass: rows already sent (``id <= table_id``) whose (updated_at, id) passed the
     cursor, appended as new versions;
   - the insert pass: rows with ``id > table_id``;
   after each page is confirmed by BigQuery, advance that pass's watermark;
3. when the update pass read everything it had, move the cursor also past the rows the insert
   pass just sent: within one snapshot they were sent in their latest version, so sending them
   again next time would only make duplicates;
4. repeat rounds until caught up (or until ``max_rows``), each round a fresh, short snapshot.

A page whose rows all fail to reach BigQuery leaves the watermark where it was: at-least-once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import psycopg
import pyarrow as pa

from glific_bq import applied_schemas, extract, horizon, layouts, lookups, pipeline, platform, redact, watermarks
from glific_bq.extract import ORGANIZATION_COLUMN, Pass
from glific_bq.isolation import check_tenant, each_tenant
from glific_bq.layouts import Shape
from glific_bq.layouts.rows import exported, prepare
from glific_bq.registry import Scope, TableSpec
from glific_bq.schema import reflect_columns
from glific_bq.sent_months import record as record_sent_months
from glific_bq.source import Source
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import DEAD_LETTERS, Rejected, Warehouse, WarehouseError, known_tables
from glific_bq.warehouse import tables as warehouse_tables
from glific_bq.warehouse import writes as warehouse_writes
from glific_bq.watermarks import Watermark

log = logging.getLogger(__name__)

#: Steps at which ``on_step`` is called, so tests can stop a sync at each one.
STEPS = ("extracted", "written", "advanced")


@dataclass(frozen=True)
class SyncOptions:
    """Knobs of one sync.

    Attributes:
        page_rows: rows per write (and per watermark advance). Measured on 2M Glific messages
            (bench/bench_datapath.py, load-ready, pipelined): 20,000 rows 8.2 s at 308 MB peak,
            50,000 8.7 s at 394 MB, 100,000 9.4 s at 334 MB: larger pages buy no speed and cost
            memory; smaller ones (10,000: about 40 MB less) double the appends and watermark
            advances, each a round trip to BigQuery and to the source. Memory in flight stays
            about 110 MB whatever the backlog (pages ahead: ``PAGES_AHEAD``).
        round_rows: rows per snapshot; bounds how long a snapshot is held open.
        max_rows: stop after this many rows in one call (None: until caught up).
        refresh_rows: rows sent again per call because a value they copy changed (a contact
            renamed…, see ``glific_bq.lookups``); the rest goes at the next sync.
        lookup_check_seconds: how often (per organization, per process) looked-up tables are
            checked for changed values: the syncs of one tenant's tables in one tick share one check,
            and the tenants of one tick are checked together (``lookups.Checks``).
        horizon_seconds: changes stamped less than this long ago (database clock) wait for the
            next sync, so that the update cursor never passes a change still being committed
            in the same second (see ``horizon.horizon``). Raise it if writers' clocks drift.
        horizon_reuse_seconds: a horizon read less than this long ago by another sync of this
            process (another tenant's) is used again instead of asking PostgreSQL (whose
            ``pg_stat_activity`` costs about 1.5 ms of its CPU a read). An older horizon only holds
            the update cursor back more; 0: every tenant reads its own (the tick reuses, see
            ``tick.TickOptions``).
        load_backlog_rows: an insert backlog of at least this many rows (a new organization, a
            resync, a table added to the registry) goes by Parquet load jobs of ``load_rows``
            rows each, within the table's daily budget (``writes.LOADS_PER_TABLE_PER_DAY``);
            smaller ones, and every minute sync, by the Storage Write API. None: never. See
            the README's Benchmarks for why 500,000.
        load_rows: rows per load job (and per watermark advance) of a backfill; the rows are
            gathered in a Parquet file on disk, so memory does not grow with it.
    """

    page_rows: int = 20_000
    round_rows: int = 1_000_000
    refresh_rows: int = 100_000
    lookup_check_seconds: float = 30.0
    max_rows: int | None = None
    horizon_seconds: float = horizon.HORIZON_SECONDS
    horizon_reuse_seconds: float = 0.0
    load_backlog_rows: int | None = 500_000
    load_rows: int = 500_000


@dataclass
class TableSync:
    """What one sync of one (organization, table) did."""

    organization_id: int
    table: str
    status: str = "synced"  # synced | busy | missing | failed
    dataset: str = ""
    inserted: int = 0
    updated: int = 0
    set_aside: int = 0  # rows BigQuery refused, kept in the dead-letter table
    refreshed: int = 0  # rows sent again because a value they copy changed
    loads: int = 0  # load jobs of a backfill (the rest went by the Storage Write API)
    before: Watermark | None = None
    after: Watermark | None = None
    caught_up: bool = False
    seconds: float = 0.0
    lag_seconds: float | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, object]:
        """Flat, JSON-friendly numbers for run metadata and logs."""
        data: dict[str, object] = {
            "organization_id": self.organization_id,
            "table": self.table,
            "status": self.status,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_set_aside": self.set_aside,
            "rows_refreshed": self.refreshed,
            "load_jobs": self.loads,
            "caught_up": self.caught_up,
            "seconds": round(self.seconds, 3),
        }
        if self.lag_seconds is not None:
            data["lag_seconds"] = round(self.lag_seconds, 1)
        if self.before:
            data["watermark_before"] = self.before.as_metadata()
        if self.after:
            data["watermark_after"] = self.after.as_metadata()
        if self.message:
            data["message"] = self.message
        if self.warnings:
            data["warnings"] = self.warnings
        return data


def sync_table(
    source: Source,
    warehouse: Warehouse,
    organization: Organization,
    spec: TableSpec,
    options: SyncOptions = SyncOptions(),
    on_step: Callable[[str], None] = lambda step: None,
    *,
    horizon_at: datetime | None = None,
) -> TableSync:
    """Sync one table of one organization until caught up. ``horizon_at``: a horizon read before
    this call (``read_horizon``; the tenant's, shared by its tables), for the first round and the
    lookup check; None: read here.

    Raises on failures (warehouse, source) after leaving the watermark at the last confirmed
    page; returns status ``missing`` for a registered table the source lacks and ``busy`` when
    another run holds its lock.
    """
    try:
        return _sync_table(source, warehouse, organization, spec, options, on_step, horizon_at)
    except Exception:
        source.reset_reader()  # its transaction may be aborted; the next sync opens a new one
        raise


#: The last horizon read in this process, per database: (``time.monotonic()`` before it, horizon).
_horizons: dict[str, tuple[float, datetime]] = {}


def read_horizon(source: Source, options: SyncOptions) -> datetime:
    """The horizon (``horizon.horizon``), read in a transaction of its own, or one read less than
    ``options.horizon_reuse_seconds`` ago: every snapshot the reader takes afterwards may use it
    (an older horizon only holds a cursor back more than a fresher one)."""
    source.reader.commit()  # no snapshot of the reader predates the horizon
    asked = time.monotonic()
    last = _horizons.get(source.url)
    if last is not None and asked - last[0] < options.horizon_reuse_seconds:
        return last[1]
    top = horizon.horizon(source.reader, options.horizon_seconds)
    source.reader.commit()
    _horizons[source.url] = (asked, top)
    return top


def _sync_table(source, warehouse, organization, spec, options, on_step, horizon_at) -> TableSync:
    control, reader = source.control, source.reader
    started = time.monotonic()
    result = TableSync(organization.id, spec.name, dataset=warehouse.dataset_ref)
    shape = table_shape(control, warehouse, spec, organization, source.shapes)
    if shape is None:
        result.status, result.message = "missing", f"table {spec.source} does not exist in the source database"
        log.warning(result.message)
        return result
    result.warnings = list(shape.warnings)
    timezone_name = organization.checked_timezone()
    target = _ensure_table(control, warehouse, spec, shape)
    updates = shape.cursor is not None
    if not updates and spec.mode.value == "upsert":
        result.warnings.append(f"{spec.source} has no {spec.cursor_column} timestamp: synced by id only")
    insert_query = extract.build_query(shape, Pass.INSERT)
    update_query = extract.build_query(shape, Pass.UPDATE) if updates else None
    joined = bool(shape.joins)  # whose pages carry the snapshot their joins are read in

    with watermarks.exclusive(control, organization.id, spec.name) as acquired:
        if not acquired:
            result.status, result.message = "busy", "another run is syncing this table"
            return result
        destination = warehouse.destination
        watermark = result.before = watermarks.ensure(control, organization.id, spec.name, destination)

        def ready(page: extract.Page, encode: bool) -> _ReadyPage:
            """The encode stage (a thread of its own): the page as BigQuery receives it, its
            Storage Write requests built ahead of the write unless it goes by a load job."""
            if not shape.cross_organization:  # those are the platform's: checked once, in _shape
                check_tenant(page.rows, organization.id, spec.name, ORGANIZATION_COLUMN)
            rows, rejected = prepare(page.rows, shape, timezone_name, source.joiner, page.snapshot, organization.id)
            if encode:
                warehouse_writes.encode_ahead(warehouse, target, rows)
            return _ReadyPage(page, rows, rejected)

        def write(pass_: Pass, ready_page: _ReadyPage) -> Watermark:
            """The write stage, in page order: append, then ``confirmed``."""
            page, rows, rejected = ready_page
            on_step("extracted")
            record_sent_months(control, organization.id, spec.name, destination, rows, spec.partition_column)
            return confirmed(pass_, page, rejected + warehouse.append(target, rows))

        def confirmed(pass_: Pass, page: extract.Page, rejected: list[Rejected]) -> Watermark:
            """After BigQuery confirmed everything up to ``page``: set refused rows aside, and
            only then advance the pass's watermark to the page's last row."""
            if rejected:
                warehouse.set_aside(spec.name, rejected)
                result.set_aside += len(rejected)
                log.error("organization %s, %s: %s row(s) refused by BigQuery set aside in %s (source ids %s)",
                          organization.id, spec.name, len(rejected), DEAD_LETTERS,
                          [r.source_id for r in rejected[:10]])
            on_step("written")
            if pass_ is Pass.REFRESH:  # rows sent before, sent again: no watermark moves
                return watermark
            if pass_ is Pass.INSERT:
                advanced = watermarks.advance(control, organization.id, spec.name, destination, table_id=page.last_id)
            else:
                advanced = watermarks.advance(control, organization.id, spec.name, destination, cursor=page.last_cursor)
            on_step("advanced")
            return advanced

        def pipeline(pages: Iterator[extract.Page], encode: bool = True):
            return _pipeline(pages, lambda page: ready(page, encode))

        backlog_query = (extract.build_backlog_query(shape)
                         if options.load_backlog_rows and warehouse_writes.loads_backlogs(warehouse) else None)

        def load_budget_left() -> bool:
            return watermarks.loads_today(control, organization.id, spec.name, destination) < warehouse_writes.LOADS_PER_TABLE_PER_DAY

        def by_load_jobs() -> bool:
            """Whether this round's insert pass goes by load jobs: it may have a backlog
            (``may_have_backlog``), which is large enough, and the table's daily load budget is not
            spent (checked again before each load)."""
            if backlog_query is None or not may_have_backlog(watermark) or not load_budget_left():
                return False
            return extract.backlog_at_least(reader, backlog_query, organization_id=organization.id,
                                            timezone=timezone_name, id_bound=watermark.table_id,
                                            rows=options.load_backlog_rows)

        def load(parquet: warehouse_writes.ParquetLoad, last: extract.Page, rejected: list[Rejected]) -> Watermark:
            """Load the gathered pages by one load job; the watermark moves when it completed."""
            watermarks.record_load(control, organization.id, spec.name, destination)
            result.loads += 1
            return confirmed(Pass.INSERT, last, rejected + parquet.load())

        first_top = horizon_at  # the tenant's, for the lookup check
        budget = options.max_rows
        while budget is None or budget > 0:
            round_limit = options.round_rows if budget is None else min(options.round_rows, budget)
            read = 0
            update_exhausted = True
            insert_top = None
            # Before the round's snapshot (see horizon.horizon); each round starts a fresh one.
            top, horizon_at = horizon_at or read_horizon(source, options), None
            if update_query:
                with pipeline(extract.pages(
                    reader, update_query, Pass.UPDATE, organization_id=organization.id,
                    timezone=timezone_name, id_bound=watermark.table_id, cursor=watermark.cursor,
                    horizon=top, page_rows=options.page_rows, max_rows=round_limit, export_snapshot=joined,
                )) as ready_pages:
                    for ready_page in ready_pages:
                        watermark = write(Pass.UPDATE, ready_page)
                        result.updated += exported(ready_page.page.rows)
                        read += ready_page.page.rows.num_rows
                update_exhausted = read < round_limit
            insert_read = 0
            if read < round_limit:
                backfill = by_load_jobs()
                parquet, gathered = None, []  # a backfill's load being gathered, its refused rows
                with pipeline(extract.pages(
                    reader, insert_query, Pass.INSERT, organization_id=organization.id,
                    timezone=timezone_name, id_bound=watermark.table_id,
                    page_rows=options.page_rows, max_rows=round_limit - read, export_snapshot=joined,
                ), encode=not backfill) as ready_pages:
                    try:
                        for ready_page in ready_pages:
                            page = ready_page.page
                            if backfill and parquet is None and not load_budget_left():
                                backfill = False  # the rest of the pass by the Storage Write API
                            if backfill:
                                on_step("extracted")
                                parquet = parquet or warehouse_writes.ParquetLoad(warehouse, target)
                                record_sent_months(control, organization.id, spec.name, destination, ready_page.rows,
                                                   spec.partition_column)
                                parquet.add(ready_page.rows)
                                gathered += ready_page.rejected
                                if parquet.rows >= options.load_rows:
                                    watermark = load(parquet, page, gathered)
                                    parquet, gathered = None, []
                            else:
                                watermark = write(Pass.INSERT, ready_page)
                            result.inserted += exported(page.rows)
                            insert_read += page.rows.num_rows
                            insert_top = max(filter(None, (insert_top, extract.max_cursor(page.rows, top))),
                                             default=None)
                        if parquet is not None:
                            watermark = load(parquet, page, gathered)
                            parquet = None
                    finally:
                        if parquet is not None:  # not loaded: its rows are read again next time
                            parquet.discard()
            reader.commit()
            if updates and update_exhausted and insert_top:
                watermark = watermarks.advance(control, organization.id, spec.name, destination, cursor=insert_top)
            read += insert_read
            if budget is not None:
                budget -= read
            if read < round_limit:
                result.caught_up = True
                break
        if shape.refresh:
            result.refreshed = _refresh(source, organization, spec, shape, watermark, timezone_name, options,
                                        lambda page: write(Pass.REFRESH, ready(page, encode=False)), first_top)
        result.after = watermark
        if watermark.failures:  # read under the lock: no other run records one meanwhile
            watermarks.record_success(control, organization.id, spec.name, destination)
    result.lag_seconds = 0.0 if result.caught_up else _lag_seconds(watermark)
    result.seconds = time.monotonic() - started
    log.info("synced %s for organization %s: %s inserted, %s updated", spec.name, organization.id,
             result.inserted, result.updated)
    return result


def _refresh(source, organization, spec, shape, watermark, timezone_name, options, write, top) -> int:
    """Send again the rows of ``spec`` whose looked-up values changed (``glific_bq.lookups``):
    at most ``options.refresh_rows`` rows read per call, the progress of each batch kept after
    every confirmed page, so that a parent with more dependents (a flow renamed after a million
    messages) goes on at the next sync where this one stopped, even if this one dies."""
    control, reader = source.control, source.reader
    lookups.checks.ensure(control, source.url, organization.id, options.lookup_check_seconds,
                          lambda: top or read_horizon(source, options))
    read = sent = 0
    while read < options.refresh_rows and (batch := lookups.next_batch(control, organization.id, spec.name,
                                                                       shape.refresh)):
        limit, batch_read = options.refresh_rows - read, 0
        # Only the references to the batch's looked-up tables, so that PostgreSQL can use their
        # indexes: one reference without an index (messages.user_id in Glific's schema) makes it
        # scan the table.
        query = extract.build_query(replace(shape, refresh={p: shape.refresh[p] for p in batch.ids}), Pass.REFRESH)
        reader.commit()
        for page in extract.pages(
            reader, query, Pass.REFRESH, organization_id=organization.id, timezone=timezone_name,
            id_bound=watermark.table_id, refresh_ids=batch.ids, after_id=batch.progress,
            page_rows=options.page_rows, max_rows=limit, export_snapshot=bool(shape.joins),
        ):
            write(page)
            batch = lookups.progressed(control, batch, page.last_id)
            sent += exported(page.rows)
            batch_read += page.rows.num_rows
        reader.commit()
        read += batch_read
        if batch_read < limit:  # every row referring to the batch is sent again
            lookups.done(control, batch)
    return sent


class _ReadyPage(NamedTuple):
    """A page through the encode stage: as read (positions, hidden columns), as sent, and the
    rows ``prepare`` already refused."""

    page: extract.Page
    rows: pa.Table
    rejected: list[Rejected]


#: Pages prepared and encoded ahead of the one being written (each 20,000-row page of Glific
#: messages is about 15 MB in flight, as Arrow and as requests).
PAGES_AHEAD = 2


def _pipeline(pages: Iterator[extract.Page], ready: Callable[[extract.Page], _ReadyPage]):
    """The page loop's stages, overlapped so that the slowest sets the pace: reading (the
    extract's read-ahead thread), preparing and encoding (``ready``, in a thread of its own), and
    writing and advancing the watermark (the caller's thread, in page order, so a page's
    watermark moves only after BigQuery confirmed it and every page before it). Use as a context
    manager: leaving it stops and joins the stages before the caller touches the reader again."""
    return contextlib.closing(pipeline.ahead(_ready_pages(pages, ready), PAGES_AHEAD, name="glific_bq-encode",
                                                   inline_first=True))


def _ready_pages(pages: Iterator[extract.Page], ready: Callable[[extract.Page], _ReadyPage]) -> Iterator[_ReadyPage]:
    with contextlib.closing(pages):  # in the encode thread: the read stage stops there too
        for page in pages:
            yield ready(page)


def _ensure_table(control, warehouse: Warehouse, spec: TableSpec, shape: Shape):
    """The BigQuery table set up for ``shape``: trusted without a BigQuery call when an earlier
    process applied this very schema (``glific_bq.applied_schemas``)."""
    schema = list(shape.schema)
    table_id, digest = warehouse_tables.written_table_id(warehouse, spec, schema), known_tables.fingerprint(schema)
    applied = applied_schemas.recorded(control, table_id) == digest
    if applied:
        known_tables.trust(warehouse, spec, schema)
    target = warehouse.ensure_table(spec, schema)
    if not applied:
        applied_schemas.record(control, table_id, digest)
    return target


def table_shape(control, warehouse: Warehouse, spec: TableSpec, organization: Organization,
                cache: dict | None = None) -> Shape | None:
    """``spec``'s table in the warehouse's layout, from its source's columns now (or as the
    ``cache`` of this tick has them, ``Source.shapes``); None if the source table does not exist
    (an older Glific database lacks some tables). A table of every organization's rows is refused
    to all but the platform organization (``glific_bq.platform``)."""
    if spec.scope is Scope.PLATFORM:
        platform.require_platform_organization(control, organization.id, spec.name)
    key = (warehouse.config.layout, spec)
    if cache is not None and key in cache:
        return cache[key]
    columns = reflect_columns(control, spec.source)
    shape = None
    if columns:
        names = {c.name for c in columns}
        needed = {"id"} if spec.scope is Scope.PLATFORM else {"id", "organization_id"}
        if not needed <= names:
            raise ValueError(f"table {spec.source} lacks an id or organization_id column")
        shape = layouts.shape_for(warehouse.config.layout, spec, columns)
    if cache is not None:
        cache[key] = shape
    return shape


#: A watermark that moved less than this long ago, with no failure since, belongs to a
#: tenant-table synced every minute: its insert backlog is not measured (two statements a sync).
BACKLOG_CHECK_AFTER = timedelta(minutes=10)


def may_have_backlog(watermark: Watermark) -> bool:
    """Whether an insert backlog large enough for load jobs can have built up: the watermark is
    new or reset (a new organization or table, a resync), its syncs failed, or it has not moved for
    ``BACKLOG_CHECK_AFTER``. A bulk import landing between two minute syncs goes by the Storage
    Write API instead: every row still arrives, at Storage Write's price."""
    if watermark.table_id == 0 or watermark.failures or watermark.advanced_at is None:
        return True
    return datetime.now(timezone.utc) - watermark.advanced_at >= BACKLOG_CHECK_AFTER


def _lag_seconds(watermark: Watermark) -> float:
    """Seconds since the newest change the update cursor has passed (an upper bound of the lag)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return max(0.0, (now - watermark.last_updated_at).total_seconds())


def sync_tenant(
    source: Source,
    open_warehouse: Callable[[Organization], Warehouse],
    organization_id: int,
    tables: Sequence[TableSpec],
    options: SyncOptions = SyncOptions(),
    *,
    destination: str | None = None,
) -> list[TableSync]:
    """Sync several tables of one organization; never raises for a tenant's own trouble.

    A table that fails, or a tenant that cannot be set up at all (unknown organization, invalid
    timezone, invalid credentials), comes back with status ``failed`` and its error, which is
    also recorded in its watermarks for backoff and alerts: under the warehouse's destination,
    or, when no warehouse could be opened, under ``destination`` (the roster's; the tick gives it).
    Other tables go on.
    """
    def failed(spec: TableSpec, message: str, where: str | None = destination) -> TableSync:
        return record_failure(source, organization_id, spec, where, message)

    try:
        try:
            organization = get_organization(source.healthy_control(), organization_id)
        except psycopg.OperationalError:  # the server ended the connection since it was last used
            organization = get_organization(source.healthy_control(reconnect=True), organization_id)
        organization.checked_timezone()
    except Exception as error:  # the whole tenant fails, alone
        return [failed(spec, _describe(error)) for spec in tables]

    def sync_tables(organization: Organization, warehouse: Warehouse) -> list[TableSync]:
        results, top = [], None
        for spec in tables:
            try:
                # One horizon for the tenant's tables, read before the first one's snapshot.
                top = top or read_horizon(source, options)
                results.append(sync_table(source, warehouse, organization, spec, options, horizon_at=top))
            except Exception as error:  # this table only
                results.append(failed(spec, _describe(error), warehouse.destination))
        return results

    # A warehouse that cannot be opened (invalid credentials) fails the whole tenant, alone.
    (outcome,) = each_tenant([organization], open_warehouse, sync_tables, what="sync")
    return [failed(spec, outcome.error) for spec in tables] if outcome.failed else outcome.result


def record_failure(source: Source, organization_id: int, spec: TableSpec, destination: str | None,
                   message: str) -> TableSync:
    """A failed sync of one tenant-table, recorded in its watermark (under ``destination``, when
    known) for backoff and alerts; ``message`` is already redacted. Never raises: the failure may
    have broken the control connection, which is opened again; if even that fails, the failure
    is logged and the others go on."""
    log.error("organization %s, %s: %s", organization_id, spec.name, message)
    if destination is None:
        return TableSync(organization_id, spec.name, status="failed", message=message)
    for attempt in (1, 2):
        try:
            control = source.healthy_control(reconnect=attempt == 2)
            watermarks.record_failure(control, organization_id, spec.name, destination, message)
            break
        except psycopg.Error as error:  # the failure broke the connection, or the database is gone
            if attempt == 2:
                log.error("organization %s, %s: the failure could not be recorded: %s", organization_id,
                          spec.name, _describe(error))
    return TableSync(organization_id, spec.name, status="failed", message=message)


def _describe(error: Exception) -> str:
    """The error as stored and shown: anything shaped like a credential masked."""
    return redact.describe(error)


__all__ = ["STEPS", "SyncOptions", "TableSync", "WarehouseError", "record_failure", "sync_table", "sync_tenant",
           "table_shape"]
