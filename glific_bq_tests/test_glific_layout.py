"""The Glific layout against Glific's real schema and the emulator: the tables Glific's own sync
writes, with exactly its columns, rows built as it builds them, fresher, and existing datasets
taken over."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import bigquery

from glific_bq import plan, registry, watermarks
from glific_bq.dedup import dedup_table
from glific_bq.layouts import Layout, glific
from glific_bq.local import glific_writes as gw
from glific_bq.sync import SyncOptions, sync_table, sync_tenant
from glific_bq.tenants import get_organization
from glific_bq.warehouse import DEAD_LETTERS, Warehouse, WarehouseConfig

from .helpers import add_organization, destinations

TABLES = registry.GLIFIC_TABLES
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)  # past the sync's horizon
_STANDARD = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}


def _schema(fields) -> list[tuple]:
    return [(f.name, _STANDARD.get(f.field_type, f.field_type), f.mode, tuple(_schema(f.fields))) for f in fields]


def _world(db, timezone_name="Asia/Kolkata"):
    """One organization with a contact in a group, a staff user, a tagged inbound message in a
    published flow, a flow result, and a simulator contact."""
    org = add_organization(db, timezone_name)
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org.id,)).fetchone()[0]
    language = gw._default_language(db, org.id)
    at = NOW - timedelta(hours=1)
    asha = gw.contact(db, org.id, "919811111111", name="Asha", at=at, optin_time=at,
                      fields=gw.contact_fields({"city": "Pune", "children": {"count": 2}}, at=at))
    sim = gw.contact(db, org.id, "9876543210_1", name="Simulator", at=at)
    group = gw.insert_one(db, "groups", at=at, organization_id=org.id, label="Cohort 1", description="first")
    gw.add_to_group(db, org.id, asha, group, at=at)
    tag = gw.insert_one(db, "tags", at=at, organization_id=org.id, label="Greeting", shortcode="greeting",
                        language_id=language)
    staff = gw.user(db, org.id, "919822222222", "Ravi", roles=("admin", "staff"), at=at)
    flow = gw.flow(db, org.id, "Registration", at=at, keywords=["hi", "register"])
    gw.publish_revision(db, flow, at=at)
    message = gw.message(db, org.id, asha, bot, inbound=True, body="hi", flow_id=flow, user_id=staff, group_id=group,
                         sent_at=at, at=at)
    gw.tag_message(db, org.id, message, tag, at=at)
    (flow_uuid,) = db.execute("SELECT uuid FROM flows WHERE id = %s", (flow,)).fetchone()
    gw.insert_one(db, "flow_results", at=at, organization_id=org.id, contact_id=asha, flow_id=flow, flow_uuid=flow_uuid,
                  results={"age": {"input": "31", "category": "Age"}})
    gw.insert_one(db, "flow_results", at=at, organization_id=org.id, contact_id=sim, flow_id=flow, flow_uuid=flow_uuid,
                  results={})
    return get_organization(db, org.id), {"asha": asha, "sim": sim, "group": group, "flow": flow, "message": message,
                                          "staff": staff, "bot": bot}


def _sync_all(source, warehouse, org, **options):
    return {spec.name: sync_table(source, warehouse, org, spec, SyncOptions(**options)) for spec in TABLES}


def _rows(warehouse: Warehouse, table: str) -> list[dict]:
    return warehouse.query(f"SELECT * FROM `{warehouse.dataset_ref}.{table}` ORDER BY id, bq_inserted_at")


def _latest(warehouse: Warehouse, table: str) -> dict[int, dict]:
    latest: dict[int, dict] = {}
    for row in _rows(warehouse, table):
        latest[row["id"]] = row  # ordered by bq_inserted_at: the last one is the newest
    return latest


def test_dataset_is_named_after_the_bot_phone_by_default(db):
    """Glific names an organization's dataset after its bot's phone number; with no template
    configured, so do we, and so take over the dataset Glific's own sync filled."""
    org, ids = _world(db)
    (bot_phone,) = db.execute("SELECT phone FROM contacts WHERE id = %s", (ids["bot"],)).fetchone()
    config = WarehouseConfig(project="p", organizations="active", layout=Layout.GLIFIC)  # no dataset template

    assert bot_phone and config.dataset_for(org) == bot_phone


def test_every_table_has_exactly_glifics_columns(db, source, glific_warehouse_config):
    org, _ = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        results = _sync_all(source, warehouse, org)
        synced = [name for name, r in results.items() if r.status == "synced"]
        missing = {name for name, r in results.items() if r.status == "missing"}
        assert "messages" in synced and "contacts" in synced and len(synced) >= 20
        # An older database lacks some of Glific's newer tables: skipped, and said so.
        assert {"wa_messages", "whatsapp_forms"} <= missing
        assert all("does not exist in the source" in results[name].message for name in missing)
        reference = glific.reference_schema()
        for name in synced:
            table = warehouse.client.get_table(f"{warehouse.dataset_ref}.{name}")
            assert _schema(table.schema) == _schema(reference[name]), name


def test_messages_carry_what_glific_looks_up(db, source, glific_warehouse_config):
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync_all(source, warehouse, org)
        (row,) = _rows(warehouse, "messages")
    expected = db.execute(
        """
        SELECT c.phone, c.name, b.phone, u.phone, u.name, f.name, f.uuid::text, g.label,
               (m.inserted_at AT TIME ZONE 'UTC') AT TIME ZONE 'Asia/Kolkata',
               (m.sent_at AT TIME ZONE 'UTC') AT TIME ZONE 'Asia/Kolkata'
        FROM messages m JOIN contacts c ON c.id = m.contact_id JOIN contacts b ON b.id = m.receiver_id
        JOIN users u ON u.id = m.user_id JOIN flows f ON f.id = m.flow_id JOIN groups g ON g.id = m.group_id
        WHERE m.id = %s
        """,
        (ids["message"],),
    ).fetchone()
    got = (row["contact_phone"], row["contact_name"], row["receiver_phone"], row["user_phone"], row["user_name"],
           row["flow_name"], row["flow_uuid"], row["group_name"], row["inserted_at"], row["sent_at"])
    assert got == expected
    assert row["sender_phone"] == expected[0] and row["flow"] == "inbound" and row["tags_label"] == "Greeting"
    assert row["flow_id"] is None and row["group_message_id"] is None  # declared, never filled, as in Glific
    local_send = datetime.now(timezone.utc).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata"))
    assert abs((row["bq_inserted_at"] - local_send.replace(tzinfo=None)).total_seconds()) < 120


def test_contacts_carry_records_labels_and_skip_the_simulator(db, source, glific_warehouse_config):
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync_all(source, warehouse, org)
        contacts = _latest(warehouse, "contacts")
        results = _rows(warehouse, "flow_results")
    assert ids["sim"] not in contacts  # simulator contacts are left out, as Glific does
    asha = contacts[ids["asha"]]
    assert {f["label"]: f["value"] for f in asha["fields"]} == {"City": "Pune", "Children": json.dumps({"count": 2})}
    assert all(f["inserted_at"] is not None for f in asha["fields"])
    assert [g["label"] for g in asha["groups"]] == ["Cohort 1"] and asha["group_labels"] == "Cohort 1"
    assert json.loads(asha["raw_fields"])["city"]["value"] == "Pune"
    assert asha["provider_status"] == "none" and asha["language"] == "English"
    staff_contact = db.execute("SELECT contact_id FROM users WHERE id = %s", (ids["staff"],)).fetchone()[0]
    assert contacts[staff_contact]["user_role"] == '["admin","staff"]'
    assert [r["contact_phone"] for r in results] == ["919811111111"]
    assert results[0]["name"] == "Registration" and results[0]["flow_version"] == "1"
    assert json.loads(results[0]["results"])["age"]["input"] == "31"


def test_renames_reach_the_rows_that_copy_them(db, source, glific_warehouse_config):
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync_all(source, warehouse, org)
        later = NOW + timedelta(seconds=1)
        gw.update(db, "contacts", ids["asha"], at=later, name="Asha Devi")
        gw.update(db, "flows", ids["flow"], at=later, name="Enrolment")
        gw.update(db, "groups", ids["group"], at=later, label="Cohort A")
        gw.update(db, "users", ids["staff"], at=later, name="Ravi K")
        results = _sync_all(source, warehouse, org, lookup_check_seconds=0)
        message = _latest(warehouse, "messages")[ids["message"]]
        contact = _latest(warehouse, "contacts")[ids["asha"]]
        result = [r for r in _latest(warehouse, "flow_results").values()][0]
    assert (message["contact_name"], message["flow_name"], message["group_name"], message["user_name"]) == (
        "Asha Devi", "Enrolment", "Cohort A", "Ravi K")
    assert contact["group_labels"] == "Cohort A" and contact["groups"][0]["label"] == "Cohort A"
    assert result["name"] == "Enrolment"
    assert results["messages"].refreshed == 1  # the one message, once, though four of its lookups changed
    assert results["flow_results"].refreshed == 1


def test_a_change_of_something_nobody_copies_resends_only_the_row_itself(db, source, glific_warehouse_config):
    """The bot is every inbound message's receiver, but its opt-in method is copied into no
    message: changing it re-sends the bot's contact row and no message."""
    org, ids = _world(db)
    # Stamped before the first look (not, as created, in its last seconds): a contact the first
    # look has not seen may have been renamed before its messages were sent, and is refreshed.
    gw.update(db, "contacts", ids["bot"], at=NOW, optin_method="BSP")
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync_all(source, warehouse, org)
        gw.update(db, "contacts", ids["bot"], at=NOW + timedelta(seconds=1), optin_method="URL")
        results = _sync_all(source, warehouse, org, lookup_check_seconds=0)
        messages = _rows(warehouse, "messages")
    assert (results["contacts"].updated, results["contacts"].refreshed) == (1, 0)
    assert (results["messages"].updated, results["messages"].refreshed) == (0, 0)
    assert len(messages) == 1  # the message sent once


def test_a_flow_revision_published_after_a_sync_is_exported(db, source, glific_warehouse_config):
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        gw.revision(db, ids["flow"], {"name": "Registration", "nodes": [{"uuid": "n2"}]}, at=NOW)
        _sync_all(source, warehouse, org)  # the new revision is still a draft: not exported
        assert [r["status"] for r in _rows(warehouse, "flows")] == ["published"]
        gw.publish_revision(db, ids["flow"], at=NOW + timedelta(seconds=2))
        _sync_all(source, warehouse, org)
        flows = warehouse.query(f"SELECT * FROM `{warehouse.dataset_ref}.flows` ORDER BY bq_inserted_at")
    assert len(flows) == 2 and json.loads(flows[-1]["revision"])["nodes"] == [{"uuid": "n2"}]
    assert flows[-1]["status"] == "published" and flows[-1]["keywords"] == '["hi","register"]'


def test_an_incremental_reader_on_bq_inserted_at_sees_every_change(db, source, glific_warehouse_config):
    org, ids = _world(db)
    seen: dict[int, list[str]] = {}
    last = datetime(1970, 1, 1)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        for n in range(3):
            if n:
                gw.update(db, "messages", ids["message"], at=NOW + timedelta(seconds=n), body=f"edit {n}")
            sync_table(source, warehouse, org, registry.table("messages", TABLES))
            rows = warehouse.query(
                f"SELECT id, body, bq_inserted_at FROM `{warehouse.dataset_ref}.messages` "
                "WHERE bq_inserted_at > @last ORDER BY bq_inserted_at", last=last)
            for row in rows:
                seen.setdefault(row["id"], []).append(row["body"])
            last = max([last, *(r["bq_inserted_at"] for r in rows)])
    assert seen == {ids["message"]: ["hi", "edit 1", "edit 2"]}


def test_a_row_missing_a_required_value_is_set_aside_not_failing_its_table(db, source, glific_warehouse_config):
    org, ids = _world(db)
    flow = gw.flow(db, org.id, "Broken", at=NOW)
    db.execute("UPDATE flow_revisions SET definition = NULL WHERE flow_id = %s", (flow,))
    gw.publish_revision(db, flow, at=NOW)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        result = sync_table(source, warehouse, org, registry.table("flows", TABLES))
        letters = warehouse.query(f"SELECT table_name, error FROM `{warehouse.dataset_ref}.{DEAD_LETTERS}`")
        exported = _rows(warehouse, "flows")
    assert result.status == "synced" and result.set_aside == 1
    assert [r["name"] for r in exported] == ["Registration"]
    assert letters[0]["table_name"] == "flows" and "revision" in letters[0]["error"]


def test_an_existing_glific_dataset_is_taken_over(db, source, glific_warehouse_config):
    """A dataset Glific's sync filled for years: unpartitioned tables with REQUIRED columns,
    history that exists nowhere else (purged messages), rows without bq_uuid, and Glific's own
    watermark rows (duplicated, one with NULL last_updated_at)."""
    org, ids = _world(db)
    warehouse = Warehouse(glific_warehouse_config, org)
    client = warehouse.client
    client.create_dataset(warehouse.dataset_ref)
    table = client.create_table(bigquery.Table(f"{warehouse.dataset_ref}.messages",
                                               schema=list(glific.reference_schema()["messages"])))
    old = {"id": 1_000_000, "uuid": "old", "body": "purged long ago", "type": "text", "flow": "inbound",
           "status": "received", "sender_phone": "1", "receiver_phone": "2", "contact_phone": "1",
           "inserted_at": "2022-01-01T10:00:00", "updated_at": "2022-01-01T10:00:00",
           "bq_inserted_at": "2022-01-01T10:00:01"}
    # Glific also sent the current message, in an older version, just before the hand-over.
    handed_over = {**old, "id": ids["message"], "uuid": "x", "body": "as Glific sent it"}
    assert not client.insert_rows_json(table, [old, {**old, "id": 1_000_001, "bq_uuid": "u1"}, handed_over])
    # As Glific leaves it: two rows for one pair (only a non-unique index), one never synced.
    db.execute("""INSERT INTO bigquery_jobs (organization_id, "table", table_id, last_updated_at, inserted_at, updated_at)
                  VALUES (%s, 'messages', 0, NULL, now(), now()), (%s, 'messages', 0, now(), now(), now())""",
               (org.id, org.id))
    watermarks.ensure_table(db)
    try:
        results = sync_tenant(source, lambda _: warehouse, org.id, [registry.table("messages", TABLES)])
        assert [r.status for r in results] == ["synced"]
        after = client.get_table(f"{warehouse.dataset_ref}.messages")
        assert len(_rows(warehouse, "messages")) == 4  # Glific's three rows, and ours appended
        dedup_table(warehouse, registry.table("messages", TABLES), since=None)
        rows = _rows(warehouse, "messages")
    finally:
        warehouse.close()
    assert after.time_partitioning is None  # never recreated or repartitioned
    # History kept, one history: one row per id, the newest (ours) for the message both sent.
    assert sorted(r["id"] for r in rows) == sorted([1_000_000, 1_000_001, ids["message"]])
    assert {r["id"]: r["body"] for r in rows}[ids["message"]] == "hi"
    (watermark,) = [w for w in watermarks.all_watermarks(db) if w.organization_id == org.id and w.table == "messages"]
    assert watermark.table_id == ids["message"]
    # Glific's rows moved as Glific's sync would have moved them: either sync can take over again.
    glifics = db.execute("""SELECT table_id FROM bigquery_jobs WHERE organization_id = %s AND "table" = 'messages'""",
                         (org.id,)).fetchall()
    assert glifics == [(ids["message"],), (ids["message"],)]


@pytest.mark.parametrize("layout_tables", [registry.RAW_TABLES, registry.GLIFIC_TABLES], ids=["raw", "glific"])
def test_registry_tables_name_their_source(layout_tables):
    for spec in layout_tables:
        assert spec.source
    assert registry.table("flows", registry.GLIFIC_TABLES).source == "flow_revisions"


def test_rows_the_layout_leaves_out_still_move_the_watermark(db, source, glific_warehouse_config):
    """Glific's glific#4108: a batch whose rows are all filtered out never advanced its watermark,
    so the table looked dirty for ever. Here the positions of left-out rows count."""
    org, ids = _world(db)
    contacts, flows = registry.table("contacts", TABLES), registry.table("flows", TABLES)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync_all(source, warehouse, org)
        simulator = gw.contact(db, org.id, "9876543210_2", name="Simulator 2", at=NOW)  # the newest contact
        gw.revision(db, ids["flow"], {"name": "draft", "nodes": []}, at=NOW)  # a draft: not exported
        assert org.id in plan.dirty_organizations(db, contacts, destinations(db, glific_warehouse_config)) and org.id in plan.dirty_organizations(db, flows, destinations(db, glific_warehouse_config))
        sync_table(source, warehouse, org, contacts)
        sync_table(source, warehouse, org, flows)
        assert simulator not in _latest(warehouse, "contacts") and len(_rows(warehouse, "flows")) == 1
    assert watermarks.get(db, org.id, "contacts").table_id == simulator
    assert org.id not in plan.dirty_organizations(db, contacts, destinations(db, glific_warehouse_config)) and org.id not in plan.dirty_organizations(db, flows, destinations(db, glific_warehouse_config))
