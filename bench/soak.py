"""Soak test: live Glific-like traffic, a crashing syncer and dedup for N minutes, then a row-by-row
comparison of PostgreSQL and BigQuery.

Everything runs locally and is set up from scratch: an embedded PostgreSQL (pgserver, in a temp
dir) with Glific's schema and a small seed for ``--tenants`` organizations, the BigQuery emulator,
and the watermarks. For ``--minutes`` minutes, concurrently:

* ``--writers`` writer processes (~``--rate`` transactions/s each, every tenant) insert messages,
  contacts, flow runs, tickets and contact history; update statuses, contact fields, flow results
  and tickets; bulk-update hundreds of rows with one ``updated_at``; create and delete contacts
  (``contacts`` propagates deletes; the deleted contacts are made for it and nothing references
  them, so no ``keep`` table loses a row); hold transactions open 3-12 s before committing, while
  the others commit higher ids (late commits); stamp some rows 10-40 s in the future. Every write
  goes through ``glific_bq.local.glific_writes`` (the application's clock, naive UTC, as Glific's
  Ecto writes) on Glific's real schema, whose triggers do the rest.
* the syncer (a thread of the main process) runs ``sync_tenant`` for every tenant every 1-3 s with
  random page and round sizes; about one tenant sync in ``1/--crash-rate`` dies on purpose
  (``Crash``, which no error handler catches, like a killed process): after a random step of
  ``sync_table`` (``on_step``) or half-way through a BigQuery write (``DyingWarehouse``). The
  next sync starts on fresh connections, as a restarted process would.
* a dedup thread, every 20-30 s, runs an incremental ``dedup_tenant`` (``since`` = the last pass,
  kept in ``glific_bq_watermarks.deduped_at`` as the dedup job does) and ``propagate_deletes``. Its
  BigQuery requests and the syncer's take turns (the emulator cannot serve two at once, see
  ``EMULATOR``), so dedup statements interleave with appends request by request.

Then: writers stop, open transactions end, the script waits until every future stamp is older
than the sync horizon, syncs until a whole round sends nothing, runs a full dedup and delete
propagation, and compares every row of every synced table of every tenant: in the raw layout
with the source, row by row; with ``--layout glific`` (Glific's 33 tables, those the local schema
has) with the same source synced again from scratch into datasets of their own, key by key and
column by column (every column but the send stamps), which also catches stale copied values.

Reading the output. ``operations`` counts what the writers committed (``aborted``: transactions
PostgreSQL rolled back, e.g. deadlocks between bulk updates; they changed nothing). ``sync`` counts
tenant syncs, rows sent by the syncs that did not crash (inserted: insert pass, updated: update
pass; resends after crashes included), failed table syncs and crashes by where they struck.
``dedup`` counts the passes during the soak, ``final`` the catch-up and the full dedup after it.
The table has one line per tenant and table:

* ``source``: rows at the source; ``bq ids``: distinct ids in BigQuery;
* ``missing``: ids at the source with no row in BigQuery (a lost row);
* ``extra``: ids in BigQuery that the source no longer has (a delete not propagated; only
  ``contacts`` gets deletes, so in ``keep`` tables any extra id is an invented row);
* ``differing``: ids whose newest BigQuery version differs from the source's current row (a lost
  update). Content is compared as a hash of every synced column: the source side selected with
  the sync's own column expressions (``Column.select_expression``: local DATETIMEs, JSON text,
  arrays without NULLs) and decoded by psycopg, the BigQuery side read back; a NULL array
  compares equal to an empty one (BigQuery cannot store NULL arrays);
* ``duplicated``: ids with more than one version left after the final full dedup.

The first differences of each table are printed below it. Exit code 0 only if missing, extra,
differing and duplicated are all zero (and the writers, the final sync and the final dedup ran
without error). Ctrl-C or SIGTERM stops everything and cleans up.

Run: ``.venv/bin/python bench/soak.py --minutes 10 [--tenants 3] [--seed S]``
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import functools
import hashlib
import logging
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from glific_bq import registry, watermarks
from glific_bq.dedup import dedup_tenant, version_key
from glific_bq.deletes import propagate_deletes
from glific_bq.layouts import Layout
from glific_bq.local import glific_writes as gw
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID, reflect_columns, syncable_columns
from glific_bq.source import Source
from glific_bq.sync import STEPS, SyncOptions, sync_table, sync_tenant
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

WRITER_APP = "glific_bq_soak_writer"
#: ``optin_method`` of the contacts writers create in order to delete them; nothing references them.
DISPOSABLE = "soak:disposable"
LATE_COMMIT_SECONDS = (3.0, 12.0)
FUTURE_SECONDS = (10, 40)
DEDUP_EVERY_SECONDS = (20.0, 30.0)
SYNC_EVERY_SECONDS = (1.0, 3.0)
PAGE_ROWS = (100, 1_000, 50_000)
ROUND_ROWS = (300, 1_000_000)
MAX_FINAL_ROUNDS = 10
EXAMPLES = 3  # differences printed per table
#: The tables soaked: the raw layout's (compared with the source row by row) unless ``--layout
#: glific`` (compared with a from-scratch sync of the same source, see ``compare_with_fresh``).
TABLES: tuple[TableSpec, ...] = registry.RAW_TABLES


# ---------------------------------------------------------------------------------------------
# Writers: one process each, one short transaction per operation (late commits excepted).
# ---------------------------------------------------------------------------------------------


@dataclass
class Tenant:
    """What a writer picks from, for one organization."""

    id: int
    bot: int  # the organization's own contact: sender of outbound, receiver of inbound messages
    contacts: list[int]  # never deleted: messages, flow runs and tickets reference them
    flows: list[tuple[int, object]]
    disposable: list[int] = field(default_factory=list)  # this writer's contacts to delete


def load_tenants(conn: psycopg.Connection) -> list[Tenant]:
    """Every organization, with the contacts and flows a writer may reference."""
    tenants = []
    for org_id, bot in conn.execute("SELECT id, contact_id FROM organizations ORDER BY id").fetchall():
        contacts = [r[0] for r in conn.execute(
            "SELECT id FROM contacts WHERE organization_id = %s AND id <> %s "
            "AND optin_method IS DISTINCT FROM %s", (org_id, bot, DISPOSABLE))]
        flows = conn.execute("SELECT id, uuid FROM flows WHERE organization_id = %s", (org_id,)).fetchall()
        tenants.append(Tenant(org_id, bot, contacts, flows))
    return tenants


def insert_message(conn, t: Tenant, rng: random.Random, counts: Counter, ahead: float = 0) -> None:
    """A message as Glific stores one (its trigger moves the contact's counters), ``ahead`` seconds
    in the future if asked."""
    contact = rng.choice(t.contacts)
    future = {"updated_at": gw.utc_now() + timedelta(seconds=ahead)} if ahead else {}
    gw.message(conn, t.id, contact, t.bot, inbound=rng.random() < 0.5,
               body=rng.choice(("Hi", "नमस्ते 🙏", "Habari? 😀", "Olá", 'He said "ok" \\ fine', "")), **future)
    counts["inserts"] += 1
    counts["updates"] += 1


def flow_run(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    flow_id, flow_uuid = rng.choice(t.flows)
    run = {"flow_uuid": flow_uuid, "flow_id": flow_id, "contact_id": rng.choice(t.contacts), "organization_id": t.id,
           "results": {"age": {"input": str(rng.randint(8, 60)), "category": "Has Number"}}}
    context_id = gw.insert_one(conn, "flow_contexts", node_uuid=uuid.uuid4(), **run)
    gw.insert_one(conn, "flow_results", flow_version=rng.randint(1, 12), flow_context_id=context_id, **run)
    counts["inserts"] += 2


def contact_history(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    gw.insert_one(conn, "contact_histories", event_type="contact_fields_updated",
                  event_label=rng.choice(("district", "जिला", "São")), event_meta={"step": rng.randint(1, 9)},
                  event_datetime=gw.utc_now(), contact_id=rng.choice(t.contacts), organization_id=t.id)
    counts["inserts"] += 1


def merge_json(conn, table: str, column: str, row_id: int, value: dict) -> None:
    """Read-modify-write of a jsonb map, as the application changes one."""
    (current,) = conn.execute(f"SELECT {column} FROM {table} WHERE id = %s FOR UPDATE", (row_id,)).fetchone()
    gw.update(conn, table, row_id, **{column: {**(current or {}), **value}})


def edit_contact(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    merge_json(conn, "contacts", "fields", rng.choice(t.contacts),
               gw.contact_fields({"district": rng.choice(("Pune", "पुणे", "Mombasa", "São Paulo"))}))
    counts["updates"] += 1


def random_ids(conn, table: str, t: Tenant, n: int, where: str = "true", order: str = "random()") -> list[int]:
    return [r[0] for r in conn.execute(
        f"SELECT id FROM {table} WHERE organization_id = %s AND {where} ORDER BY {order} LIMIT %s", (t.id, n))]


def edit_flow_result(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    for row_id in random_ids(conn, "flow_results", t, 1, order=f"id DESC OFFSET {rng.randint(0, 50)}"):
        merge_json(conn, "flow_results", "results", row_id,
                   {"feedback": {"input": rng.choice(("Muito bom 😀", "Nzuri", "अच्छा"))}})
        counts["updates"] += 1


def advance_statuses(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    """The newest pending outbound messages move one status on, as delivery callbacks do."""
    pending = conn.execute(
        "SELECT id, status::text FROM messages WHERE organization_id = %s AND flow = 'outbound' "
        "AND status IN ('enqueued', 'sent', 'delivered') ORDER BY id DESC LIMIT %s", (t.id, rng.randint(1, 10))).fetchall()
    for message_id, status in pending:
        new = {"enqueued": "sent", "sent": "delivered"}.get(status, "read")
        counts["updates"] += gw.update(conn, "messages", message_id, status=new, bsp_status=new,
                                       **({"sent_at": gw.utc_now()} if status == "enqueued" else {}))


def ticket(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    if rng.random() < 0.5:
        gw.insert_one(conn, "tickets", body=rng.choice(("Help", "मदद", "Ajuda")), topic="Certificate", status="open",
                      contact_id=rng.choice(t.contacts), organization_id=t.id)
        counts["inserts"] += 1
    else:
        counts["updates"] += gw.update(conn, "tickets", random_ids(conn, "tickets", t, 1, "status = 'open'"),
                                       status="closed", remarks=rng.choice(("done ✅", "resolvido")))


def bulk_update(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    """Hundreds of rows of one table get one ``updated_at`` in one statement."""
    tag = f"b{rng.getrandbits(32):x}"
    table, change = rng.choice((
        ("messages", {"flow_label": tag}),
        ("contacts", {"settings": {"campaign": tag}}),
        ("flow_results", {"results": {"batch": tag}}),
    ))
    counts["bulk_updates"] += 1
    counts["updates"] += gw.update(conn, table, random_ids(conn, table, t, rng.randint(200, 2000)), **change)


def disposable_contact(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    """Create a contact to delete later, edit one, or delete one (maybe before it was ever synced)."""
    choice = rng.random()
    if choice < 0.4 or not t.disposable:
        t.disposable.append(gw.contact(conn, t.id, f"soak{rng.getrandbits(60)}", optin_method=DISPOSABLE,
                                       name=rng.choice(("Asha", "Juma", "João 😀", None))))
        counts["inserts"] += 1
    elif choice < 0.6:
        counts["updates"] += gw.update(conn, "contacts", rng.choice(t.disposable), name=f"renamed {rng.randint(1, 99)}")
    else:
        contact = t.disposable.pop(rng.randrange(len(t.disposable)))
        counts["deletes"] += gw.delete(conn, "contacts", id=contact, optin_method=DISPOSABLE)


def late_commit(conn, t: Tenant, rng: random.Random, counts: Counter, stop: threading.Event) -> None:
    """Insert and update, then stay open while the other writers commit higher ids; commit last."""
    for _ in range(rng.randint(1, 3)):
        insert_message(conn, t, rng, counts)
    flow_run(conn, t, rng, counts)
    contact_history(conn, t, rng, counts)
    edit_flow_result(conn, t, rng, counts)
    stop.wait(rng.uniform(*LATE_COMMIT_SECONDS))
    counts["late_commits"] += 1


def future_stamp(conn, t: Tenant, rng: random.Random, counts: Counter) -> None:
    """A row stamped 10-40 s ahead (a writer with a skewed clock): the sync must wait for it."""
    ahead = rng.randint(*FUTURE_SECONDS)
    table = rng.choice(("messages", "contacts", "flow_results"))
    if table == "messages" and rng.random() < 0.5:
        insert_message(conn, t, rng, counts, ahead=ahead)
    else:
        counts["updates"] += gw.update(conn, table, random_ids(conn, table, t, 1),
                                       updated_at=gw.utc_now() + timedelta(seconds=ahead))
    counts["future_stamps"] += 1


OPERATIONS = (  # (operation, weight)
    (insert_message, 30), (advance_statuses, 12), (edit_contact, 8), (flow_run, 6), (edit_flow_result, 5),
    (contact_history, 4), (ticket, 4), (disposable_contact, 8), (bulk_update, 2), (late_commit, 1),
    (future_stamp, 1),
)


def writer(url: str, seed: int, deadline: float, rate: float, stop, results) -> None:
    """One writer process: random operations on random tenants until ``stop`` or ``deadline``
    (``time.time()``); puts its counts on ``results``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the writers
    rng = random.Random(seed)
    counts: Counter = Counter()
    operations, weights = zip(*OPERATIONS)
    with psycopg.connect(url, autocommit=True, application_name=WRITER_APP) as conn:
        conn.execute("SET statement_timeout = '60s'")
        tenants = load_tenants(conn)
        while not stop.is_set() and time.time() < deadline:
            operation = rng.choices(operations, weights)[0]
            tenant = rng.choice(tenants)
            done: Counter = Counter()  # counted only once committed
            try:
                with conn.transaction():
                    if operation is late_commit:
                        late_commit(conn, tenant, rng, done, stop)
                    else:
                        operation(conn, tenant, rng, done)
                counts.update(done)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.QueryCanceled):
                counts["aborted"] += 1
            stop.wait(rng.expovariate(rate))
    results.put(dict(counts))


# ---------------------------------------------------------------------------------------------
# Syncer and dedup.
# ---------------------------------------------------------------------------------------------


class Crash(BaseException):
    """The syncer dies (the argument says where). A BaseException, so that none of the sync's
    error handling sees it, as after a kill."""


#: bqemulator 1.4 runs Storage Write appends on a gRPC worker thread and REST jobs on its event loop,
#: on one DuckDB connection, without coordinating them: concurrent calls fail with "connection is
#: busy". The soak's threads therefore take turns, one BigQuery request at a time: a dedup pass's
#: statements still interleave with the sync's appends, as in BigQuery.
EMULATOR = threading.Lock()


class EmulatorWarehouse(Warehouse):
    """A ``Warehouse`` whose requests to the emulator take turns (see ``EMULATOR``)."""

    def __init__(self, config: WarehouseConfig, organization: Organization) -> None:
        super().__init__(config, organization)
        if getattr(self.client._connection, "takes_turns", False):  # clients are shared per organization
            return
        self.client._connection.takes_turns = True
        request = self.client._connection.api_request

        def api_request(*args, **kwargs):
            with EMULATOR:
                return request(*args, **kwargs)

        self.client._connection.api_request = api_request

    def _write(self, target, rows):
        with EMULATOR:
            super()._write(target, rows)


class DyingWarehouse(EmulatorWarehouse):
    """Writes half the rows of its ``dies_at``-th write, then dies: a crash in the middle of a write."""

    def __init__(self, config: WarehouseConfig, organization: Organization, dies_at: int) -> None:
        super().__init__(config, organization)
        self.dies_at, self.writes = dies_at, 0

    def _write(self, target, rows):
        self.writes += 1
        if self.writes == self.dies_at:
            super()._write(target, rows.slice(0, rows.num_rows // 2))
            raise Crash("mid-write")
        super()._write(target, rows)


def crash_at(step: str, nth: int):
    """An ``on_step`` that dies the ``nth`` time the sync reaches ``step``."""
    seen = 0

    def on_step(name: str) -> None:
        nonlocal seen
        if name == step:
            seen += 1
            if seen == nth:
                raise Crash(step)

    return on_step


def crashing_sync(source: Source, config: WarehouseConfig, organization_id: int, options: SyncOptions,
                  rng: random.Random) -> None:
    """Sync a tenant's tables as ``sync_tenant`` does, but set to die at a random point (which a
    sync with little to do may never reach): ``Crash`` says where it died."""
    organization = get_organization(source.control, organization_id)
    where, nth = rng.choice((*STEPS, "mid-write")), rng.randint(1, 8)
    if where == "mid-write":
        warehouse, on_step = DyingWarehouse(config, organization, nth), (lambda step: None)
    else:
        warehouse, on_step = EmulatorWarehouse(config, organization), crash_at(where, nth)
    try:
        for spec in TABLES:
            sync_table(source, warehouse, organization, spec, options, on_step)
    finally:
        warehouse.close()


@dataclass
class Stats:
    """Counters of one thread, and the first few errors it saw."""

    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 5:
            self.errors.append(message[:300])


def syncer(url: str, config: WarehouseConfig, tenant_ids: list[int], deadline: float, crash_rate: float,
           rng: random.Random, stats: Stats, interrupted: threading.Event, writers_ok: Callable[[], bool]) -> None:
    """Sync every tenant every few seconds, crashing now and then, until ``deadline`` (monotonic),
    a writer fails or ``interrupted``."""
    source = Source(url)
    open_warehouse = functools.partial(EmulatorWarehouse, config)
    next_report = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not interrupted.is_set() and writers_ok():
            for organization_id in tenant_ids:
                options = SyncOptions(page_rows=rng.choice(PAGE_ROWS), round_rows=rng.choice(ROUND_ROWS))
                stats.counts["syncs"] += 1
                if rng.random() < crash_rate:
                    try:
                        crashing_sync(source, config, organization_id, options, rng)
                    except Crash as crash:
                        stats.counts["crashes"] += 1
                        stats.counts[f"crash {crash}"] += 1
                        source.close()  # the process is gone; a new one starts with new connections
                        source = Source(url)
                    except Exception as error:
                        stats.error(f"organization {organization_id}: {type(error).__name__}: {error}")
                        source.reset_reader()
                    continue
                for result in sync_tenant(source, open_warehouse, organization_id, TABLES, options):
                    stats.counts["rows_inserted"] += result.inserted
                    stats.counts["rows_updated"] += result.updated
                    stats.counts["rows_set_aside"] += result.set_aside
                    if result.status == "failed":
                        stats.error(f"organization {organization_id}, {result.table}: {result.message}")
            if time.monotonic() > next_report:
                next_report += 60
                c = stats.counts
                print(f"  {time.strftime('%H:%M:%S')} {c['syncs']} tenant syncs, {c['rows_inserted']} rows inserted, "
                      f"{c['rows_updated']} updated, {c['crashes']} crashes, {c['errors']} failed", flush=True)
            interrupted.wait(rng.uniform(*SYNC_EVERY_SECONDS))
    finally:
        source.close()


def dedup_and_propagate(source: Source, config: WarehouseConfig, organization_id: int, stats: Stats, *,
                        full: bool) -> None:
    """What the dedup job does for one tenant: dedup every table (incremental unless ``full``),
    then propagate deletes."""
    organization = get_organization(source.control, organization_id)
    warehouse = EmulatorWarehouse(config, organization)
    started = datetime.now(timezone.utc)
    try:
        since = None if full else {
            spec.name: watermarks.get(source.control, organization_id, spec.name, warehouse.destination).deduped_at
            for spec in TABLES
        }
        for result in dedup_tenant(warehouse, TABLES, since, now=started):
            stats.counts["versions_deleted"] += result.deleted
            if result.error:
                stats.error(f"dedup organization {organization_id}, {result.table}: {result.error}")
            elif result.skipped_reason is None:
                watermarks.record_dedup(source.control, organization_id, result.table, warehouse.destination, started)
        stats.counts["dedups"] += 1
        for spec in TABLES:
            if spec.deletes is DeletePolicy.PROPAGATE:
                stats.counts["deletes_propagated"] += propagate_deletes(source, warehouse, organization, spec)
    finally:
        warehouse.close()


def deduper(url: str, config: WarehouseConfig, tenant_ids: list[int], deadline: float, rng: random.Random,
            stats: Stats, traffic_over: threading.Event) -> None:
    """Dedup and propagate deletes for every tenant every 20-30 s until ``traffic_over`` or
    ``deadline`` (monotonic)."""
    with Source(url) as source:
        while not traffic_over.wait(rng.uniform(*DEDUP_EVERY_SECONDS)) and time.monotonic() < deadline:
            for organization_id in tenant_ids:
                try:
                    dedup_and_propagate(source, config, organization_id, stats, full=False)
                except Exception as error:
                    stats.error(f"organization {organization_id}: {type(error).__name__}: {error}")
                    source.reset_reader()


# ---------------------------------------------------------------------------------------------
# The end: settle, catch up, compare.
# ---------------------------------------------------------------------------------------------


def settle(url: str, horizon_seconds: float, interrupted: threading.Event) -> float:
    """Wait until no writer transaction is open and every change (future stamps included) lies
    behind the sync horizon; return the seconds waited."""
    started = time.monotonic()
    newest = " UNION ALL ".join(f"SELECT max({spec.cursor_column}) FROM {spec.source}" for spec in TABLES)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(60):
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                (WRITER_APP,)).fetchone()[0]:
                break
            if interrupted.wait(1):
                return time.monotonic() - started
        else:
            raise RuntimeError("writer transactions still open after 60 s")
        (behind,) = conn.execute(
            f"SELECT EXTRACT(epoch FROM (SELECT max(m) FROM ({newest}) AS t(m)) - (now() AT TIME ZONE 'UTC'))"
        ).fetchone()
    interrupted.wait(max(0.0, float(behind or 0)) + horizon_seconds + 1)
    return time.monotonic() - started


def final_sync(url: str, config: WarehouseConfig, tenant_ids: list[int], stats: Stats,
               interrupted: threading.Event) -> int | None:
    """Sync every tenant until a whole round sends nothing; the number of rounds (None: never)."""
    open_warehouse = functools.partial(EmulatorWarehouse, config)
    with Source(url) as source:
        for round_number in range(1, MAX_FINAL_ROUNDS + 1):
            if interrupted.is_set():
                return None
            sent, clean = 0, True
            for organization_id in tenant_ids:
                for result in sync_tenant(source, open_warehouse, organization_id, TABLES):
                    sent += result.inserted + result.updated
                    if result.status != "synced" or not result.caught_up:
                        clean = False
                        stats.error(f"final sync, organization {organization_id}, {result.table}: "
                                    f"{result.status} {result.message}")
            if clean and sent == 0:
                return round_number
    return None


@dataclass
class TableReport:
    organization_id: int
    table: str
    source: int = 0
    warehouse: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    duplicated: int = 0
    examples: list[str] = field(default_factory=list)

    def check(self, key, versions: list[dict], differences: Callable[[list[dict]], list[str]]) -> None:
        """One expected row: missing, kept in several versions, or its kept version differing
        (``differences`` names the columns)."""
        if not versions:
            self.missing += 1
            self.examples.append(f"missing {key}")
            return
        if len(versions) > 1:
            self.duplicated += 1
            self.examples.append(f"duplicated {key}: {len(versions)} versions")
        if diffs := differences(versions):
            self.differing += 1
            self.examples.append(f"differing {key}: " + "; ".join(diffs))

    def unexpected(self, keys) -> None:
        """Rows in BigQuery that are not expected at all (invented, or a delete not propagated)."""
        for key in keys:
            self.extra += 1
            self.examples.append(f"extra {key}")

    @property
    def bad(self) -> int:
        return self.missing + self.extra + self.differing + self.duplicated


def compare_table(conn: psycopg.Connection, warehouse: Warehouse, organization: Organization,
                  spec: TableSpec) -> TableReport:
    """Every id of one tenant's table: one version in BigQuery, equal to the source's row."""
    report = TableReport(organization.id, spec.name)
    columns, _ = syncable_columns(reflect_columns(conn, spec.name), spec.name)
    arrays = {c.name for c in columns if c.is_array}
    names = [c.name for c in columns]

    def digest(row: dict) -> tuple[str, tuple]:
        values = tuple([] if name in arrays and row[name] is None else row[name] for name in names)
        return hashlib.sha256(repr(values).encode()).hexdigest(), values

    # Each column as the sync selects it (schema's select expressions), decoded by psycopg, not ADBC.
    timezone_name = sql.Literal(organization.checked_timezone())
    query = sql.SQL("SELECT {} FROM {} WHERE organization_id = %s").format(
        sql.SQL(", ").join(c.select_expression(timezone_name) for c in columns), sql.Identifier(spec.name))
    with conn.cursor(row_factory=dict_row) as cur:
        expected = {row["id"]: digest(row) for row in cur.execute(query, (organization.id,))}
    selected = ", ".join(f"`{name}`" for name in [*names, BQ_INSERTED_AT, BQ_UUID])
    versions: dict[int, list[dict]] = {}
    for row in warehouse.client.query(f"SELECT {selected} FROM `{warehouse.dataset_ref}.{spec.name}`").to_arrow(
        create_bqstorage_client=False
    ).to_pylist():
        versions.setdefault(row["id"], []).append(row)

    report.source, report.warehouse = len(expected), len(versions)
    def differences(source_values):
        def of(found: list[dict]) -> list[str]:
            newest = max(found, key=lambda r: (r[BQ_INSERTED_AT], r[BQ_UUID] or ""))
            warehouse_values = digest(newest)[1]
            return [f"{n}: source {s!r:.60} bigquery {w!r:.60}"
                    for n, s, w in zip(names, source_values, warehouse_values) if s != w]
        return of

    for row_id, (_, source_values) in expected.items():
        report.check(f"id {row_id}", versions.get(row_id, []), differences(source_values))
    report.unexpected(f"id {row_id}" for row_id in versions.keys() - expected.keys())
    return report


def compare(url: str, config: WarehouseConfig, tenant_ids: list[int]) -> list[TableReport]:
    reports = []
    with psycopg.connect(url, autocommit=True) as conn:
        for organization_id in tenant_ids:
            organization = get_organization(conn, organization_id)
            warehouse = EmulatorWarehouse(config, organization)
            try:
                reports += [compare_table(conn, warehouse, organization, spec) for spec in TABLES]
            finally:
                warehouse.close()
    return reports


def compare_with_fresh(url: str, config: WarehouseConfig, tenant_ids: list[int], stats: Stats,
                       interrupted: threading.Event) -> list[TableReport]:
    """The Glific layout's oracle: the same source synced again from scratch, in one go and
    without crashes, into datasets of their own (a new destination: its own watermarks), then
    deduplicated; each row of the soaked datasets must equal the fresh one, key by key (every
    column but the send stamps). Lost rows, invented rows, stale copies and leftover versions
    all show as differences."""
    fresh = dataclasses.replace(config, dataset_template="fresh_{organization_id}")
    if final_sync(url, fresh, tenant_ids, stats, interrupted) is None:
        stats.error("the fresh sync never caught up")
    with Source(url) as source:
        for organization_id in tenant_ids:
            dedup_and_propagate(source, fresh, organization_id, stats, full=True)
    reports = []
    with psycopg.connect(url, autocommit=True) as conn:
        for organization_id in tenant_ids:
            organization = get_organization(conn, organization_id)
            soaked, scratch = EmulatorWarehouse(config, organization), EmulatorWarehouse(fresh, organization)
            reports += [_compare_datasets(soaked, scratch, organization, spec) for spec in TABLES]
    return reports


def _compare_datasets(soaked: Warehouse, fresh: Warehouse, organization: Organization,
                      spec: TableSpec) -> TableReport:
    report = TableReport(organization.id, spec.name)
    key = version_key(soaked.config.layout, spec.name)

    def rows(warehouse: Warehouse) -> dict[tuple, list[dict]]:
        if not warehouse.table_exists(spec.name):
            return {}
        found: dict[tuple, list[dict]] = {}
        columns = [f.name for f in warehouse.client.get_table(f"{warehouse.dataset_ref}.{spec.name}").schema
                   if f.name not in (BQ_INSERTED_AT, BQ_UUID)]  # the send stamps differ by design
        selected = ", ".join(f"`{c}`" for c in columns)
        for row in warehouse.client.query(f"SELECT {selected} FROM `{warehouse.dataset_ref}.{spec.name}`").to_arrow(
                create_bqstorage_client=False).to_pylist():
            found.setdefault(tuple(row[k] for k in key), []).append(row)
        return found

    got, expected = rows(soaked), rows(fresh)
    report.source, report.warehouse = len(expected), len(got)
    for k, (want, *_) in expected.items():
        report.check(k, got.get(k, []), lambda versions, want=want: [
            f"{n}: fresh {want[n]!r:.60} soaked {versions[0].get(n)!r:.60}" for n in want if want[n] != versions[0].get(n)])
    report.unexpected(got.keys() - expected.keys())
    return report


# ---------------------------------------------------------------------------------------------
# Set-up and the run.
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def local_stack(tenants: int, seed: int, layout: Layout = Layout.RAW):
    """An embedded PostgreSQL with Glific's schema, seed data and the watermark tables, and the
    BigQuery emulator; yields (database url, warehouse config); stops both after, and removes
    their files at exit."""
    workdir = Path(tempfile.mkdtemp(prefix="glific_bq_soak_"))  # 0700
    # Registered before pgserver's exit handler, so run after it: that handler takes its lock file
    # in XDG_RUNTIME_DIR (this directory) once more.
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.environ["XDG_RUNTIME_DIR"] = str(workdir)  # pgserver's lock and socket dir: private
    import pgserver

    from glific_bq.local.bigquery_emulator import LocalBigQuery
    from glific_bq.local.sample_data import create_schema
    from glific_bq.local.sample_data import seed as seed_data

    server = pgserver.get_server(str(workdir / "pg"), cleanup_mode="stop")
    try:
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            create_schema(conn)
            watermarks.ensure_table(conn)
            seed_data(conn, organizations=tenants, messages_per_org=500, contacts_per_org=80, seed=seed)
        bigquery = LocalBigQuery().start()
        try:
            yield url, WarehouseConfig(organizations="active", project=bigquery.project, emulator_host=bigquery.rest_url,
                                       layout=layout, storage_emulator_host=bigquery.grpc_endpoint)
        finally:
            bigquery.stop()
    finally:
        server.cleanup()


@contextlib.contextmanager
def writer_processes(url: str, count: int, seed: int, deadline: float, rate: float):
    """Start the writers; yields (stop event, result queue, processes); on exit stops and joins them
    (a writer in a late commit commits first)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process running gRPC threads
    stop, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=writer, args=(url, seed * 1000 + i, deadline, rate, stop, results),
                        name=f"writer-{i}", daemon=True)
        for i in range(count)
    ]
    for process in processes:
        process.start()
    try:
        yield stop, results, processes
    finally:
        stop.set()
        for process in processes:
            process.join(LATE_COMMIT_SECONDS[1] + 30)
            if process.is_alive():
                process.terminate()
                process.join(5)


def run(args: argparse.Namespace) -> int:
    """Set up, soak, tear down; the exit code.

    The soak runs in a thread and the main thread only waits for it: during an ADBC call in the
    main thread, ADBC's own SIGINT handler turns Ctrl-C into a cancelled statement (which the sync
    records as a failed table before going on), so Ctrl-C reliably stops only a main thread that
    makes no database calls.
    """
    started = time.monotonic()
    interrupted = threading.Event()
    outcome: list[int] = []
    with local_stack(args.tenants, args.seed, Layout(args.layout)) as (url, config):
        logging.basicConfig(level=logging.WARNING, format="  %(asctime)s %(name)s %(levelname)s %(message)s",
                            force=True)  # after the emulator, which reconfigures logging
        worker = threading.Thread(target=lambda: outcome.append(soak(args, url, config, interrupted, started)),
                                  name="soak", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
        finally:
            interrupted.set()  # after Ctrl-C: every loop ends and the writers stop before the stack goes
            worker.join(120)
    return outcome[0] if outcome else 1


def soak(args: argparse.Namespace, url: str, config: WarehouseConfig, interrupted: threading.Event,
         started: float) -> int:
    """Traffic, syncs and dedup for ``args.minutes``, then settle, catch up, compare and print."""
    rng = random.Random(args.seed)
    sync_stats, dedup_stats, final_stats = Stats(), Stats(), Stats()
    operations: Counter = Counter()
    global TABLES
    with psycopg.connect(url, autocommit=True) as conn:
        tenant_ids = [r[0] for r in conn.execute("SELECT id FROM organizations ORDER BY id")]
        TABLES = tuple(spec for spec in TABLES if reflect_columns(conn, spec.source))  # the local schema's
    print(f"stack ready in {time.monotonic() - started:.0f} s: {len(tenant_ids)} tenants; "
          f"soaking for {args.minutes:g} min", flush=True)

    soak_started = time.monotonic()
    deadline = soak_started + args.minutes * 60
    traffic_over = threading.Event()
    with writer_processes(url, args.writers, args.seed, time.time() + args.minutes * 60, args.rate) as (
        stop_writers, results, processes
    ):
        dedup_thread = threading.Thread(
            target=deduper, args=(url, config, tenant_ids, deadline, random.Random(rng.random()), dedup_stats,
                                  traffic_over), name="dedup", daemon=True)
        dedup_thread.start()
        try:
            syncer(url, config, tenant_ids, deadline, args.crash_rate, rng, sync_stats, interrupted,
                   writers_ok=lambda: not any(p.exitcode for p in processes))
        finally:
            traffic_over.set()
            stop_writers.set()
            dedup_thread.join(300)
        soak_seconds = time.monotonic() - soak_started
    writer_failures = [f"{p.name} exited with {p.exitcode}" for p in processes if p.exitcode != 0]
    while not results.empty():
        operations.update(results.get())
    if interrupted.is_set():
        return 130

    print(f"soak done after {soak_seconds:.0f} s; settling (open transactions, future stamps)…", flush=True)
    waited = settle(url, SyncOptions().horizon_seconds, interrupted)
    rounds = final_sync(url, config, tenant_ids, final_stats, interrupted)
    if interrupted.is_set():
        return 130
    with Source(url) as source:
        for organization_id in tenant_ids:
            try:
                dedup_and_propagate(source, config, organization_id, final_stats, full=True)
            except Exception as error:
                final_stats.error(f"final dedup, organization {organization_id}: {type(error).__name__}: {error}")
    if config.layout is Layout.RAW:
        reports = compare(url, config, tenant_ids)
    else:
        reports = compare_with_fresh(url, config, tenant_ids, final_stats, interrupted)

    print_summary(args, time.monotonic() - started, soak_seconds, waited, rounds, operations, sync_stats,
                  dedup_stats, final_stats, writer_failures, reports)
    healthy = not writer_failures and rounds is not None and not final_stats.errors
    return 0 if healthy and not any(r.bad for r in reports) else 1


def print_summary(args, total_seconds, soak_seconds, waited, rounds, operations, sync_stats, dedup_stats,
                  final_stats, writer_failures, reports) -> None:
    ops, sync, dedup = operations, sync_stats.counts, dedup_stats.counts
    print()
    print(f"== soak: {args.minutes:g} min, {args.tenants} tenants, {args.writers} writers, seed {args.seed} ==")
    print(f"duration: {total_seconds:.0f} s in total, {soak_seconds:.0f} s of traffic, {waited:.0f} s settling")
    print(f"operations: {ops['inserts']} inserts, {ops['updates']} updates ({ops['bulk_updates']} bulk), "
          f"{ops['deletes']} deletes, {ops['late_commits']} late commits, {ops['future_stamps']} future stamps, "
          f"{ops['aborted']} aborted")
    print(f"sync: {sync['syncs']} tenant syncs, {sync['rows_inserted']} rows inserted, {sync['rows_updated']} "
          f"rows updated, {sync['rows_set_aside']} set aside, {sync['errors']} failed, {sync['crashes']} crashes "
          f"({', '.join(f'{n} {k[6:]}' for k, n in sorted(sync.items()) if k.startswith('crash '))})")
    print(f"dedup: {dedup['dedups']} tenant passes, {dedup['versions_deleted']} versions deleted, "
          f"{dedup['deletes_propagated']} deletes propagated, {dedup['errors']} errors")
    print(f"final: caught up in {rounds if rounds is not None else f'more than {MAX_FINAL_ROUNDS}'} round(s), "
          f"{final_stats.counts['versions_deleted']} versions deleted, "
          f"{final_stats.counts['deletes_propagated']} deletes propagated")
    for label, errors in (("sync", sync_stats.errors), ("dedup", dedup_stats.errors),
                          ("final", final_stats.errors), ("writers", writer_failures)):
        for error in errors:
            print(f"  {label} error: {error}")
    print()
    header = f"{'tenant':>6} {'table':<18} {'source':>7} {'bq ids':>7} {'missing':>8} {'extra':>6} " \
             f"{'differing':>9} {'duplicated':>10}"
    print(header)
    line = "{:>6} {:<18} {:>7} {:>7} {:>8} {:>6} {:>9} {:>10}"
    for r in reports:
        print(line.format(r.organization_id, r.table, r.source, r.warehouse, r.missing, r.extra, r.differing,
                          r.duplicated))
        for example in r.examples[:EXAMPLES]:
            print(f"{'':>8}{example}")
    print(line.format("all", "", *(sum(getattr(r, k) for r in reports) for k in (
        "source", "warehouse", "missing", "extra", "differing", "duplicated"))))
    bad = sum(r.bad for r in reports)
    print(f"\nresult: {'OK' if bad == 0 else 'FAILED'} — missing {sum(r.missing for r in reports)}, "
          f"extra {sum(r.extra for r in reports)}, differing {sum(r.differing for r in reports)}, "
          f"duplicated {sum(r.duplicated for r in reports)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long the traffic runs")
    parser.add_argument("--tenants", type=int, default=3, help="organizations (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--writers", type=int, default=3, help="writer processes (default 3)")
    parser.add_argument("--rate", type=float, default=8.0, help="transactions per second per writer (default 8)")
    parser.add_argument("--crash-rate", type=float, default=0.15,
                        help="share of tenant syncs set to crash (default 0.15)")
    parser.add_argument("--layout", choices=[layout.value for layout in Layout], default=Layout.RAW.value,
                        help="raw (default: compared with the source row by row) or glific (compared with a "
                             "from-scratch sync of the same source)")
    args = parser.parse_args(argv)
    global TABLES
    TABLES = registry.tables_for(Layout(args.layout))
    if args.seed is None:
        args.seed = random.randrange(10_000)
    warnings.filterwarnings("ignore", "Arrow output on a DB-API result")  # the emulator's DuckDB, not ours
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds like Ctrl-C: everything cleaned up
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
