"""The minute tick: tenants synced in parallel, each alone in its own dataset, failures isolated;
tables set up once per process and checked again only when BigQuery refuses."""

from __future__ import annotations

import contextlib
import threading
import uuid

import pytest

from glific_bq import horizon, tick
from glific_bq.local import glific_writes
from glific_bq.registry import TableSpec
from glific_bq.sync import SyncOptions
from glific_bq.tenants import get_organization
from glific_bq.tick import TickOptions
from glific_bq.warehouse import Warehouse, known_tables, limits

from .helpers import warehouse_rows

NOTES = TableSpec("notes")


def add_tenant(conn, timezone: str = "UTC", notes: int = 3):
    """An organization with ``notes`` notes of its own."""
    suffix = uuid.uuid4().hex[:8]
    organization_id = glific_writes.organization(
        conn, f"Org {suffix}", f"org{suffix}", f"91{int(suffix, 16) % 10**10:010d}", timezone=timezone
    )
    conn.execute(
        "INSERT INTO notes (organization_id, body) SELECT %s, 'note ' || g FROM generate_series(1, %s) g",
        (organization_id, notes),
    )
    return get_organization(conn, organization_id)


class RecordingWarehouse(Warehouse):
    """A warehouse that records each append's start and end, its tenant and its thread."""

    events: list[tuple[str, int, str]] = []

    def append(self, target, rows):
        RecordingWarehouse.events.append(("start", self.organization.id, threading.current_thread().name))
        try:
            return super().append(target, rows)
        finally:
            RecordingWarehouse.events.append(("end", self.organization.id, threading.current_thread().name))


class MeetingWarehouse(RecordingWarehouse):
    """Appends that wait for each other: each waits, up to 30 s, until the other tenant's append
    is running too (``meeting``), so a test proves two tenants overlapped without any timing
    assumption (BrokenBarrierError if the other never comes)."""

    meeting = threading.Barrier(2, timeout=30)

    def append(self, target, rows):
        MeetingWarehouse.meeting.wait()
        return super().append(target, rows)


def test_two_tenants_sync_at_the_same_time_each_into_its_own_dataset(notes, database_url, warehouse_config):
    first, second = add_tenant(notes), add_tenant(notes)
    RecordingWarehouse.events, MeetingWarehouse.meeting = [], threading.Barrier(2, timeout=30)

    results = tick.sync_tenants(
        database_url,
        lambda o: MeetingWarehouse(warehouse_config, o),
        {first.id: [NOTES], second.id: [NOTES]},
        TickOptions(workers=2),
    )

    assert sorted((r.organization_id, r.status, r.inserted) for r in results) == [
        (first.id, "synced", 3),
        (second.id, "synced", 3),
    ]
    starts = sorted((org, thread) for kind, org, thread in RecordingWarehouse.events if kind == "start")
    (org_a, thread_a), (org_b, thread_b) = starts  # both started: they met, so they overlapped
    assert {org_a, org_b} == {first.id, second.id} and thread_a != thread_b
    for organization in (first, second):
        rows = warehouse_rows(Warehouse(warehouse_config, organization), "notes")
        assert len(rows) == 3 and {r["organization_id"] for r in rows} == {organization.id}


def test_a_ticks_tenants_share_a_horizon_that_no_cursor_passes(notes, database_url, warehouse_config, monkeypatch):
    """Tenants of one tick reuse a horizon read less than ``horizon_reuse_seconds`` ago: one
    ``pg_stat_activity`` read for them all. A reused horizon was still read before each snapshot,
    so a change stamped after it waits for a fresh one, and is then sent."""
    first, second = add_tenant(notes), add_tenant(notes)
    reads = []
    real = horizon.horizon
    monkeypatch.setattr(horizon, "horizon", lambda reader, margin: reads.append(margin) or real(reader, margin))
    sharing = TickOptions(workers=1, sync=SyncOptions(horizon_seconds=0, horizon_reuse_seconds=3600))

    def run(organization, options=sharing):
        [result] = tick.sync_tenants(database_url, lambda o: Warehouse(warehouse_config, o), {organization.id: [NOTES]},
                                     options)
        return result

    synced = [run(first), run(second)]
    shared = len(reads)
    notes.execute("UPDATE notes SET body = 'changed', updated_at = now() AT TIME ZONE 'UTC' WHERE organization_id = %s",
                  (second.id,))
    held_back = run(second)
    fresh = run(second, TickOptions(workers=1, sync=SyncOptions(horizon_seconds=0)))

    assert [r.inserted for r in synced] == [3, 3] and shared == 1  # one read for both tenants
    assert held_back.updated == 0  # stamped after the horizon it reused
    assert fresh.updated == 3 and len(reads) == 2


def test_one_worker_syncs_tenants_one_after_another_in_the_calling_thread(notes, database_url, warehouse_config):
    tenants = [add_tenant(notes) for _ in range(2)]
    RecordingWarehouse.events = []

    tick.sync_tenants(
        database_url,
        lambda o: RecordingWarehouse(warehouse_config, o),
        {t.id: [NOTES] for t in tenants},
        TickOptions(workers=1),
    )

    kinds = [(kind, org) for kind, org, _ in RecordingWarehouse.events]
    first, second = kinds[0][1], kinds[2][1]
    assert kinds == [("start", first), ("end", first), ("start", second), ("end", second)] and first != second
    assert {thread for _, _, thread in RecordingWarehouse.events} == {threading.current_thread().name}


def test_a_failing_tenant_fails_alone_and_results_come_back_to_the_calling_thread(
    notes, database_url, warehouse_config
):
    good = [add_tenant(notes) for _ in range(3)]
    bad = add_tenant(notes, timezone="Mars/Olympus_Mons")
    seen: list[tuple[int, str]] = []

    def on_result(result):
        seen.append((result.organization_id, threading.current_thread().name))

    results = tick.sync_tenants(
        database_url,
        lambda o: Warehouse(warehouse_config, o),
        {t.id: [NOTES] for t in [*good, bad]},
        TickOptions(workers=3),
        on_result,
    )

    status = {r.organization_id: r.status for r in results}
    assert status == {**{t.id: "synced" for t in good}, bad.id: "failed"}
    assert "Mars/Olympus_Mons" in next(r.message for r in results if r.organization_id == bad.id)
    assert sorted(seen) == sorted((r.organization_id, threading.current_thread().name) for r in results)


def test_run_tick_plans_the_dirty_tenants_and_syncs_only_them(notes, database_url, warehouse_config):
    tenants = [add_tenant(notes) for _ in range(3)]
    first = tick.run_tick(database_url, warehouse_config, TickOptions(workers=2), tables=[NOTES])
    notes.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'new')", (tenants[1].id,))

    second = tick.run_tick(database_url, warehouse_config, TickOptions(workers=2), tables=[NOTES])

    assert first.pairs_planned == 3 and {r.organization_id for r in first.results} == {t.id for t in tenants}
    assert [(r.organization_id, r.inserted) for r in second.results] == [(tenants[1].id, 1)]


#: The BigQuery calls that check or set up a table (``known_tables``, ``tables.ensure_table``).
METADATA_CALLS = ("get_table", "create_dataset", "create_table", "update_table")


@contextlib.contextmanager
def metadata_calls(client):
    """Every table check or set-up made through ``client`` (the organization's, shared by all its
    warehouses in the process) while the block runs, as (method, table or dataset) pairs; the
    calls still go to BigQuery."""
    calls: list[tuple[str, str]] = []

    def recorded(method):
        real = getattr(client, method)

        def call(what, *args, **kwargs):
            calls.append((method, str(getattr(what, "table_id", None) or getattr(what, "dataset_id", None) or what)))
            return real(what, *args, **kwargs)

        return call

    for method in METADATA_CALLS:
        setattr(client, method, recorded(method))
    try:
        yield calls
    finally:
        for method in METADATA_CALLS:
            delattr(client, method)


def test_a_table_set_up_once_is_not_checked_again_until_bigquery_refuses_an_append(
    notes, database_url, warehouse_config
):
    tenant = add_tenant(notes)
    open_warehouse = lambda o: Warehouse(warehouse_config, o)  # noqa: E731
    tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))
    warehouse = open_warehouse(tenant)
    table_id = f"{warehouse.dataset_ref}.notes"
    notes.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'second')", (tenant.id,))
    with metadata_calls(warehouse.client) as calls:
        [result] = tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))
    assert (result.status, result.inserted, calls) == ("synced", 1, [])  # not a single check

    # Dropped behind the cache's back: the append is refused, the table set up again, the rows land.
    warehouse.client.delete_table(table_id)
    notes.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'third')", (tenant.id,))
    with metadata_calls(warehouse.client) as calls:
        [result] = tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))

    assert (result.status, result.inserted) == ("synced", 1)
    assert ("create_table", "notes") in calls  # checked again only now, and set up again
    assert [r["body"] for r in warehouse_rows(warehouse, "notes")] == ["third"]


def test_a_table_that_exists_but_was_never_recorded_is_recognised_with_one_lookup(
    notes, database_url, warehouse_config
):
    """A table this project never recorded setting up (one Glific's own sync created, or one set
    up before ``applied_schemas`` existed) costs one ``tables.get`` in a new process, and is not
    set up again when it already has every column."""
    tenant = add_tenant(notes)
    open_warehouse = lambda o: Warehouse(warehouse_config, o)  # noqa: E731
    tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))
    warehouse = open_warehouse(tenant)
    table_id = f"{warehouse.dataset_ref}.notes"
    known_tables.forget(table_id)  # as in a new process
    notes.execute("DELETE FROM glific_bq_applied_schemas WHERE table_id = %s", (table_id,))  # never recorded
    notes.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'second')", (tenant.id,))

    with metadata_calls(warehouse.client) as calls:
        [result] = tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))

    assert (result.status, result.inserted) == ("synced", 1)
    assert calls == [("get_table", table_id)]  # one lookup, nothing set up


def test_a_schema_change_is_applied_although_the_table_is_known(notes, database_url, warehouse_config):
    tenant = add_tenant(notes)
    open_warehouse = lambda o: Warehouse(warehouse_config, o)  # noqa: E731
    tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))
    notes.execute("ALTER TABLE notes ADD COLUMN mood text")
    notes.execute("INSERT INTO notes (organization_id, body, mood) VALUES (%s, 'later', 'happy')", (tenant.id,))

    tick.sync_tenants(database_url, open_warehouse, {tenant.id: [NOTES]}, TickOptions(workers=1))

    rows = warehouse_rows(open_warehouse(tenant), "notes")
    assert [r["mood"] for r in rows if r["body"] == "later"] == ["happy"]


def test_tenants_split_into_stable_shards_by_organization_id():
    work = {organization_id: [NOTES] for organization_id in range(1, 11)}

    shards = tick.split_into_shards(work, 3)

    assert sorted(shards) == [0, 1, 2]
    assert sorted(org for part in shards.values() for org in part) == list(range(1, 11))
    assert all(tick.shard_of(org, 3) == shard for shard, part in shards.items() for org in part)
    assert tick.split_into_shards(work, 1) == {0: work}


def test_tick_options_come_from_the_environment_with_clear_errors():
    assert TickOptions.from_env({}) == TickOptions()
    assert TickOptions.from_env({tick.WORKERS_ENV: "3", tick.SHARDS_ENV: "2"}) == TickOptions(workers=3, shards=2)
    with pytest.raises(ValueError, match=tick.WORKERS_ENV):
        TickOptions.from_env({tick.WORKERS_ENV: "many"})
    with pytest.raises(ValueError, match="between 1 and"):
        TickOptions(workers=0)


def test_the_rate_limiter_spaces_calls_evenly():
    now = [100.0]  # a clock of the test's own: no wall-clock bound to miss on a busy machine
    slots = []

    def sleep(seconds):
        now[0] += seconds

    limiter = limits.RateLimiter(rate=20, jitter=0.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        limiter.acquire()
        slots.append(round(now[0] - 100.0, 6))
    assert slots == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]  # one call every 50 ms, the first at once
    now[0] += 1.0  # idle for a second: the next call goes at once, no burst of saved-up slots
    assert limiter.acquire() == 0.0 and limiter.acquire() == pytest.approx(0.05)


def test_a_schema_fingerprint_changes_with_any_column_change():
    from google.cloud.bigquery import SchemaField

    base = [SchemaField("id", "INT64"), SchemaField("body", "STRING")]
    assert known_tables.fingerprint(base) == known_tables.fingerprint(list(base))
    assert known_tables.fingerprint(base) != known_tables.fingerprint([*base, SchemaField("mood", "STRING")])
    assert known_tables.fingerprint(base) != known_tables.fingerprint([base[0], SchemaField("body", "INT64")])


def sync_job_from_env():
    """``sync_job`` with the resources as deployed (from the environment), for a reconstructable run."""
    import dagster as dg

    from glific_bq.defs.jobs import sync_job
    from glific_bq.defs.resources import resources_from_env

    return dg.Definitions(jobs=[sync_job], resources=resources_from_env()).resolve_job_def("sync_job")


def test_the_tick_fans_out_into_shard_steps_that_the_multiprocess_executor_runs(
    notes, database_url, bigquery_emulator, monkeypatch, tmp_path
):
    import dagster as dg

    tenants = [add_tenant(notes) for _ in range(2)]  # their bot contacts are new rows
    template = f"t{uuid.uuid4().hex[:8]}_{{organization_id}}"
    for var, value in {
        **bigquery_emulator.environment(),
        "GLIFIC_DATABASE_URL": database_url,
        "GLIFIC_BQ_DATASET_TEMPLATE": template,
        "GLIFIC_BQ_ORGANIZATIONS": "active",
        tick.SHARDS_ENV: "2",
    }.items():
        monkeypatch.setenv(var, value)

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = dg.execute_job(dg.reconstructable(sync_job_from_env), instance=instance)
        assert result.success
        steps = {event.step_key for event in result.get_step_success_events()}
        assert steps == {"sync_dirty_tenants", "sync_tick_shard[shard_0]", "sync_tick_shard[shard_1]"}
        materialized = {
            m.partition
            for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
            if m.asset_key == dg.AssetKey(["bigquery", "contacts"])
        }
    assert materialized == {str(t.id) for t in tenants}
    for tenant in tenants:
        from glific_bq.warehouse import WarehouseConfig

        warehouse = Warehouse(WarehouseConfig.from_env(), tenant)
        rows = warehouse.query(f"SELECT organization_id FROM `{warehouse.dataset_ref}.contacts`")
        assert rows and {r["organization_id"] for r in rows} == {tenant.id}


def test_a_new_process_trusts_a_table_an_earlier_one_set_up_without_asking_bigquery(
    db, database_url, warehouse_config, monkeypatch
):
    """The applied schema's fingerprint is kept in the source database: a new process (every
    Dagster run) makes no BigQuery metadata call for a table whose source schema is unchanged."""
    from glific_bq import registry
    from glific_bq.source import Source
    from glific_bq.sync import sync_table

    from .helpers import add_organization

    org = add_organization(db)
    spec = registry.table("messages", registry.RAW_TABLES)
    with Source(database_url) as source:
        sync_table(source, Warehouse(warehouse_config, org), org, spec)
        monkeypatch.setattr(known_tables, "_known", {})  # a new process: nothing known in memory
        calls = []
        monkeypatch.setattr(known_tables, "_verify", lambda *args: calls.append(args))
        assert sync_table(source, Warehouse(warehouse_config, org), org, spec).status == "synced"
    assert calls == []


def test_the_tick_workers_never_throw_away_each_others_pages_encoded_ahead(notes, database_url, warehouse_config,
                                                                           monkeypatch):
    """Issue 16, item 16: each page is encoded once, in the encode stage, however many tenants
    the tick syncs at once (a cache shared by all workers evicted each other's pages)."""
    from glific_bq.sync import SyncOptions
    from glific_bq.warehouse import writes

    tenants = [add_tenant(notes, notes=30) for _ in range(6)]
    encoded = []
    real = writes.append_requests

    def counted(stream, schema, rows):
        encoded.append(rows.num_rows)
        return real(stream, schema, rows)

    monkeypatch.setattr(writes, "append_requests", counted)
    options = TickOptions(workers=6, sync=SyncOptions(page_rows=5))

    result = tick.run_tick(database_url, warehouse_config, options, tables=[NOTES])

    pages = [r for r in result.results if r.table == "notes"]
    assert len(pages) == len(tenants) and all(r.status == "synced" for r in pages)
    assert sum(encoded) == sum(r.inserted for r in pages)  # every row encoded exactly once
