"""``repartition_job``: give one organization's tables Glific's partitioning, from the UI (a thin
layer over ``glific_bq.repartition``; docs/repartition.md)."""

import dagster as dg

from glific_bq import redact
from glific_bq.repartition import repartition_tenant, tables_to_repartition, warehouse_config
from glific_bq.roster import select_tenants
from glific_bq.warehouse import Warehouse

from .jobs import synced_tenant
from .resources import GlificBigQuery, GlificPostgres


class RepartitionConfig(dg.Config):
    """Which tables: one organization's ``table``, or with ``all_tables`` every table Glific
    partitions. Tables already partitioned, or that Glific does not partition, are reported and
    left alone; a run that died is resumed where it stopped."""

    organization_id: int
    table: str | None = None
    all_tables: bool = False


@dg.op(out={}, description="Repartition one organization's unpartitioned tables as Glific creates them today "
       "(copy, catch up, swap under the tenant-table's lock); the old tables are kept.")
def repartition_tenant_tables(context: dg.OpExecutionContext, config: RepartitionConfig, postgres: GlificPostgres,
                              bigquery: GlificBigQuery):
    try:
        specs = tables_to_repartition(bigquery.config().layout, config.table, config.all_tables)
    except (ValueError, KeyError) as error:
        raise dg.Failure(str(error)) from None
    with postgres.source() as source:
        roster = select_tenants(source.control, bigquery.config())
        tenant = synced_tenant(roster, config.organization_id)
        try:
            warehouse = Warehouse(warehouse_config(bigquery.config()), tenant.organization)
        except Exception as error:
            raise dg.Failure(f"organization {tenant.id}: {redact.describe(error)}") from None
        with warehouse:
            results = repartition_tenant(source.control, warehouse, specs)
    for result in results:
        context.log.info(f"{result.table}: {result.status}" + (f": {result.message}" if result.message else ""))
        context.log_event(dg.AssetObservation(asset_key=dg.AssetKey(["bigquery", result.table]),
                                              partition=tenant.organization.partition_key,
                                              metadata={"repartition": result.as_metadata()}))
    unfinished = [r for r in results if r.status in ("failed", "busy") or (r.status == "missing" and config.table)]
    if unfinished:
        raise dg.Failure("; ".join(f"{r.table}: {r.status}: {r.message}" for r in unfinished)
                         + " (run again to resume: finished steps are not redone)")


@dg.job(description="Repartition one organization's unpartitioned tables as Glific creates them today "
        "(docs/repartition.md).")
def repartition_job():
    repartition_tenant_tables()
