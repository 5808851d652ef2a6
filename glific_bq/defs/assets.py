"""One asset per synced table, ``bigquery/<table>``, partitioned by tenant, downstream of the
PostgreSQL table it copies (``postgres/<table>``, an external asset)."""

import os
import time
from collections import defaultdict
from collections.abc import Iterable

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id

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
    """What the UI shows for one tenant's sync: row counts, the watermark it reached and lag, as
    numbers to plot. Only what the previous materialization does not already say (its watermark is
    this one's starting point), and counts that are zero only when they are not: at the minute
    tick's 3,300 materializations a minute, Dagster's cost of storing one grows with its metadata
    (docs/scale.md)."""
    metadata: dict[str, object] = {
        "dataset": result.dataset,
        "rows_inserted": dg.MetadataValue.int(result.inserted),
        "rows_updated": dg.MetadataValue.int(result.updated),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "lag_seconds": dg.MetadataValue.float(result.lag_seconds or 0.0),
    }
    if result.set_aside:
        metadata["rows_set_aside"] = dg.MetadataValue.int(result.set_aside)  # refused by BigQuery
    if result.refreshed:
        metadata["rows_refreshed"] = dg.MetadataValue.int(result.refreshed)  # sent again: a value they copy changed
    if result.after:
        metadata["table_id"] = dg.MetadataValue.int(result.after.table_id)
        metadata["last_updated_at"] = result.after.last_updated_at.isoformat()
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))
    return dg.AssetMaterialization(
        asset_key=["bigquery", result.table], partition=str(result.organization_id), metadata=metadata
    )


#: Materializations of one asset written together. With PostgreSQL storage (production) and
#: ``DAGSTER_EVENT_BATCH_SIZE``, Dagster stores a batch with one INSERT instead of three statements
#: per event: 0.8 ms of CPU per materialization instead of 5.2 (13.4 on SQLite, which stores a batch
#: event by event); see docs/scale.md.
RECORD_BATCH = 200
#: A batch is written at the latest this long after its first materialization, so that the UI
#: follows a long tick. A batch costs about 4.5 ms of CPU whatever its size, an event about 0.6 ms
#: more (PostgreSQL storage, measured): a minute tick's ~33 assets are written in two or three
#: batches each, not a dozen. A crash loses at most this much of the UI's record, never a row:
#: the watermarks are the sync's record.
RECORD_SECONDS = 30.0


class Recorder:
    """Records each synced tenant-table as a materialization of ``bigquery/<table>`` for its
    tenant partition, in batches per asset (Dagster stores a batch of one asset's events at once;
    its asset record is updated from the batch's last event, so a batch never mixes assets).

    The events are exactly those ``context.log_event`` records, with Dagster's batch marks (the
    ones its own multi-partition outputs carry; dagster is pinned exactly). Call ``close`` at the
    end: it writes what is pending."""

    def __init__(self, context: dg.OpExecutionContext | dg.AssetExecutionContext) -> None:
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(RECORD_BATCH))
        self.context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
        self.pending: dict[str, list[dg.AssetMaterialization]] = defaultdict(list)
        self.oldest: float | None = None

    def add(self, result: TableSync) -> None:
        self.pending[result.table].append(materialization(result))
        self.oldest = self.oldest or time.monotonic()
        if len(self.pending[result.table]) >= RECORD_BATCH:
            self._write(result.table)
        if time.monotonic() - self.oldest >= RECORD_SECONDS:
            self.close()

    def close(self) -> None:
        for table in list(self.pending):
            self._write(table)
        self.oldest = None

    def _write(self, table: str) -> None:
        batch, step = self.pending.pop(table), self.context.get_step_execution_context()
        batch_id = generate_event_batch_id()
        for n, event in enumerate(batch, 1):
            # What OpExecutionContext.log_event does, with the batch's marks.
            self.context._events.append(  # noqa: SLF001  (the step's event stream, as log_event)
                DagsterEvent.asset_materialization(step, event, DagsterEventBatchMetadata(batch_id, n == len(batch))))


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

    recorder = Recorder(context)

    def record(result: TableSync) -> None:  # called in this thread, whatever thread synced the tenant
        if result.status == "synced":
            recorder.add(result)
        else:
            context.log.info(f"organization {result.organization_id}, {result.table}: {result.status}: {result.message}")

    # The watermark table is created or upgraded before any worker starts; the roster says who
    # may be synced (a hand-run materialization of an organization that is not comes back
    # not_synced, with the reason, and fails the run).
    if roster is None:  # the tick's op hands over the roster it planned with
        with postgres.source() as source:
            roster = select_tenants(source.control, bigquery.config())
    try:
        results = sync_tenants(postgres.database_url, bigquery.open_warehouse, dict(by_tenant),
                               TickOptions.from_env(), record, roster=roster)
    finally:
        recorder.close()
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
