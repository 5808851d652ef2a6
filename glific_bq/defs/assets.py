"""One asset per synced table, ``bigquery/<table>``, partitioned by tenant, downstream of the
PostgreSQL table it copies (``postgres/<table>``, an external asset)."""

import dagster as dg

from glific_bq.registry import TABLES, TableSpec
from glific_bq.sync import SyncOptions, TableSync, sync_table
from glific_bq.tenants import get_organization

from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres


def source_spec(spec: TableSpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["postgres", spec.name],
        description=f"Glific's {spec.name} table in PostgreSQL (all organizations).",
        group_name="postgres",
        kinds={"postgres"},
    )


def materialization(key: dg.AssetKey, result: TableSync, dataset: str) -> dg.AssetMaterialization:
    """What the UI shows for one tenant's sync: row counts, watermarks, lag, as numbers to plot."""
    metadata: dict[str, object] = {
        "dataset": dataset,
        "rows_inserted": dg.MetadataValue.int(result.inserted),
        "rows_updated": dg.MetadataValue.int(result.updated),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "lag_seconds": dg.MetadataValue.float(result.lag_seconds or 0.0),
    }
    for name, watermark in (("before", result.before), ("after", result.after)):
        if watermark:
            metadata[f"table_id_{name}"] = dg.MetadataValue.int(watermark.table_id)
            metadata[f"last_updated_at_{name}"] = watermark.last_updated_at.isoformat()
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))
    return dg.AssetMaterialization(asset_key=key, partition=str(result.organization_id), metadata=metadata)


def table_asset(spec: TableSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=["bigquery", spec.name],
        deps=[source_spec(spec)],
        partitions_def=tenants,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bigquery",
        kinds={"bigquery"},
        description=f"Glific's {spec.name}, one dataset per organization, synced incrementally ({spec.mode.value}).",
        output_required=False,
        pool="bigquery_sync",
    )
    def _sync(context: dg.AssetExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
        failures = []
        with postgres.source() as source:
            for key in context.partition_keys:
                organization = get_organization(source.control, int(key))
                with bigquery.warehouse(organization) as warehouse:
                    try:
                        result = sync_table(source, warehouse, organization, spec, SyncOptions())
                    except Exception as error:  # one tenant's failure does not stop the others
                        context.log.exception(f"organization {key}: {spec.name} failed")
                        failures.append(f"organization {key}: {type(error).__name__}: {error}")
                        continue
                    if result.status in ("missing", "failed"):
                        failures.append(f"organization {key}: {result.message}")
                        continue
                    context.log.info(f"organization {key}: {result.as_metadata()}")
                    context.log_event(materialization(context.asset_key, result, warehouse.dataset_ref))
        if failures:
            raise dg.Failure(f"{spec.name}: {len(failures)} tenant(s) failed", metadata={"failures": "\n".join(failures)})
        return None

    return _sync


source_assets = [source_spec(spec) for spec in TABLES]
table_assets = [table_asset(spec) for spec in TABLES]
