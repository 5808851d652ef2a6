"""Glific's platform dataset: the platform organization (the ``saas`` row named Tides) also gets
Glific's four cross-organization tables, with Glific's schemas and rules; no other tenant ever
gets them, nor any other organization's rows. Real PostgreSQL with Glific's schema, and the
BigQuery emulator."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from glific_bq import platform, registry, tick, upkeep
from glific_bq.layouts import Layout
from glific_bq.local import glific_writes as gw
from glific_bq.sync import sync_table
from glific_bq.tenants import get_organization
from glific_bq.tick import TickOptions
from glific_bq.warehouse import DEAD_LETTERS, Warehouse

from .helpers import destinations

STATS = registry.table("stats", registry.GLIFIC_TABLES)
PLATFORM_TABLES = {spec.name for spec in registry.PLATFORM_TABLES}
#: Every row is written in the past, beyond the sync's horizon (no waiting on the clock).
NOW = datetime.now(timezone.utc).replace(tzinfo=None).replace(microsecond=0) - timedelta(hours=1)
_STANDARD = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
_STATS = ("id:INT64! contacts:INT64 active:INT64 optin:INT64 optout:INT64 messages:INT64 inbound:INT64 outbound:INT64 "
          "hsm:INT64 flows_started:INT64 flows_completed:INT64 users:INT64 period:STRING date:DATE hour:INT64 "
          "inserted_at:DATETIME! updated_at:DATETIME! conversations:INT64")
#: Glific's schemas of the four tables (bigquery_schema.ex at d93aaee, transcribed by hand as
#: ``column:type``, ``!`` for REQUIRED), independently of the bundled JSON the layout reads.
GLIFICS = {
    "organizations": "id:INT64! name:STRING shortcode:STRING status:STRING is_active:BOOL is_approved:BOOL "
                     "is_suspended:BOOL suspended_until:DATETIME is_trial_org:BOOL trial_expiration_date:DATETIME "
                     "deleted_at:DATETIME inserted_at:DATETIME! updated_at:DATETIME! bq_uuid:STRING "
                     "bq_inserted_at:DATETIME",
    "stats_all": _STATS + " organization_id:INT64! organization_name:STRING organization_status:STRING",
    "trackers_all": "id:INT64! period:STRING date:DATE counts:STRING! inserted_at:DATETIME! updated_at:DATETIME! "
                    "organization_id:INT64! organization_name:STRING",
    "trial_users": "id:INT64! username:STRING! email:STRING! phone:STRING! organization_name:STRING otp_entered:BOOL! "
                   "inserted_at:DATETIME! updated_at:DATETIME! bq_inserted_at:DATETIME bq_uuid:STRING",
}


def _schema(fields) -> str:
    return " ".join(f"{f.name}:{_STANDARD.get(f.field_type, f.field_type)}{'!' if f.mode == 'REQUIRED' else ''}"
                    for f in fields)


def _organization(db, timezone_name: str, at: datetime = NOW):
    """An organization onboarded the Glific way, at ``at``."""
    n = db.execute("SELECT count(*) FROM organizations").fetchone()[0] + 1
    organization_id = gw.organization(db, f"NGO {n}", f"ngo{n}", f"9180000{n:05d}", timezone=timezone_name, at=at)
    return get_organization(db, organization_id)


def _stats(db, organization_id: int, hour: int, at: datetime) -> int:
    return gw.insert_one(db, "stats", at=at, organization_id=organization_id, period="hour", date=at.date(),
                         hour=hour, contacts=10 + hour, messages=100 + hour, conversations=hour)


@pytest.fixture
def world(db):
    """The platform organization (Tides, in India) and two NGOs, each with stats and a tracker;
    two people who asked for a trial."""
    tides = _organization(db, "Asia/Kolkata")
    gw.saas(db, tides.id, at=NOW)
    ngos = [_organization(db, "Africa/Nairobi"), _organization(db, "UTC")]
    for n, organization in enumerate([tides, *ngos]):
        _stats(db, organization.id, n, NOW)
        gw.insert_one(db, "trackers", at=NOW, organization_id=organization.id, period="day", date=NOW.date(),
                      counts={"messages": n})
    gw.trial_user(db, "Asha", "asha@example.org", "919811111111", "Asha's NGO", at=NOW)
    gw.trial_user(db, "Ravi", "ravi@example.org", "919822222222", "Ravi's NGO", at=NOW)
    return tides, ngos


def _tick(database_url, config):
    """One tick of the Glific layout's stats for every tenant (the platform's tables come by themselves)."""
    return tick.run_tick(database_url, config, TickOptions(workers=1), tables=[STATS])


def _tables(warehouse: Warehouse) -> set[str]:
    return {t.table_id for t in warehouse.client.list_tables(warehouse.dataset_ref)} - {DEAD_LETTERS}


def _rows(warehouse: Warehouse, table: str) -> list[dict]:
    order = "id, bq_inserted_at" if table in ("organizations", "trial_users") else "id"
    return warehouse.query(f"SELECT * FROM `{warehouse.dataset_ref}.{table}` ORDER BY {order}")


def test_the_platform_organization_gets_glifics_four_tables_with_glifics_schemas(db, world, database_url,
                                                                              glific_warehouse_config):
    tides, _ = world

    result = _tick(database_url, glific_warehouse_config)

    synced = {r.table for r in result.results if r.organization_id == tides.id and r.status == "synced"}
    assert synced == {"stats"} | PLATFORM_TABLES
    with Warehouse(glific_warehouse_config, tides) as warehouse:
        assert _tables(warehouse) == {"stats"} | PLATFORM_TABLES
        for name in PLATFORM_TABLES:
            table = warehouse.client.get_table(f"{warehouse.dataset_ref}.{name}")
            assert _schema(table.schema) == GLIFICS[name], name
        assert warehouse.client.get_table(f"{warehouse.dataset_ref}.stats_all").clustering_fields == ["date", "period"]


def test_the_platform_tables_hold_every_organizations_rows_as_glific_builds_them(db, world, database_url,
                                                                                 glific_warehouse_config):
    tides, ngos = world
    everyone = [tides, *ngos]

    _tick(database_url, glific_warehouse_config)

    local = ZoneInfo("Asia/Kolkata")  # the platform organization's timezone, whoever the row is of
    sent_at = NOW.replace(tzinfo=timezone.utc).astimezone(local).replace(tzinfo=None)
    with Warehouse(glific_warehouse_config, tides) as warehouse:
        organizations = _rows(warehouse, "organizations")
        assert [(o["id"], o["name"], o["status"], o["is_trial_org"]) for o in organizations] == [
            (o.id, o.name, "active", False) for o in everyone]
        assert all(o["inserted_at"] == sent_at and o["bq_uuid"] for o in organizations)
        stats = _rows(warehouse, "stats_all")
        assert [(s["organization_id"], s["organization_name"], s["organization_status"], s["hour"], s["conversations"])
                for s in stats] == [(o.id, o.name, "active", n, n) for n, o in enumerate(everyone)]
        assert {s["inserted_at"] for s in stats} == {sent_at}
        trackers = _rows(warehouse, "trackers_all")
        assert [(t["organization_id"], t["organization_name"], json.loads(t["counts"])) for t in trackers] == [
            (o.id, o.name, {"messages": n}) for n, o in enumerate(everyone)]
        trial = _rows(warehouse, "trial_users")
        assert [(t["username"], t["phone"], t["otp_entered"], t["inserted_at"]) for t in trial] == [
            ("Asha", "919811111111", False, sent_at), ("Ravi", "919822222222", False, sent_at)]


def test_no_other_tenant_ever_gets_them_nor_anyone_elses_rows(db, world, database_url, source,
                                                            glific_warehouse_config):
    tides, ngos = world

    _tick(database_url, glific_warehouse_config)

    for ngo in ngos:
        with Warehouse(glific_warehouse_config, ngo) as warehouse:
            assert _tables(warehouse) == {"stats"}
            assert [s["contacts"] for s in _rows(warehouse, "stats")] == [
                10 + [tides, *ngos].index(ngo)]  # its own stats row, nobody else's
    tenants = destinations(db, glific_warehouse_config)
    planned = tick.plan_tick(source, tenants, [*registry.GLIFIC_TABLES, *registry.PLATFORM_TABLES])
    assert all(not PLATFORM_TABLES & {s.name for s in planned.get(ngo.id, [])} for ngo in ngos)
    # Whoever asks (a hand-run materialization, the CLI, a resync), another organization's sync
    # of a platform table is refused before anything is read.
    ngo = get_organization(db, ngos[0].id)
    with Warehouse(glific_warehouse_config, ngo) as warehouse:
        for spec in registry.PLATFORM_TABLES:
            with pytest.raises(platform.NotThePlatform, match=f"not organization {ngo.id}"):
                sync_table(source, warehouse, ngo, spec)
        assert _tables(warehouse) == {"stats"}


def test_a_new_or_changed_organization_appends_a_row_to_the_change_log(db, world, database_url,
                                                                       glific_warehouse_config):
    tides, ngos = world
    _tick(database_url, glific_warehouse_config)

    renamed = ngos[0]
    gw.update(db, "organizations", renamed.id, at=NOW + timedelta(minutes=10), name="Renamed NGO")
    joined = _organization(db, "UTC", NOW + timedelta(minutes=10))
    gw.update(db, "stats", db.execute("SELECT min(id) FROM stats").fetchone()[0], at=NOW + timedelta(minutes=10),
              contacts=999)  # stats are insert-only: never sent again
    gw.update(db, "trial_users", db.execute("SELECT min(id) FROM trial_users").fetchone()[0],
              at=NOW + timedelta(minutes=10), otp_entered=True)
    second = _tick(database_url, glific_warehouse_config)

    platform_synced = {(r.table, r.inserted, r.updated) for r in second.results if r.organization_id == tides.id
                       and r.table in PLATFORM_TABLES}
    assert ("organizations", 1, 1) in platform_synced and ("trial_users", 0, 1) in platform_synced
    with Warehouse(glific_warehouse_config, tides) as warehouse:
        versions = [(o["id"], o["name"]) for o in _rows(warehouse, "organizations")]
        assert versions.count((renamed.id, renamed.name)) == 1 and versions.count((renamed.id, "Renamed NGO")) == 1
        assert (joined.id, joined.name) in versions and len(versions) == 5  # 4 organizations, one changed once
        assert [s["contacts"] for s in _rows(warehouse, "stats_all")] == [10, 11, 12]
        assert [t["otp_entered"] for t in _rows(warehouse, "trial_users")] == [False, True, False]


def test_dedup_keeps_every_version_of_organizations_and_deduplicates_trial_users(db, world, database_url, source,
                                                                               glific_warehouse_config):
    tides, ngos = world
    _tick(database_url, glific_warehouse_config)
    gw.update(db, "organizations", ngos[0].id, at=NOW + timedelta(minutes=10), name="Renamed NGO")
    gw.update(db, "trial_users", db.execute("SELECT min(id) FROM trial_users").fetchone()[0],
              at=NOW + timedelta(minutes=10), otp_entered=True)
    _tick(database_url, glific_warehouse_config)

    results = upkeep.dedup_tenants(source, lambda o: Warehouse(glific_warehouse_config, o),
                                   [get_organization(db, o.id) for o in (tides, *ngos)], [STATS])

    with Warehouse(glific_warehouse_config, tides) as warehouse:
        assert [o["name"] for o in _rows(warehouse, "organizations") if o["id"] == ngos[0].id] == [
            ngos[0].name, "Renamed NGO"]
        assert [t["otp_entered"] for t in _rows(warehouse, "trial_users")] == [True, False]
    by_pair = {(r.organization_id, r.table): r for r in results}
    assert not [r for r in results if r.error]
    assert "change log" in by_pair[(tides.id, "organizations")].metadata["skipped_reason"]
    assert by_pair[(tides.id, "trial_users")].metadata["deleted"] == 1
    assert not {t for (o, t) in by_pair if o != tides.id} & PLATFORM_TABLES  # no one else's dedup touches them


def test_without_a_tides_row_or_a_saas_table_there_are_no_platform_tables(db, world, source, glific_warehouse_config):
    tides, _ = world
    tenants = destinations(db, glific_warehouse_config)
    assert platform.work(db, tenants) == {tides.id: list(registry.PLATFORM_TABLES)}
    assert platform.work(db, {**tenants, tides.id: tenants[tides.id].replace("glific:", "raw:", 1)}) == {}
    assert platform.work(db, {o: d for o, d in tenants.items() if o != tides.id}) == {}  # not a tenant

    db.execute("UPDATE saas SET name = 'Other SaaS'")
    assert platform.organization_id(db) is None and platform.work(db, tenants) == {}
    db.execute("DROP TABLE saas")
    assert platform.organization_id(db) is None
    assert not PLATFORM_TABLES & {s.name for specs in tick.plan_tick(source, tenants, [STATS]).values() for s in specs}


def test_the_raw_layout_has_no_platform_tables(db, world, source, warehouse_config):
    tides, _ = world
    assert registry.platform_tables_for(Layout.RAW) == ()
    raw = replace(warehouse_config, layout=Layout.RAW)
    assert platform.work(db, destinations(db, raw)) == {}
    with Warehouse(raw, get_organization(db, tides.id)) as warehouse, pytest.raises(ValueError, match="Glific layout"):
        sync_table(source, warehouse, get_organization(db, tides.id), registry.PLATFORM_TABLES[0])


def test_the_platform_tables_take_over_from_glifics_bigquery_jobs_and_hand_back(db, world, database_url,
                                                                               glific_warehouse_config):
    tides, ngos = world
    # Glific's sync had sent the first two organizations (it creates the platform organization's
    # bigquery_jobs rows for the four tables too: bigquery.ex insert_bigquery_jobs/1).
    gw.insert(db, "bigquery_jobs", [{"organization_id": tides.id, "table": "organizations", "table_id": ngos[0].id,
                                     "last_updated_at": NOW + timedelta(minutes=1)}], at=NOW)

    _tick(database_url, glific_warehouse_config)

    with Warehouse(glific_warehouse_config, tides) as warehouse:
        assert [o["id"] for o in _rows(warehouse, "organizations")] == [ngos[1].id]  # nothing sent twice
    (glifics,) = db.execute("SELECT table_id FROM bigquery_jobs WHERE organization_id = %s AND \"table\" = "
                            "'organizations'", (tides.id,)).fetchone()
    assert glifics == ngos[1].id  # Glific's sync would go on from here


def test_the_minute_sync_job_records_the_platform_tables_under_the_platform_organization(db, world, database_url,
                                                                                         glific_warehouse_config):
    import dagster as dg

    from glific_bq.defs.jobs import sync_job
    from glific_bq.defs.resources import GlificPostgres

    from .helpers import bigquery_resource

    tides, ngos = world
    resources = {"postgres": GlificPostgres(database_url=database_url),
                 "bigquery": bigquery_resource(glific_warehouse_config)}
    instance = dg.DagsterInstance.ephemeral()

    assert sync_job.execute_in_process(resources=resources, instance=instance).success

    for name in PLATFORM_TABLES:
        events = instance.fetch_materializations(dg.AssetKey(["bigquery", name]), limit=10).records
        assert [e.partition_key for e in events] == [str(tides.id)], name
