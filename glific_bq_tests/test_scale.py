"""What the minute tick does to stay cheap at Glific's shape (issue 18), and that none of it
loses anything: materializations recorded in batches, the catalog read once per tick, the
insert backlog measured only where one can be, shards chosen from the work and the cores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from glific_bq import sync, tick, watermarks
from glific_bq.defs import assets
from glific_bq.defs.resources import GlificBigQuery, GlificPostgres
from glific_bq.registry import TableSpec
from glific_bq.sync import TableSync, may_have_backlog, table_shape
from glific_bq.tick import PAIRS_PER_SHARD, TickOptions, shards_for
from glific_bq.warehouse import Warehouse

from .helpers import add_notes, add_organization, bigquery_resource, warehouse_rows

NOTES = TableSpec("notes")


def test_shards_are_chosen_from_the_dirty_pairs_and_the_cores_unless_configured():
    assert shards_for(10, available=8) == 1  # a quiet tick: one process, no start-up cost
    assert shards_for(PAIRS_PER_SHARD + 1, available=8) == 2
    assert shards_for(100 * PAIRS_PER_SHARD, available=2) == 2  # never more processes than cores
    assert shards_for(0, available=4) == 1
    assert shards_for(10, 3, available=1) == 3  # configured: as configured
    assert TickOptions.from_env({tick.SHARDS_ENV: "auto"}).shards is None
    assert TickOptions.from_env({}).shards is None


def test_the_insert_backlog_is_measured_only_where_one_can_have_built_up():
    now = datetime.now(timezone.utc)
    minute = watermarks.Watermark(1, "notes", "d", 500, datetime(2026, 1, 1), 0, advanced_at=now - timedelta(minutes=1))
    assert not may_have_backlog(minute)  # synced a minute ago: no two statements for a backlog
    assert may_have_backlog(watermarks.Watermark(1, "notes", "d", 0, datetime(1970, 1, 1), 0))  # new or reset
    failing = watermarks.Watermark(1, "notes", "d", 500, datetime(2026, 1, 1), 0, advanced_at=now, failures=2)
    assert may_have_backlog(failing)  # syncs failed: rows piled up meanwhile
    idle = watermarks.Watermark(1, "notes", "d", 500, datetime(2026, 1, 1), 0,
                                advanced_at=now - sync.BACKLOG_CHECK_AFTER - timedelta(seconds=1))
    assert may_have_backlog(idle)


def test_a_ticks_shapes_are_read_once_and_a_new_column_is_seen_at_the_next_tick(notes, source, warehouse_for):
    organization = add_organization(notes)
    warehouse = warehouse_for(organization)
    shapes: dict = {}
    first = table_shape(notes, warehouse, NOTES, organization, shapes)
    notes.execute("ALTER TABLE notes ADD COLUMN mood text")

    assert table_shape(notes, warehouse, NOTES, organization, shapes) is first  # within the tick
    names = {f.name for f in table_shape(notes, warehouse, NOTES, organization, {}).schema}  # the next tick
    assert "mood" in names and "mood" not in {f.name for f in first.schema}


def test_the_shapes_cache_is_shared_by_every_sync_of_a_tick_and_every_row_still_lands(
    notes, database_url, warehouse_config, monkeypatch
):
    tenants = [add_organization(notes) for _ in range(3)]
    for organization in tenants:
        add_notes(notes, organization, ["a", "b"])
    reads = []
    real = sync.reflect_columns
    monkeypatch.setattr(sync, "reflect_columns", lambda conn, table: reads.append(table) or real(conn, table))

    results = tick.sync_tenants(database_url, lambda o: Warehouse(warehouse_config, o),
                                {t.id: [NOTES] for t in tenants}, TickOptions(workers=2))

    assert sorted((r.status, r.inserted) for r in results) == [("synced", 2)] * 3
    assert reads.count("notes") <= 2  # once per worker's source at most, not once per tenant
    for organization in tenants:
        assert [r["body"] for r in warehouse_rows(Warehouse(warehouse_config, organization), "notes")] == ["a", "b"]


def test_materializations_recorded_in_batches_are_each_stored_for_their_own_partition(monkeypatch):
    """The batch marks make Dagster hold events until a batch ends: an unfinished batch would
    never be stored. Every result must come out as its own partition's materialization, with its
    own numbers, and each asset's latest record must be its last one."""
    monkeypatch.setattr(assets, "RECORD_BATCH", 3)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # so only the end of each batch stores it
    results = [TableSync(org, table, dataset=f"p.d{org}", inserted=org) for org in range(1, 8)
               for table in ("contacts", "messages")]

    @dg.op
    def record(context):
        recorder = assets.Recorder(context)
        for result in results:
            recorder.add(result)
        recorder.close()

    @dg.job
    def job():
        record()

    with dg.instance_for_test() as instance:
        outcome = job.execute_in_process(instance=instance)
        stored = {}
        for table in ("contacts", "messages"):
            key = dg.AssetKey(["bigquery", table])
            records = instance.fetch_materializations(key, limit=100).records
            stored[table] = sorted((int(r.partition_key), r.asset_materialization.metadata["rows_inserted"].value)
                                   for r in records)
            latest = instance.get_latest_materialization_event(key)
            assert latest is not None and latest.run_id == outcome.run_id

    assert stored == {table: [(org, org) for org in range(1, 8)] for table in ("contacts", "messages")}
    assert len(outcome.get_asset_materialization_events()) == len(results)  # the run's own events too


@pytest.mark.parametrize("batch", [1, 200])
def test_a_tick_records_one_materialization_per_synced_pair(batch, notes, monkeypatch, database_url, warehouse_config):
    monkeypatch.setattr(assets, "RECORD_BATCH", batch)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    tenants = [add_organization(notes) for _ in range(3)]
    for organization in tenants:
        add_notes(notes, organization, ["x"])

    @dg.op
    def sync_them(context, postgres: GlificPostgres, bigquery: GlificBigQuery):
        assets.sync_partitions(context, postgres, bigquery, [(str(t.id), NOTES) for t in tenants])

    @dg.job(resource_defs={"postgres": GlificPostgres(database_url=database_url),
                           "bigquery": bigquery_resource(warehouse_config)})
    def job():
        sync_them()

    with dg.instance_for_test() as instance:
        job.execute_in_process(instance=instance)
        records = instance.fetch_materializations(dg.AssetKey(["bigquery", "notes"]), limit=10).records
    assert sorted(int(r.partition_key) for r in records) == sorted(t.id for t in tenants)
