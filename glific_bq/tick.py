"""The minute tick: plan the dirty (tenant, table) pairs, then sync the tenants in parallel.

A tick is mostly waiting: on BigQuery (50–150 ms a call from anywhere but the same rack) and on
PostgreSQL. Tenants are independent (own dataset, own credentials, own advisory locks), so a
bounded pool of worker threads syncs several at once, each with its own source connections;
the extract releases the GIL in ADBC and protobuf encoding is vectorized, so threads beat
processes here at a fraction of the memory (measured by ``bench/bench_tick_latency.py``).
``workers=1`` is the original behaviour: one tenant after another, in the calling thread.

Failure isolation is ``sync_tenant``'s: one tenant's trouble never stops another. Results go
back to the calling thread (``on_result``), where the Dagster layer logs and records them:
Dagster's context is not for worker threads.

Beyond one process, the tenants split into ``shards`` by organization id (``shard_of``); the
Dagster layer runs one op per shard (``defs/jobs.py``), in parallel under the multiprocess
executor, or across machines under the Kubernetes or Celery executors.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from glific_bq import horizon, lookups, notices, plan, platform, redact, watermarks
from glific_bq.registry import TABLES, Scope, TableSpec
from glific_bq.roster import Roster, select_tenants
from glific_bq.source import Source
from glific_bq.sync import SyncOptions, TableSync, record_failure, sync_tenant
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

log = logging.getLogger(__name__)

#: Environment variables behind ``TickOptions.from_env``.
WORKERS_ENV = "GLIFIC_BQ_TICK_WORKERS"
SHARDS_ENV = "GLIFIC_BQ_TICK_SHARDS"

#: Tenants synced at once per process. The work is waiting on the network: 8 keeps two cores
#: busy against a BigQuery 100 ms away (bench/bench_tick_latency.py) while every process stays
#: far below BigQuery's limits (see README, "Scale and BigQuery limits").
DEFAULT_WORKERS = 8
#: More than this many threads per process buys nothing on the machines we run on, and each one
#: holds two PostgreSQL connections and one Storage Write connection.
MAX_WORKERS = 64
#: Processes a tick may spread over.
MAX_SHARDS = 1_024
#: Dirty pairs one process syncs with room to spare within the minute (bench/bench_tick_scale.py:
#: about 11 ms of CPU a pair, 16 s, beside PostgreSQL's); above this, ``shards`` left to choose
#: spreads the tick over the machine's cores. A shard is a step process of its own (forked from a
#: preloaded server: about 0.5 s of CPU, 290 MB; see ``defs/jobs.tick_run_config``): not worth it below.
PAIRS_PER_SHARD = 1_500

#: How long one tenant's horizon serves the next tenants of a tick (``SyncOptions.horizon_reuse_seconds``):
#: one ``pg_stat_activity`` read every 3 s instead of one per tenant (1,000 a minute at 1,000
#: organizations); the update cursor stays at most 3 s further behind.
HORIZON_REUSE_SECONDS = 3.0

#: ``(organization id, tables)`` for each tenant with work to do.
TenantWork = dict[int, list[TableSpec]]


@dataclass(frozen=True)
class TickOptions:
    """Knobs of one tick.

    Attributes:
        workers: tenants synced at once in this process (1: one after another, as before).
            Each worker holds its own source connections (two PostgreSQL sessions).
        shards: processes (Dagster ops) the tenants are split into by organization id;
            1 keeps the whole tick in one op; None (the default, ``auto``) chooses per tick
            (``shards_for``): one process per ``PAIRS_PER_SHARD`` dirty pairs, at most one per core.
        sync: options of each (tenant, table) sync (by default, tenants share a horizon for
            ``HORIZON_REUSE_SECONDS``).
    """

    workers: int = DEFAULT_WORKERS
    shards: int | None = None
    sync: SyncOptions = field(default_factory=lambda: SyncOptions(horizon_reuse_seconds=HORIZON_REUSE_SECONDS))

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"tick workers must be between 1 and {MAX_WORKERS}, got {self.workers!r}")
        if self.shards is not None and not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"tick shards must be between 1 and {MAX_SHARDS}, got {self.shards!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TickOptions:
        """``GLIFIC_BQ_TICK_WORKERS`` and ``GLIFIC_BQ_TICK_SHARDS`` (a number, or ``auto``),
        defaults where unset."""
        env = os.environ if environ is None else environ
        values = {}
        for name, var in (("workers", WORKERS_ENV), ("shards", SHARDS_ENV)):
            if env.get(var) and env[var].strip().lower() != "auto":
                try:
                    values[name] = int(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be a whole number, got {env[var]!r}") from None
        return cls(**values)


@dataclass
class Tick:
    """What one tick (or one shard of it) did."""

    results: list[TableSync]
    seconds: float
    pairs_planned: int
    roster: Roster | None = None


def plan_tick(source: Source, tenants: Mapping[int, str], tables: Sequence[TableSpec] = TABLES) -> TenantWork:
    """The tenants (``tenants``: organization id -> destination, ``Roster.destinations``) with rows
    beyond their watermarks, and which of their tables (``glific_bq.plan``: one query per table,
    whatever the number of tenants), and for the platform organization alone, its own
    cross-organization tables (``glific_bq.platform``)."""
    by_name = {spec.name: spec for spec in tables}
    work: TenantWork = defaultdict(list)
    everyones = tuple(spec for spec in tables if spec.scope is Scope.TENANT)  # never the platform's here
    for name, organization_ids in plan.dirty(source.control, everyones, tenants).items():
        for organization_id in organization_ids:
            work[organization_id].append(by_name[name])
    for organization_id, specs in platform.work(source.control, tenants).items():
        work[organization_id].extend(specs)
    return dict(sorted(work.items()))


def cores() -> int:
    """The cores this process may run on (a container's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shards_for(pairs: int, shards: int | None = None, available: int | None = None) -> int:
    """How many processes a tick of ``pairs`` dirty pairs spreads over: ``shards`` when
    configured, else one per ``PAIRS_PER_SHARD`` pairs, at most one per core (``available``)."""
    if shards is not None:
        return shards
    return max(1, min(available or cores(), -(-pairs // PAIRS_PER_SHARD)))


def shard_of(organization_id: int, shards: int) -> int:
    """The shard of a tenant: stable across ticks, so a tenant's syncs stay in one process."""
    return organization_id % shards


def split_into_shards(work: TenantWork, shards: int) -> dict[int, TenantWork]:
    """``work`` by shard; shards without work are left out."""
    split: dict[int, TenantWork] = defaultdict(dict)
    for organization_id, specs in work.items():
        split[shard_of(organization_id, shards)][organization_id] = specs
    return dict(sorted(split.items()))


class SourcePool:
    """Source connections (psycopg control + ADBC extract) shared by the workers: one per worker
    at most, opened on first need, closed with the pool. A ``Source`` pairs two drivers, so it is
    pooled whole rather than through psycopg_pool. A source left broken by a failure is dropped."""

    def __init__(self, database_url: str, size: int, shapes: dict | None = None) -> None:
        self.database_url = database_url
        self.size = size
        self.shapes = shapes
        self._idle: queue.LifoQueue[Source] = queue.LifoQueue()
        self._opened: list[Source] = []
        self._lock = threading.Lock()

    @contextmanager
    def source(self) -> Iterator[Source]:
        try:
            source = self._idle.get_nowait()
        except queue.Empty:
            source = Source(self.database_url)
            source.shapes = self.shapes
            with self._lock:
                self._opened.append(source)
        try:
            yield source
        finally:
            if source.control.closed or source.control.broken:
                source.close()
            else:
                self._idle.put(source)

    def close(self) -> None:
        with self._lock:
            for source in self._opened:
                source.close()
            self._opened.clear()


def sync_tenants(
    database_url: str,
    open_warehouse: Callable[[Organization], Warehouse],
    work: TenantWork,
    options: TickOptions = TickOptions(),
    on_result: Callable[[TableSync], None] = lambda result: None,
    *,
    roster: Roster | None = None,
) -> list[TableSync]:
    """Sync each tenant's tables, ``options.workers`` tenants at once; never raises for a
    tenant's own trouble. ``on_result`` is called in the calling thread for every pair, as its
    tenant completes.

    With a ``roster`` (every caller but tests of the sync itself), an organization it does not
    list as a tenant is not synced: each of its pairs comes back ``not_synced`` with the reason.
    """
    results: list[TableSync] = []

    def report(tenant_results: list[TableSync]) -> None:
        for result in tenant_results:
            results.append(result)
            on_result(result)

    if roster is not None:
        refused = {org: specs for org, specs in work.items() if roster.tenant(org) is None}
        for organization_id, specs in refused.items():
            why = roster.why_not(organization_id)
            reason = why.reason if why else "no such organization"
            report([TableSync(organization_id, spec.name, status="not_synced", message=f"not synced: {reason}")
                    for spec in specs])
        work = {org: specs for org, specs in work.items() if org not in refused}

    def destination_of(organization_id: int) -> str | None:
        tenant = roster.tenant(organization_id) if roster is not None else None
        return tenant.destination if tenant else None

    shapes: dict = {}  # the tick's table shapes, read from the catalog once per table (Source.shapes)
    lookups.checks.expect(work)  # the tenants' looked-up values are checked together, at the first need
    if options.workers == 1 or len(work) <= 1:
        with Source(database_url) as source:
            source.shapes = shapes
            for organization_id, specs in work.items():
                report(sync_tenant(source, open_warehouse, organization_id, specs, options.sync,
                                        destination=destination_of(organization_id)))
        return results

    pool = SourcePool(database_url, options.workers, shapes)

    def one_tenant(organization_id: int, specs: list[TableSpec]) -> list[TableSync]:
        try:
            with pool.source() as source:
                return sync_tenant(source, open_warehouse, organization_id, specs, options.sync,
                                   destination=destination_of(organization_id))
        except Exception as error:  # no source connection: this tenant fails, alone, recorded and redacted
            message = redact.describe(error)
            try:
                with Source(database_url) as source:
                    return [record_failure(source, organization_id, spec, destination_of(organization_id), message)
                            for spec in specs]
            except Exception:  # not even a connection to record it with: the others go on
                log.error("organization %s: %s (not recorded: no database connection)", organization_id, message)
                return [TableSync(organization_id, spec.name, status="failed", message=message) for spec in specs]

    try:
        with ThreadPoolExecutor(options.workers, thread_name_prefix="glific-bq-tenant") as executor:
            pending: set[Future] = {executor.submit(one_tenant, org, specs) for org, specs in work.items()}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    report(future.result())
    finally:
        pool.close()
    return results


def run_tick(
    database_url: str,
    config: WarehouseConfig,
    options: TickOptions = TickOptions(),
    tables: Sequence[TableSpec] = TABLES,
    on_result: Callable[[TableSync], None] = lambda result: None,
    open_warehouse: Callable[[Organization], Warehouse] | None = None,
) -> Tick:
    """One whole tick in this process: the roster (who is synced, from Glific's control plane),
    the plan, every dirty tenant synced (all shards), then the NGOs told (``tell_organizations``)."""
    started = time.monotonic()
    open_warehouse = open_warehouse or (lambda organization: Warehouse(config, organization))
    with Source(database_url) as source:
        watermarks.ensure_table(source.control)
        unprotected = horizon.late_commit_warning(source.control)
        if unprotected:
            log.warning(unprotected)
        roster = select_tenants(source.control, config)
        work = plan_tick(source, roster.destinations, tables)
    results = sync_tenants(database_url, open_warehouse, work, options, on_result, roster=roster)
    with Source(database_url) as source:
        tell_organizations(source, roster, results)
    return Tick(results, time.monotonic() - started, sum(len(specs) for specs in work.values()), roster)


def tell_organizations(source: Source, roster: Roster, results: Sequence[TableSync]) -> tuple[list[int], list[int]]:
    """Tell each NGO, in Glific's own notifications, when its sync stops for a reason only it can
    fix (a key that cannot be used, a missing permission, its project or dataset gone), and when it
    works again (``glific_bq.notices``). Returns (told of a failure, told of a recovery)."""
    failed = {n.id: notices.KEY_UNUSABLE for n in roster.unusable_keys}
    working = set()
    for result in results:
        kind = notices.kind_of(result.message) if result.status == "failed" else None
        if kind:
            failed.setdefault(result.organization_id, kind)
        elif result.status == "synced":
            working.add(result.organization_id)
    return notices.report(source.control, failed, working)


__all__ = [
    "DEFAULT_WORKERS",
    "SHARDS_ENV",
    "WORKERS_ENV",
    "SourcePool",
    "Tick",
    "TickOptions",
    "TenantWork",
    "plan_tick",
    "run_tick",
    "shard_of",
    "shards_for",
    "split_into_shards",
    "sync_tenants",
    "tell_organizations",
]
