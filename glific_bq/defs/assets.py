"""One asset per synced table, ``bigquery/<table>``, partitioned by tenant, downstream of the
PostgreSQL table it copies (``postgres/<table>``, an external asset)."""

from collections import defaultdict
from collections.abc import Iterable

import dagster as dg

from glific_bq.registry import TABLES, TableSpec
from glific_bq.roster import Roster, select_tenants
from glific_bq.sync import TableSync
from glific_bq.tick import TickOptions, sync_tenants, tell_organizations

from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres


def source_spec(spec: TableSpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["postgres", spec.name],
        description=f"Glific's {spec.name} table in PostgreSQL (all organizations).",
        group_name="postgres",
        kinds={"postgres"},
    )


def table_key(spec: TableSpec) -> dg.AssetKey:
    return dg.AssetKey(["bigquery", spec.name])


def materialization(result: TableSync) -> dg.AssetMaterialization:
    """What the UI shows for one tenant's sync: row counts, watermarks and lag, as numbers to plot."""
    metadata: dict[str, object] = {
        "dataset": result.dataset,
        "rows_inserted": dg.MetadataValue.int(result.inserted),
        "rows_updated": dg.MetadataValue.int(result.updated),
        "rows_set_aside": dg.MetadataValue.int(result.set_aside),
        "rows_refreshed": dg.MetadataValue.int(result.refreshed),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "lag_seconds": dg.MetadataValue.float(result.lag_seconds or 0.0),
    }
    for name, watermark in (("before", result.before), ("after", result.after)):
        if watermark:
            metadata[f"table_id_{name}"] = dg.MetadataValue.int(watermark.table_id)
            metadata[f"last_updated_at_{name}"] = watermark.last_updated_at.isoformat()
    after = result.after
    summary = (
        f"**{result.inserted:,}** rows inserted, **{result.updated:,}** updated"
        + (f", **{result.set_aside:,}** set aside (refused by BigQuery)" if result.set_aside else "")
        + (f", **{result.refreshed:,}** sent again (a value they copy changed)" if result.refreshed else "")
        + f" in {result.seconds:.1f} s; lag {result.lag_seconds or 0:.0f} s."
        + (f" Watermark: id {after.table_id}, updated_at {after.last_updated_at:%Y-%m-%d %H:%M:%S} UTC." if after else "")
    )
    if result.warnings:
        summary += "\n\n" + "\n".join(f"- {w}" for w in result.warnings)
    metadata["summary"] = dg.MetadataValue.md(summary)
    return dg.AssetMaterialization(
        asset_key=["bigquery", result.table], partition=str(result.organization_id), metadata=metadata
    )


def sync_partitions(
    context: dg.OpExecutionContext,
    postgres: GlificPostgres,
    bigquery: GlificBigQuery,
    work: Iterable[tuple[str, TableSpec]],
    roster: Roster | None = None,
) -> list[TableSync]:
    """Sync each (tenant key, table), several tenants at once (``glific_bq.tick``), recording a
    materialization for each success.

    One tenant-table failing does not stop the others; the failures are raised together at the
    end, so the run fails and says which tenants and tables.
    """
    by_tenant: dict[int, list[TableSpec]] = defaultdict(list)
    for key, spec in work:
        by_tenant[int(key)].append(spec)

    def record(result: TableSync) -> None:  # called in this thread, whatever thread synced the tenant
        if result.status == "synced":
            context.log_event(materialization(result))
        else:
            context.log.info(f"organization {result.organization_id}, {result.table}: {result.status}: {result.message}")

    # The watermark table is created or upgraded before any worker starts; the roster says who
    # may be synced (a hand-run materialization of an organization that is not comes back
    # not_synced, with the reason, and fails the run).
    if roster is None:  # the tick's op hands over the roster it planned with
        with postgres.source() as source:
            roster = select_tenants(source.control, bigquery.config())
    results = sync_tenants(postgres.database_url, bigquery.open_warehouse, dict(by_tenant), TickOptions.from_env(),
                           record, roster=roster)
    with postgres.source() as source:
        tell_organizations(source, roster, results)
    failures = [r for r in results if r.status in ("failed", "missing", "not_synced")]
    if failures:
        raise dg.Failure(
            f"{len(failures)} tenant-table sync(s) failed",
            metadata={"failures": dg.MetadataValue.md(
                "\n".join(f"- organization {r.organization_id}, {r.table}: {r.message}" for r in failures)
            )},
        )
    return results


def table_asset(spec: TableSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=table_key(spec),
        deps=[source_spec(spec)],
        partitions_def=tenants,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bigquery",
        kinds={"bigquery"},
        description=f"Glific's {spec.name}, one dataset per organization, synced incrementally ({spec.mode.value}).",
        output_required=False,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.fresh_within) if spec.fresh_within else None,
    )
    def _sync(context: dg.AssetExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
        sync_partitions(context, postgres, bigquery, [(key, spec) for key in context.partition_keys])
        # Each tenant's materialization was recorded as it completed, with its own numbers: the
        # asset yields no output of its own (a generator that yields nothing).
        yield from ()

    return _sync


source_assets = [source_spec(spec) for spec in TABLES]
table_assets = [table_asset(spec) for spec in TABLES]
