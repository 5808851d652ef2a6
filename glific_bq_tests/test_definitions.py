"""The Dagster layer: definitions load, a tenant materializes, the sensor registers tenants,
the minute job syncs what is dirty — all against the real PostgreSQL and the emulator."""

from __future__ import annotations

import itertools
import uuid

import dagster as dg
import pytest

from glific_bq import plan, tick, watermarks
from glific_bq.defs.assets import table_assets
from glific_bq.defs.jobs import sync_job
from glific_bq.defs.partitions import tenants
from glific_bq.defs.resources import GlificPostgres
from glific_bq.defs.schedules import sync_every_minute
from glific_bq.defs.sensors import tenant_discovery
from glific_bq.local.sample_data import seed
from glific_bq.registry import TABLES
from glific_bq.tenants import get_organization
from glific_bq.warehouse import Warehouse

from .helpers import bigquery_resource, destinations, warehouse_rows


@pytest.fixture
def seeded(db):
    seed(db, organizations=2, messages_per_org=40, contacts_per_org=10)
    return db


@pytest.fixture
def resources(database_url, warehouse_config):
    return {
        "postgres": GlificPostgres(database_url=database_url),
        "bigquery": bigquery_resource(warehouse_config),
    }


def count(conn, table: str, organization_id: int) -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE organization_id = %s", (organization_id,)).fetchone()[0]


def test_definitions_load(monkeypatch):
    monkeypatch.setenv("GLIFIC_DATABASE_URL", "postgresql://nowhere/none")
    monkeypatch.setenv("GLIFIC_BQ_PROJECT", "some-project")
    from glific_bq.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for spec in TABLES:
        key = dg.AssetKey(["bigquery", spec.name])
        assert graph.get(key).parent_keys == {dg.AssetKey(["postgres", spec.name])}
    assert {s.name for s in defs.schedules} == {"sync_every_minute", "dedup_every_90_minutes", "checks_every_90_minutes",
                                                "retention_daily"}
    assert {s.name for s in defs.sensors} == {"tenant_discovery", "stalled_watermarks", "report_views_automation"}


def test_definitions_wire_every_table_to_its_jobs_checks_schedules_and_sensors(monkeypatch):
    monkeypatch.setenv("GLIFIC_DATABASE_URL", "postgresql://nowhere/none")
    monkeypatch.setenv("GLIFIC_BQ_PROJECT", "some-project")
    from glific_bq.definitions import defs
    from glific_bq.views import REPORTS

    graph = defs.resolve_asset_graph()
    tables = {dg.AssetKey(["bigquery", spec.name]) for spec in TABLES}
    # every synced table: partitioned by tenant, three checks, a _latest view downstream
    for key in tables:
        assert graph.get(key).partitions_def == tenants
        assert {c.name for c in graph.asset_check_keys if c.asset_key == key} == {"latest_ids_unique", "reconciled", "fresh"}
        assert dg.AssetKey(["reports", f"{key.path[-1]}_latest"]) in graph.get(key).child_keys
    # every report reads only synced tables
    for report in REPORTS:
        assert graph.get(dg.AssetKey(["reports", report.name])).parent_keys <= tables
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"sync_job", "dedup_job", "checks_job", "resync_job", "export_job"} <= jobs
    schedules = {s.name: s for s in defs.schedules}
    assert {name: s.job_name for name, s in schedules.items()} == {
        "sync_every_minute": "sync_job", "dedup_every_90_minutes": "dedup_job", "checks_every_90_minutes": "checks_job",
        "retention_daily": "retention_job",
    }
    assert schedules["sync_every_minute"].cron_schedule == "* * * * *"
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules.values())
    sensors = {s.name: s for s in defs.sensors}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert all(s.minimum_interval_seconds <= 60 for s in sensors.values())
    # the checks job runs exactly the asset checks, every table's
    checks_job = defs.resolve_job_def("checks_job")
    assert {c.asset_key for c in checks_job.asset_layer.asset_graph.asset_check_keys} >= tables


def test_materializing_one_tenant_syncs_it_and_reports_numbers(seeded, resources, warehouse_config):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenants.name, ["1", "2"])
    messages = next(a for a in table_assets if a.key == dg.AssetKey(["bigquery", "messages"]))

    result = dg.materialize([messages], partition_key="1", resources=resources, instance=instance)

    assert result.success
    events = result.get_asset_materialization_events()
    assert [(e.asset_key.path, e.partition) for e in events] == [(["bigquery", "messages"], "1")]
    metadata = events[0].materialization.metadata
    rows = warehouse_rows(Warehouse(warehouse_config, get_organization(seeded, 1)), "messages")
    assert metadata["rows_inserted"].value == count(seeded, "messages", 1)
    assert metadata["rows_updated"].value == 0
    assert metadata["table_id"].value == watermarks.get(seeded, 1, "messages").table_id > 0
    assert len(rows) == count(seeded, "messages", 1) and {r["organization_id"] for r in rows} == {1}


def test_tenant_discovery_adds_active_organizations_once(seeded, resources):
    instance = dg.DagsterInstance.ephemeral()
    seeded.execute("UPDATE organizations SET is_active = false WHERE id = 2")

    first = tenant_discovery(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(first, dg.SensorResult)
    assert [r.partition_keys for r in first.dynamic_partitions_requests] == [["1"]]

    instance.add_dynamic_partitions(tenants.name, ["1"])
    second = tenant_discovery(dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor))
    assert isinstance(second, dg.SkipReason)


def test_tenant_discovery_says_once_when_an_organization_stops_being_synced(seeded, resources, warehouse_config):
    from glific_bq import plan

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenants.name, ["1", "2"])
    seeded.execute("UPDATE organizations SET is_active = false WHERE id = 2")

    first = tenant_discovery(dg.build_sensor_context(instance=instance, resources=resources))
    again = tenant_discovery(dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor))

    assert isinstance(first, dg.SensorResult) and not first.dynamic_partitions_requests
    (roster,) = first.asset_events  # the roster changed: recorded, with the reason
    table = roster.metadata["organizations"].value
    assert "| 1 |" in table and "| 2 | " in table and "| not synced | organization inactive" in table
    assert isinstance(again, dg.SkipReason) and "1 organizations synced" in again.skip_message
    assert "just now" not in again.skip_message
    assert 2 not in plan.dirty(seeded, TABLES, destinations(seeded, warehouse_config)).get("messages", [])
    assert instance.get_dynamic_partitions(tenants.name) == ["1", "2"]  # history kept


def test_minute_schedule_requests_a_run_unless_one_is_in_flight(seeded, resources):
    with dg.instance_for_test() as instance:
        assert isinstance(sync_every_minute(dg.build_schedule_context(instance=instance, resources=resources)),
                          dg.RunRequest)

        instance.add_run(dg.DagsterRun(job_name=sync_job.name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED))
        assert isinstance(sync_every_minute(dg.build_schedule_context(instance=instance, resources=resources)),
                          dg.SkipReason)


def _executor_of(run_request: dg.RunRequest) -> str:
    dg.validate_run_config(sync_job, run_request.run_config)  # raises if the job cannot run with it
    (executor,) = run_request.run_config["execution"]["config"]
    return executor


def test_a_tick_of_one_shard_runs_in_one_process_and_a_larger_one_on_forked_step_processes(
        seeded, resources, monkeypatch):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, resources=resources)
        small = sync_every_minute(context)
        monkeypatch.setattr(tick, "PAIRS_PER_SHARD", 3)  # the seed's dirty pairs: more than one shard
        large = sync_every_minute(context)
        monkeypatch.setenv(tick.SHARDS_ENV, "2")
        monkeypatch.setattr(tick, "PAIRS_PER_SHARD", 1_500)
        configured = sync_every_minute(context)

    assert _executor_of(small) == "in_process"
    assert _executor_of(large) == _executor_of(configured) == "multiprocess"
    assert large.run_config["execution"]["config"]["multiprocess"]["start_method"] == {
        "forkserver": {"preload_modules": ["glific_bq.definitions"]}}


def test_a_tick_that_cannot_be_planned_is_still_requested(warehouse_config):
    unreachable = {"postgres": GlificPostgres(database_url="postgresql://glific_bq@127.0.0.1:1/none?connect_timeout=2"),
                   "bigquery": bigquery_resource(warehouse_config)}
    with dg.instance_for_test() as instance:
        request = sync_every_minute(dg.build_schedule_context(instance=instance, resources=unreachable))

    assert _executor_of(request) == "multiprocess"  # its op fails, and says why


def test_plan_finds_exactly_the_tenant_tables_beyond_their_watermarks(seeded, resources, warehouse_config):
    everything = plan.dirty(seeded, TABLES, destinations(seeded, warehouse_config))
    assert everything["messages"] == [1, 2] and everything["contacts"] == [1, 2]

    result = sync_job.execute_in_process(resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert plan.dirty(seeded, TABLES, destinations(seeded, warehouse_config)) == {}

    seeded.execute("UPDATE messages SET status = 'read', updated_at = now() AT TIME ZONE 'UTC' - interval '6 seconds' WHERE id = (SELECT max(id) FROM messages WHERE organization_id = 2)")
    assert plan.dirty(seeded, TABLES, destinations(seeded, warehouse_config)) == {"messages": [2]}


def test_resync_needs_confirmation_then_resends_the_tenant_table(seeded, resources, warehouse_config):
    from glific_bq import watermarks
    from glific_bq.defs.jobs import resync_job

    instance = dg.DagsterInstance.ephemeral()
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    config = {"ops": {"resync_tenant_table": {"config": {"organization_id": 1, "table": "tickets"}}}}

    refused = resync_job.execute_in_process(run_config=config, resources=resources, instance=instance, raise_on_error=False)
    assert not refused.success
    assert watermarks.get(seeded, 1, "tickets").table_id > 0

    config["ops"]["resync_tenant_table"]["config"]["confirm"] = True
    assert resync_job.execute_in_process(run_config=config, resources=resources, instance=instance).success
    rows = warehouse_rows(Warehouse(warehouse_config, get_organization(seeded, 1)), "tickets")
    assert len(rows) == 2 * count(seeded, "tickets", 1)  # every row twice until dedup


def test_resync_while_the_tick_syncs_that_table_resets_nothing_and_says_so(seeded, resources, database_url):
    import psycopg

    from glific_bq import watermarks
    from glific_bq.defs.jobs import resync_job

    instance = dg.DagsterInstance.ephemeral()
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    before = watermarks.get(seeded, 1, "tickets")
    config = {"ops": {"resync_tenant_table": {"config": {"organization_id": 1, "table": "tickets", "confirm": True}}}}
    with psycopg.connect(database_url, autocommit=True) as tick_session:
        with watermarks.exclusive(tick_session, 1, "tickets") as held:  # the minute tick, mid-sync
            assert held
            busy = resync_job.execute_in_process(run_config=config, resources=resources, instance=instance,
                                                 raise_on_error=False)

    assert not busy.success
    failure = next(e for e in busy.all_events if e.event_type_value == "STEP_FAILURE")
    assert "another run is syncing tickets of organization 1: nothing reset" in str(failure.event_specific_data.error)
    assert watermarks.get(seeded, 1, "tickets") == before


def test_dedup_job_leaves_one_version_per_id_and_reports_deletions(seeded, resources, warehouse_config):
    from glific_bq import watermarks
    from glific_bq.defs.jobs import dedup_job

    instance = dg.DagsterInstance.ephemeral()
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    seeded.execute("UPDATE tickets SET status = 'closed', updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' WHERE organization_id = 1")
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    warehouse = Warehouse(warehouse_config, get_organization(seeded, 1))
    tickets = count(seeded, "tickets", 1)
    assert len(warehouse_rows(warehouse, "tickets")) == 2 * tickets

    result = dedup_job.execute_in_process(resources=resources, instance=instance)

    assert result.success
    rows = warehouse_rows(warehouse, "tickets")
    assert len(rows) == len({r["id"] for r in rows}) == tickets and {r["status"] for r in rows} == {"closed"}
    observations = [
        e.event_specific_data.asset_observation for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    deleted = {(o.asset_key.path[-1], o.partition): o.metadata["deleted"].value for o in observations}
    assert deleted[("tickets", "1")] == tickets and deleted[("tickets", "2")] == 0
    assert watermarks.get(seeded, 1, "tickets").deduped_at is not None


def test_a_mass_delete_stops_the_dedup_run_and_alerts_until_an_operator_confirms_it(
        seeded, resources, warehouse_config, webhook, monkeypatch):
    from glific_bq.alerts import WEBHOOK_URL_ENV
    from glific_bq.defs.jobs import dedup_job
    from glific_bq.local import glific_writes

    monkeypatch.setenv(WEBHOOK_URL_ENV, webhook.url)
    extra = [glific_writes.contact(seeded, 1, f"9198765{n:05d}", name=f"Extra {n}") for n in range(20)]
    instance = dg.DagsterInstance.ephemeral()
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    warehouse = Warehouse(warehouse_config, get_organization(seeded, 1))
    before = {r["id"] for r in warehouse_rows(warehouse, "contacts")}
    seeded.execute("DELETE FROM contacts WHERE id = ANY(%s)", (extra[:12],))  # 12 of 30: a restore gone wrong?

    refused = dedup_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)

    assert not refused.success
    assert {r["id"] for r in warehouse_rows(warehouse, "contacts")} == before  # nothing deleted
    (text,) = webhook.texts
    assert "mass delete REFUSED" in text and "organization 1, contacts: 12 of 30" in text
    assert 'confirm_deletes: ["1/contacts"]' in text

    config = {"ops": {"dedup_tenants": {"config": {"confirm_deletes": ["1/contacts"]}}}}
    assert dedup_job.execute_in_process(run_config=config, resources=resources, instance=instance).success
    assert {r["id"] for r in warehouse_rows(warehouse, "contacts")} == before - set(extra[:12])


def test_dedup_schedule_fires_every_90_minutes_around_the_clock():
    from datetime import datetime, timedelta, timezone

    from dagster._utils.schedules import cron_string_iterator

    from glific_bq.defs.schedules import dedup_every_90_minutes

    start = datetime(2026, 11, 28, tzinfo=timezone.utc)
    ticks = sorted(
        tick for cron in dedup_every_90_minutes.cron_schedule
        for tick in itertools.takewhile(lambda t: t < start + timedelta(days=2), cron_string_iterator(start.timestamp(), cron, "UTC"))
    )
    assert len(ticks) == 32  # 16 a day
    assert {b - a for a, b in zip(ticks, ticks[1:])} == {timedelta(minutes=90)}
