"""Glific's control plane: exactly the organizations Glific would sync are synced, each with the
key it saved in Glific (decrypted with Glific's own CIPHER_KEY/OLD_CIPHER_KEY), into that key's
own project and nowhere else; the NGO is told in Glific's notifications when its key fails and
when it works again; no key material leaks anywhere."""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from dataclasses import replace

import pytest

from glific_bq import notices, roster, tick
from glific_bq.cloak import Vault
from glific_bq.local import glific_writes
from glific_bq.registry import TableSpec
from glific_bq.tenants import get_organization
from glific_bq.tick import TickOptions
from glific_bq.warehouse import Warehouse, WarehouseConfig

NOTES = TableSpec("notes")
CIPHER_KEY = base64.b64encode(os.urandom(32)).decode()
OLD_CIPHER_KEY = base64.b64encode(os.urandom(32)).decode()
VAULT = Vault.from_env({"CIPHER_KEY": CIPHER_KEY, "OLD_CIPHER_KEY": OLD_CIPHER_KEY})
#: One real-looking key, reused with other project ids (generating RSA keys is slow).
KEY = glific_writes.service_account_key("template-project")


def key_of(project: str) -> dict:
    return {**KEY, "project_id": project, "client_email": f"sync@{project}.iam.gserviceaccount.com"}


@pytest.fixture
def config(bigquery_emulator) -> WarehouseConfig:
    """Glific's own rule (the default) against the emulator; the emulator's project plays the
    platform's own project (GLIFIC_BQ_PROJECT), where nothing may ever land."""
    return WarehouseConfig(
        project=bigquery_emulator.project,
        dataset_template=f"c{uuid.uuid4().hex[:8]}_{{organization_id}}",
        emulator_host=bigquery_emulator.rest_url,
        storage_emulator_host=bigquery_emulator.grpc_endpoint,
        layout="raw",
        cipher_key=CIPHER_KEY,
        old_cipher_key=OLD_CIPHER_KEY,
    )


def organization(conn, notes: int = 2, **columns) -> int:
    suffix = uuid.uuid4().hex[:8]
    organization_id = glific_writes.organization(
        conn, f"NGO {suffix}", f"ngo{suffix}", f"91{int(suffix, 16) % 10**10:010d}", **columns)
    conn.execute("INSERT INTO notes (organization_id, body) SELECT %s, 'note ' || g FROM generate_series(1, %s) g",
                 (organization_id, notes))
    return organization_id


def project_of(organization_id: int) -> str:
    return f"ngo-project-{organization_id}"


def enable(conn, organization_id: int, **options) -> None:
    glific_writes.bigquery_credential(conn, organization_id, key_of(project_of(organization_id)), VAULT, **options)


def datasets(config: WarehouseConfig, project: str) -> set[str]:
    warehouse = Warehouse(replace(config, organizations="active", project=project),
                          get_organization_stub(project))
    prefix = config.dataset_template.split("{")[0]
    return {d.dataset_id for d in warehouse.client.list_datasets(project) if d.dataset_id.startswith(prefix)}


def get_organization_stub(project: str):
    from glific_bq.tenants import Organization

    return Organization(0, "stub", "UTC", True)


def rows_in(config: WarehouseConfig, project: str, organization_id: int) -> list[dict]:
    dataset = config.dataset_template.format(organization_id=organization_id)
    warehouse = Warehouse(replace(config, organizations="active", project=project), get_organization_stub(project))
    return warehouse.query(f"SELECT id, organization_id FROM `{project}.{dataset}.notes` ORDER BY id")


@pytest.fixture
def states(notes):
    """Organizations in every state Glific's settings and admin can leave them in."""
    db = notes
    ids = {
        "active": organization(db),
        "rotated": organization(db),  # its key encrypted with the old cipher (before a rotation)
        "switched_off": organization(db),
        "never_enabled": organization(db),
        "suspended": organization(db),
        "deleted": organization(db),
        "inactive": organization(db),
        "undecryptable": organization(db),
        "not_a_key": organization(db),
    }
    enable(db, ids["active"])
    enable(db, ids["rotated"], tag="AES.GCM.V2")
    enable(db, ids["switched_off"], active=False)
    enable(db, ids["suspended"])
    enable(db, ids["deleted"])
    enable(db, ids["inactive"])
    other = Vault.from_env({"CIPHER_KEY": base64.b64encode(os.urandom(32)).decode()})
    glific_writes.bigquery_credential(db, ids["undecryptable"], key_of("x"), other)
    glific_writes.bigquery_credential(db, ids["not_a_key"], json.dumps({"hello": "world"}), VAULT)
    db.execute("UPDATE organizations SET is_suspended = true WHERE id = %s", (ids["suspended"],))
    db.execute("UPDATE organizations SET deleted_at = now() WHERE id = %s", (ids["deleted"],))
    db.execute("UPDATE organizations SET is_active = false WHERE id = %s", (ids["inactive"],))
    return ids


def test_the_roster_is_glifics_rule_with_the_reason_for_everyone_else(db, states, config):
    found = roster.select_tenants(db, config)

    assert sorted(t.id for t in found.tenants) == sorted([states["active"], states["rotated"]])
    assert {t.id: t.project for t in found.tenants} == {states["active"]: project_of(states["active"]),
                                                        states["rotated"]: project_of(states["rotated"])}
    kinds = {n.id: n.kind for n in found.not_synced}
    assert kinds == {
        states["switched_off"]: roster.SWITCHED_OFF, states["never_enabled"]: roster.NEVER_ENABLED,
        states["suspended"]: roster.SUSPENDED, states["deleted"]: roster.DELETED, states["inactive"]: roster.INACTIVE,
        states["undecryptable"]: roster.KEY_UNUSABLE, states["not_a_key"]: roster.KEY_UNUSABLE,
    }
    reasons = {n.id: n.reason for n in found.not_synced}
    assert "CIPHER_KEY" in reasons[states["undecryptable"]]  # names the variable to check
    assert "not a service-account key" in reasons[states["not_a_key"]]


def test_each_organization_lands_in_its_own_project_and_nowhere_else(db, states, config, database_url):
    result = tick.run_tick(database_url, config, TickOptions(workers=2), tables=[NOTES])

    assert sorted((r.organization_id, r.status) for r in result.results) == sorted(
        [(states["active"], "synced"), (states["rotated"], "synced")])
    for name in ("active", "rotated"):
        org = states[name]
        assert [r["organization_id"] for r in rows_in(config, project_of(org), org)] == [org, org]
        for other in ("active", "rotated"):  # and not in the other tenant's project
            if other != name:
                assert datasets(config, project_of(states[other])) == {config.dataset_template.format(
                    organization_id=states[other])}
    assert datasets(config, config.project) == set()  # nothing ever in the platform's project
    for name in set(states) - {"active", "rotated"}:
        assert datasets(config, project_of(states[name])) == set()


def test_a_change_in_glific_takes_effect_at_the_next_tick(db, states, config, database_url):
    tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])
    enable(db, states["never_enabled"])  # the NGO turns BigQuery on in Glific's settings
    db.execute("UPDATE credentials SET is_active = false WHERE organization_id = %s", (states["active"],))
    db.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'after'), (%s, 'after')",
               (states["active"], states["never_enabled"]))

    second = tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])

    assert [(r.organization_id, r.status) for r in second.results] == [(states["never_enabled"], "synced")]
    org = states["never_enabled"]
    assert len(rows_in(config, project_of(org), org)) == 3
    assert len(rows_in(config, project_of(states["active"]), states["active"])) == 2  # switched off: nothing more


def test_a_rotated_key_is_used_from_the_next_tick(db, notes, config, database_url):
    org = organization(notes)
    enable(notes, org)
    tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])
    moved = f"{project_of(org)}-moved"
    glific_writes.bigquery_credential(notes, org, key_of(moved), VAULT, at=glific_writes.utc_now().replace(year=2100))
    notes.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'after')", (org,))

    tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])

    # the new project has the whole table: a new destination starts from the beginning
    assert [r["organization_id"] for r in rows_in(config, moved, org)] == [org] * 3
    assert len(rows_in(config, project_of(org), org)) == 2  # the old one is left as it was


def _notes_in(config: WarehouseConfig, organization_id, db) -> list[int]:
    warehouse = Warehouse(config, get_organization(db, organization_id))
    return [r["id"] for r in warehouse.query(f"SELECT id FROM `{warehouse.dataset_ref}.notes` ORDER BY id")]


def test_every_change_of_destination_gets_the_whole_table_and_moves_no_other_watermark(db, notes, config,
                                                                                        database_url):
    """A bot's phone changed (a new {phone} dataset), or another dataset template (a layout
    override is the same: the layout is part of the destination): each destination has its own
    watermarks, so each gets every row, and none moves another's."""
    from glific_bq import watermarks

    org = organization(notes, notes=21)
    enable(notes, org)
    by_phone = replace(config, dataset_template=f"p{uuid.uuid4().hex[:6]}_{{phone}}")
    tick.run_tick(database_url, by_phone, TickOptions(workers=1), tables=[NOTES])
    before = get_organization(db, org)
    first = Warehouse(by_phone, before).destination
    assert len(_notes_in(by_phone, org, db)) == 21

    db.execute("UPDATE contacts SET phone = '919999000111' WHERE id = (SELECT contact_id FROM organizations "
               "WHERE id = %s)", (org,))
    tick.run_tick(database_url, by_phone, TickOptions(workers=1), tables=[NOTES])
    after = get_organization(db, org)
    assert by_phone.dataset_for(after) != by_phone.dataset_for(before)
    assert len(_notes_in(by_phone, org, db)) == 21  # the new dataset: the whole table

    other_layout = replace(by_phone, dataset_template=f"l{uuid.uuid4().hex[:6]}_{{organization_id}}")
    table_ids = {w.destination: w.table_id for w in watermarks.all_watermarks(db) if w.organization_id == org}
    tick.run_tick(database_url, other_layout, TickOptions(workers=1), tables=[NOTES])
    assert len(_notes_in(other_layout, org, db)) == 21
    now = {w.destination: w.table_id for w in watermarks.all_watermarks(db) if w.organization_id == org}
    assert first in now and len(now) == 3 and all(now[d] == table_ids[d] for d in table_ids)


def test_a_hand_run_of_an_organization_that_is_not_synced_says_why(db, states, config, database_url):
    found = roster.select_tenants(db, config)
    work = {states["switched_off"]: [NOTES], states["active"]: [NOTES]}

    results = tick.sync_tenants(database_url, lambda o: Warehouse(config, o), work, TickOptions(workers=1),
                                roster=found)

    status = {r.organization_id: (r.status, r.message) for r in results}
    assert status[states["switched_off"]] == ("not_synced", f"not synced: {roster.SWITCHED_OFF}")
    assert status[states["active"]][0] == "synced"
    assert datasets(config, project_of(states["switched_off"])) == set()


def test_a_warehouse_never_falls_back_to_the_platforms_key_or_project(db, states, config):
    for name in ("never_enabled", "switched_off", "undecryptable", "not_a_key"):
        with pytest.raises(Exception, match="credential|service-account|CIPHER_KEY") as caught:
            Warehouse(config, get_organization(db, states[name]))
        assert type(caught.value).__name__ == "CredentialsError"


def notifications(db, organization_id: int) -> list[tuple[str, str, str]]:
    return db.execute("SELECT category, severity, message FROM notifications WHERE organization_id = %s ORDER BY id",
                      (organization_id,)).fetchall()


def test_the_ngo_is_told_once_per_incident_and_once_when_it_works_again(db, states, config, database_url):
    for _ in range(3):  # three ticks: still one notice
        tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])

    told = notifications(db, states["undecryptable"])
    assert told == [("Partner", "Critical", notices.MESSAGES[notices.KEY_UNUSABLE])]
    assert notifications(db, states["not_a_key"]) == told
    for name in ("never_enabled", "switched_off", "suspended", "deleted", "inactive", "active", "rotated"):
        assert notifications(db, states[name]) == [], name
    entity = db.execute("SELECT entity FROM notifications WHERE organization_id = %s", (states["undecryptable"],)).fetchone()[0]
    assert entity["shortcode"] == "bigquery" and entity["id"] is not None

    enable(db, states["undecryptable"])  # the NGO saves a good key
    tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])
    tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])

    assert notifications(db, states["undecryptable"])[1:] == [("Partner", "Information", notices.RECOVERED)]


def test_a_permission_denied_at_bigquery_is_an_incident_for_the_ngo(db, notes, config):
    org = organization(notes)
    from glific_bq.sync import TableSync

    found = roster.select_tenants(db, config)
    failed = [TableSync(org, "notes", status="failed", message="Forbidden: 403 Access Denied: Project p: User does "
                        "not have bigquery.datasets.create permission")]
    with tick.Source(db.info.dsn) as source:
        assert tick.tell_organizations(source, found, failed) == ([org], [])
        assert tick.tell_organizations(source, found, failed) == ([], [])  # same incident: no second notice
    assert notifications(db, org) == [("Partner", "Critical", notices.MESSAGES[notices.PERMISSION_DENIED])]


def test_two_organizations_with_one_bot_phone_never_share_a_dataset(db, notes, bigquery_emulator):
    config = WarehouseConfig(project=bigquery_emulator.project, organizations="active",
                             dataset_template="shared_{phone}", emulator_host=bigquery_emulator.rest_url)
    first, second = organization(notes), organization(notes)
    phone = db.execute("SELECT c.phone FROM organizations o JOIN contacts c ON c.id = o.contact_id WHERE o.id = %s",
                       (first,)).fetchone()[0]
    db.execute("UPDATE contacts SET phone = %s WHERE id = (SELECT contact_id FROM organizations WHERE id = %s)",
               (phone, second))

    found = roster.select_tenants(db, config)

    assert [t.id for t in found.tenants if t.id in (first, second)] == [first]
    why = found.why_not(second)
    assert why.kind == roster.SHARED_DATASET and f"organization {first}" in why.reason


def test_include_and_exclude_lists_only_narrow_the_set(db, states, config):
    include = f"{states['active']},{states['never_enabled']}"
    found = roster.select_tenants(db, replace(config, include_organizations=include))
    assert [t.id for t in found.tenants] == [states["active"]]
    assert found.why_not(states["rotated"]).kind == roster.NOT_INCLUDED

    found = roster.select_tenants(db, replace(config, exclude_organizations=str(states["active"])))
    assert [t.id for t in found.tenants] == [states["rotated"]]


def test_no_key_material_reaches_logs_errors_or_the_roster(db, states, config, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    result = tick.run_tick(database_url, config, TickOptions(workers=1), tables=[NOTES])

    private = KEY["private_key"].splitlines()[1]  # a line of the PEM body
    seen = "\n".join([caplog.text, repr(result), repr(config), repr(roster.select_tenants(db, config)),
                      *(n.reason for n in result.roster.not_synced),
                      *(m for (m,) in db.execute("SELECT message FROM notifications"))])
    for secret in (private, CIPHER_KEY, OLD_CIPHER_KEY, KEY["private_key_id"]):
        assert secret not in seen


def test_no_key_material_reaches_dagsters_storage(db, states, config, database_url, monkeypatch, tmp_path):
    """A deployment's run storage, event log and compute logs, after a sync run and the sensors:
    the keys (and Glific's cipher keys, given as EnvVars as in production) are nowhere in them."""
    import dagster as dg

    from glific_bq.defs.alerting import stalled_watermarks
    from glific_bq.defs.jobs import sync_job
    from glific_bq.defs.resources import GlificBigQuery, GlificPostgres
    from glific_bq.defs.sensors import tenant_discovery

    monkeypatch.setenv("CIPHER_KEY", CIPHER_KEY)
    monkeypatch.setenv("OLD_CIPHER_KEY", OLD_CIPHER_KEY)
    bigquery = GlificBigQuery(dataset_template=config.dataset_template, layout="raw", emulator_host=config.emulator_host,
                              storage_emulator_host=config.storage_emulator_host,
                              cipher_key=dg.EnvVar("CIPHER_KEY"), old_cipher_key=dg.EnvVar("OLD_CIPHER_KEY"))
    resources = {"postgres": GlificPostgres(database_url=database_url), "bigquery": bigquery}
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        for sensor in (tenant_discovery, stalled_watermarks):
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                result = sensor(context)
            for event in getattr(result, "asset_events", None) or []:
                instance.report_runless_asset_event(event)
        from glific_bq.defs.assets import table_assets

        defs = dg.Definitions(assets=table_assets, jobs=[sync_job], resources=resources)
        run = defs.resolve_job_def("sync_job").execute_in_process(instance=instance, raise_on_error=False)
        assert run.success
    stored = b"".join(f.read_bytes() for f in (tmp_path / "dagster_home").rglob("*") if f.is_file())
    assert b"tenant_roster" in stored and b"sync_dirty_tenants" in stored  # the storage was written
    private = KEY["private_key"].splitlines()[1]
    for secret in (private, CIPHER_KEY, OLD_CIPHER_KEY, KEY["private_key_id"]):
        assert secret.encode() not in stored


def test_the_active_rule_is_explicit_and_needs_a_project(db, states):
    with pytest.raises(ValueError, match="GLIFIC_BQ_PROJECT"):
        WarehouseConfig(organizations="active")
    with pytest.raises(ValueError, match="GLIFIC_BQ_ORGANIZATIONS"):
        WarehouseConfig(organizations="everyone")
    assert WarehouseConfig().rule.value == "glific"  # the default: Glific's own rule, no project needed


def test_databases_without_glifics_control_plane_tables_sync_no_one_by_glifics_rule(db, notes, config):
    org = organization(notes)
    enable(notes, org)
    db.execute("ALTER TABLE organizations DROP COLUMN deleted_at")  # a Glific from before 2026
    assert [t.id for t in roster.select_tenants(db, config).tenants] == [org]
    db.execute("DROP TABLE credentials CASCADE")
    found = roster.select_tenants(db, config)
    assert found.tenants == [] and found.why_not(org).kind == roster.NEVER_ENABLED


def _documented_grants() -> str:
    """The SQL block of docs/deploy.md's "The database role", as an operator would run it."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    section = text.split("### The database role", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def test_a_tick_runs_as_a_role_with_exactly_the_documented_grants(db, states, config, database_url):
    """The switch-over's database role (docs/deploy.md), created as documented: a tick syncs,
    moves Glific's watermarks, tells the NGO, and sees other roles' open transactions."""
    import psycopg

    from glific_bq import horizon, watermarks

    for (table,) in db.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'glific\\_bq\\_%'").fetchall():
        db.execute(f"DROP TABLE {table}")  # glific_bq's own tables: its role creates them
    role = f"glific_bq_{uuid.uuid4().hex[:6]}"
    db.execute(_documented_grants().replace("glific_bq", role).replace("'…'", "'x'"))
    db.execute("INSERT INTO bigquery_jobs (organization_id, \"table\", table_id, inserted_at, updated_at) "
               "VALUES (%s, 'notes', 0, now(), now())", (states["active"],))
    url = psycopg.conninfo.make_conninfo(database_url, user=role, password="x")
    enable(db, states["suspended"])  # a second credential saved: nothing changes for a suspended NGO
    broken = organization(db)
    glific_writes.bigquery_credential(db, broken, key_of("x"), Vault.from_env({"CIPHER_KEY": OLD_CIPHER_KEY}))

    result = tick.run_tick(url, replace(config, layout="raw"), TickOptions(workers=2), tables=[NOTES])

    assert sorted((r.organization_id, r.status) for r in result.results) == sorted(
        [(states["active"], "synced"), (states["rotated"], "synced")])
    with psycopg.connect(url, autocommit=True) as conn:
        assert horizon.late_commit_warning(conn) is None  # pg_read_all_stats granted
        assert watermarks.get(conn, states["active"], "notes").table_id > 0
        watermarks.create(conn, states["active"], "notes", "glific:p.d")  # as for a Glific dataset:
        watermarks.advance(conn, states["active"], "notes", "glific:p.d", table_id=7)  # Glific's row moves too
    assert db.execute("SELECT table_id FROM bigquery_jobs WHERE organization_id = %s", (states["active"],)).fetchone() \
        == (7,)
    assert db.execute("SELECT count(*) FROM notifications WHERE organization_id = %s", (broken,)).fetchone()[0] == 1
