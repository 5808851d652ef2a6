"""The minute sync: one run per tick syncs every (tenant, table) with work to do.

A Dagster run costs about 5 s and 290 MB as its own process, so a run per tenant per minute
cannot keep up with hundreds of organizations on one machine. One run per tick instead plans
with one cheap query per table (``glific_bq.plan``) and syncs only the dirty pairs, recording a
materialization of ``bigquery/<table>`` for each tenant it synced.
"""

import dagster as dg

from glific_bq import plan, watermarks
from glific_bq.registry import TABLES, table

from .assets import sync_partitions
from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres


@dg.op(out={}, description="Plan the (tenant, table) pairs with rows beyond their watermarks, and sync them.")
def sync_dirty_tenants(context: dg.OpExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
    with postgres.source() as source:
        dirty = plan.dirty(source.control, TABLES)
    work = [(str(org_id), table(name)) for name, org_ids in dirty.items() for org_id in org_ids]
    keys = sorted({key for key, _ in work}, key=int)
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    if set(keys) - known:  # a tenant found before the discovery sensor's next tick
        context.instance.add_dynamic_partitions(tenants.name, [k for k in keys if k not in known])
    context.log.info(f"{len(work)} tenant-table pair(s) to sync: {dirty}")
    results = sync_partitions(context, postgres, bigquery, work)
    context.log.info(
        f"synced {len(results)} tenant-table pair(s): {sum(r.inserted for r in results)} rows inserted, "
        f"{sum(r.updated for r in results)} updated"
    )


@dg.job(description="Sync every tenant and table that has changes (what the minute schedule runs).")
def sync_job():
    sync_dirty_tenants()


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
        watermarks.reset(source.control, config.organization_id, spec.name)
    context.log.warning(f"watermark of organization {config.organization_id}, {spec.name} reset to the beginning")
    sync_partitions(context, postgres, bigquery, [(str(config.organization_id), spec)])


@dg.job(description="Re-sync one tenant-table from scratch (resets its watermark; see the op's warning).")
def resync_job():
    resync_tenant_table()
