"""The minute sync: one run per tick syncs every (tenant, table) with work to do.

A Dagster run costs about 5 s and 290 MB as its own process, so a run per tenant per minute
cannot keep up with hundreds of organizations on one machine. One run per tick instead plans
with one cheap query per table (``glific_bq.plan``) and syncs only the dirty pairs, recording a
materialization of ``bigquery/<table>`` for each tenant it synced.
"""

import logging
import time
from datetime import timedelta

import dagster as dg

from glific_bq import alerts, horizon, redact, tick, upkeep, watermarks
from glific_bq.registry import TABLES, table
from glific_bq.roster import select_tenants
from glific_bq.sync import sync_table
from glific_bq.tick import TickOptions

from .assets import materialization, sync_partitions
from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres

log = logging.getLogger(__name__)


class TickConfig(dg.Config):
    """How the tick spreads over processes: ``shards`` (default ``GLIFIC_BQ_TICK_SHARDS``, else
    chosen per tick from the dirty pairs and the cores, ``tick.shards_for``).
    With one shard this op syncs everything itself; with more, each shard of tenants (by
    organization id) is a ``sync_tick_shard`` step, which the multiprocess executor runs in
    parallel (and the Kubernetes or Celery executor on other machines)."""

    shards: int | None = None


@dg.op(
    out=dg.DynamicOut(list, is_required=False),
    description="Plan the (tenant, table) pairs with rows beyond their watermarks, and sync them "
    "(or hand each shard of tenants to a sync_tick_shard step).",
)
def sync_dirty_tenants(context: dg.OpExecutionContext, config: TickConfig, postgres: GlificPostgres,
                       bigquery: GlificBigQuery):
    options = TickOptions.from_env()
    with postgres.source() as source:
        unprotected = horizon.late_commit_warning(source.control)
        roster = select_tenants(source.control, bigquery.config())
        dirty = tick.plan_tick(source, roster.destinations, TABLES)
    if unprotected:
        context.log.warning(unprotected)
        context.instance.add_run_tags(context.run_id, {"glific_bq/late_commits": "unprotected"})
    work = [(str(org_id), spec) for org_id, specs in dirty.items() for spec in specs]
    shards = tick.shards_for(len(work), config.shards or options.shards)
    keys = sorted({key for key, _ in work}, key=int)
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    if set(keys) - known:  # a tenant found before the discovery sensor's next tick
        context.instance.add_dynamic_partitions(tenants.name, [k for k in keys if k not in known])
    context.log.info(f"{len(work)} tenant-table pair(s) to sync in {shards} shard(s)")
    if shards > 1:
        for shard, part in tick.split_into_shards(dirty, shards).items():
            yield dg.DynamicOutput([(org_id, [spec.name for spec in specs]) for org_id, specs in part.items()],
                                   mapping_key=f"shard_{shard}")
        return
    cpu = time.process_time()
    results = sync_partitions(context, postgres, bigquery, work, roster)
    context.log.info(
        f"synced {len(results)} tenant-table pair(s): {sum(r.inserted for r in results)} rows inserted, "
        f"{sum(r.updated for r in results)} updated; {time.process_time() - cpu:.1f} CPU s"
    )


@dg.op(out={}, description="Sync one shard of the tick's tenants (several tenants at once).")
def sync_tick_shard(context: dg.OpExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery,
                    shard: list):
    work = [(str(org_id), table(name)) for org_id, names in shard for name in names]
    cpu = time.process_time()
    results = sync_partitions(context, postgres, bigquery, work)
    context.log.info(f"synced {len(results)} tenant-table pair(s) of {len(shard)} tenant(s); "
                     f"{time.process_time() - cpu:.1f} CPU s")


#: A tick that needs more than one process: each step (the plan, each shard) forked from a
#: server that imported glific_bq once, instead of spawned afresh (about 4.5 s of CPU each to
#: import dagster, the BigQuery clients and ADBC, and load the definitions; docs/scale.md).
MULTIPROCESS = {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["glific_bq.definitions"]}}}}
#: A tick one process carries: no step process at all (a quiet tick: 0.5 s instead of 3.7).
IN_PROCESS: dict = {"in_process": {}}


def tick_run_config(postgres: GlificPostgres, bigquery: GlificBigQuery) -> dict:
    """The run config of the next tick: in this one process when it fits one shard (the dirty
    pairs planned now: at most ``tick.PAIRS_PER_SHARD`` of them are one shard whatever the
    cores of the machine the run lands on, ``tick.shards_for``), else on the multiprocess executor.
    What the schedule's runs are given; a run launched by hand runs on the multiprocess executor.
    A job given another executor (``dagster_k8s.k8s_job_executor``…) gets no execution config.
    If Glific's database cannot be read here, the run is still requested (it fails, and says why)."""
    if sync_job.executor_def is not dg.multi_or_in_process_executor:  # another executor (Kubernetes,
        return {}  # Celery…) given to the job: its own configuration
    configured = TickOptions.from_env().shards
    try:
        with postgres.source() as source:
            roster = select_tenants(source.control, bigquery.config())
            pairs = sum(len(specs) for specs in tick.plan_tick(source, roster.destinations, TABLES).values())
    except Exception as error:  # the tick's op reads it again, and fails with its reason
        log.warning("could not plan the next tick (%s): it runs on the multiprocess executor", redact.describe(error))
        pairs = None
    one_shard = pairs is not None and tick.shards_for(pairs, configured, available=tick.MAX_SHARDS) == 1
    return {"execution": {"config": IN_PROCESS if one_shard else MULTIPROCESS}}


@dg.job(description="Sync every tenant and table that has changes (what the minute schedule runs: in one "
        "process, or each step in a process of its own for a tick of several shards).")
def sync_job():
    sync_dirty_tenants().map(sync_tick_shard)


def synced_tenant(roster, organization_id: int):
    """The roster's tenant ``organization_id``, or a failure of the run saying why it is not synced."""
    tenant = roster.tenant(organization_id)
    if tenant is None:
        why = roster.why_not(organization_id)
        raise dg.Failure(f"organization {organization_id} is not synced: "
                         + (why.reason if why else "no such organization"))
    return tenant


class ResyncConfig(dg.Config):
    """Re-send one tenant-table from scratch: its watermark goes back to the beginning and every
    row is sent again. Rows already in BigQuery stay there as older versions (duplicates) until
    the next dedup run. Set ``confirm`` to true to proceed."""

    organization_id: int
    table: str
    confirm: bool = False


@dg.op(
    out={},
    description="WARNING: resets one tenant-table's watermark and re-sends all its rows; duplicates "
    "remain in BigQuery until the next dedup. Needs confirm: true.",
)
def resync_tenant_table(context: dg.OpExecutionContext, config: ResyncConfig, postgres: GlificPostgres, bigquery: GlificBigQuery):
    spec = table(config.table)
    if not config.confirm:
        raise dg.Failure(
            f"Not confirmed: re-syncing {spec.name} of organization {config.organization_id} re-sends every "
            "row; the copies already in BigQuery stay as duplicates until the next dedup. "
            "Run again with confirm: true."
        )
    with postgres.source() as source:
        roster = select_tenants(source.control, bigquery.config())
        tenant = synced_tenant(roster, config.organization_id)
        # Reset and re-send under one hold of the tenant-table's lock (the sync takes it again on
        # this same session): no tick can move the watermark in between, or make the re-send "busy".
        with watermarks.exclusive(source.control, tenant.id, spec.name) as acquired:
            if not acquired:
                raise dg.Failure(f"another run is syncing {spec.name} of organization {tenant.id}: nothing reset; "
                                 "run again in a minute")
            watermarks.reset(source.control, tenant.id, spec.name, tenant.destination)
            context.log.warning(f"watermark of organization {tenant.id}, {spec.name} reset to the beginning")
            warehouse = bigquery.open_warehouse(tenant.organization)
            try:
                result = sync_table(source, warehouse, tenant.organization, spec)
            except Exception as error:
                raise dg.Failure(f"organization {tenant.id}, {spec.name}: re-send failed (it resumes at the next "
                                 f"tick from where it stopped): {redact.describe(error)}") from None
            finally:
                warehouse.close()
    if result.status != "synced":
        raise dg.Failure(f"organization {tenant.id}, {spec.name}: {result.status}: {result.message}")
    context.log_event(materialization(result))


@dg.job(description="Re-sync one tenant-table from scratch (resets its watermark; see the op's warning).")
def resync_job():
    resync_tenant_table()


class DedupConfig(dg.Config):
    """Options of a dedup run (defaults: every active tenant, incremental, no buffer window)."""

    organization_id: int | None = None
    buffer_minutes: int = 0  # only for rows written by legacy streaming: DML never touches newer rows
    full: bool = False  # examine every id, not only those changed since the last pass
    #: "<organization id>/<table>" pairs whose mass delete (deletes.MassDeleteRefused) is confirmed
    confirm_deletes: list[str] = []

    def confirmed(self) -> set[tuple[int, str]]:
        pairs = set()
        for pair in self.confirm_deletes:
            organization, _, table = pair.partition("/")
            if not organization.strip().isdigit() or not table.strip():
                raise dg.Failure(f"confirm_deletes: {pair!r} is not <organization id>/<table>")
            pairs.add((int(organization), table.strip()))
        return pairs


@dg.op(out={}, description="Delete older row versions (keep the newest per id) and propagate deletes, per tenant; "
       "in history mode (GLIFIC_BQ_VERSIONS=history) refresh the clean tables from their history instead.")
def dedup_tenants(context: dg.OpExecutionContext, config: DedupConfig, postgres: GlificPostgres, bigquery: GlificBigQuery):
    with postgres.source() as source:
        # Only tenants: an organization that stopped being synced (switched off, suspended,
        # deleted) gets no dedup pass and no delete propagation: its leaving is not "all its rows
        # were deleted".
        roster = select_tenants(source.control, bigquery.config())
        organizations = [t.organization for t in roster.tenants]
        if config.organization_id is not None:
            organizations = [o for o in organizations if o.id == config.organization_id]
            if not organizations:
                why = roster.why_not(config.organization_id)
                raise dg.Failure(f"organization {config.organization_id} is not synced"
                                 + (f": {why.reason}" if why else ": no such organization"))
        results = upkeep.dedup_tenants(source, bigquery.open_warehouse, organizations, TABLES, full=config.full,
                                       buffer_window=timedelta(minutes=config.buffer_minutes),
                                       confirm_deletes=config.confirmed())
    for result in results:
        if result.error is None:
            context.log_event(dg.AssetObservation(
                asset_key=["bigquery", result.table], partition=str(result.organization_id), metadata=result.metadata,
            ))
    refused = [r.error for r in results if r.metadata.get("deletes_refused")]
    if refused:
        alerts.announce(context.log, "[glific_bq] mass delete REFUSED, nothing deleted:\n" + "\n".join(refused))
    failures = [r.describe_failure() for r in results if r.error]
    if failures:
        raise dg.Failure(f"dedup failed for {len(failures)} tenant-table(s)",
                         metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))})


@dg.job(description="Keep exactly the newest version of each row in every tenant dataset (what the 90-minute schedule "
        "runs; in history mode the clean-table refresh, launched by hand from here too).")
def dedup_job():
    dedup_tenants()
