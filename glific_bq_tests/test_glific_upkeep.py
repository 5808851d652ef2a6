"""Dedup, views, exports and checks in the Glific layout, against Glific's real schema and the
emulator: one organization synced into Glific's tables, with several versions of some rows, a
flow with two published revisions, history rows Glific wrote before the take-over (no
``bq_uuid``), and a simulator contact."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from glific_bq import registry, views
from glific_bq import upkeep_checks as checks
from glific_bq.dedup import dedup_tenant
from glific_bq.export import export_tenant
from glific_bq.local import glific_writes as gw
from glific_bq.source import Source
from glific_bq.sync import sync_table
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse

TIMEZONE = "Asia/Kolkata"
SYNCED = ("messages", "contacts", "flows", "flow_results", "tags")
#: Past the sync's horizon, so every write is sent by the next sync.
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=10)
_phones = itertools.count(1)


@pytest.fixture
def glific_db(db) -> psycopg.Connection:
    """conftest's database: Glific's real schema and the watermark table."""
    return db


@pytest.fixture
def glific_source(source) -> Source:
    return source


@dataclass
class World:
    conn: psycopg.Connection
    source: Source
    org: Organization
    warehouse: Warehouse
    ids: dict[str, int]

    def rows(self, table: str) -> list[dict]:
        return self.warehouse.query(f"SELECT * FROM `{self.warehouse.dataset_ref}.{table}`")

    def sync(self, *tables: str) -> None:
        for name in tables or SYNCED:
            result = sync_table(self.source, self.warehouse, self.org, registry.table(name, registry.GLIFIC_TABLES))
            assert result.status == "synced", result


@pytest.fixture
def world(glific_db, glific_source, glific_warehouse_config) -> Iterator[World]:
    conn, at = glific_db, NOW - timedelta(hours=2)
    org_id = gw.organization(conn, "Org A", f"orga{next(_phones)}", f"9190000{next(_phones):05d}", timezone=TIMEZONE, at=at)
    bot = conn.execute("SELECT contact_id FROM organizations WHERE id = %s", (org_id,)).fetchone()[0]
    asha = gw.contact(conn, org_id, "919811111111", name="Asha", at=at, optin_time=at,
                      fields=gw.contact_fields({"city": "Pune", "age_group": "30s"}, at=at))
    ben = gw.contact(conn, org_id, "919833333333", name="Ben", at=at)
    sim = gw.contact(conn, org_id, "9876543210_1", name="Simulator", at=at)
    tag = gw.insert_one(conn, "tags", at=at, organization_id=org_id, label="Greeting", shortcode="greeting",
                        language_id=gw._default_language(conn, org_id))
    flow = gw.flow(conn, org_id, "Registration", at=at)
    gw.publish_revision(conn, flow, at=at)
    gw.revision(conn, flow, {"name": "Registration", "nodes": [{"uuid": "n1"}]}, at=at + timedelta(minutes=1))
    gw.publish_revision(conn, flow, at=at + timedelta(minutes=1))
    hi = gw.message(conn, org_id, asha, bot, inbound=True, body="hi", flow_id=flow, at=at)
    gw.tag_message(conn, org_id, hi, tag, at=at)
    failing = gw.message(conn, org_id, asha, bot, inbound=False, body="welcome", is_hsm=True, at=at)
    to_ben = gw.message(conn, org_id, ben, bot, inbound=False, body="hello Ben", at=at)
    to_sim = gw.message(conn, org_id, sim, bot, inbound=True, body="test", at=at)
    (flow_uuid,) = conn.execute("SELECT uuid FROM flows WHERE id = %s", (flow,)).fetchone()
    for contact, results in ((asha, {"age": {"input": "31", "category": "Age"}, "city": {"input": "Pune", "category": "City"}}),
                             (sim, {"age": {"input": "1", "category": "Age"}})):
        gw.insert_one(conn, "flow_results", at=at, organization_id=org_id, contact_id=contact, flow_id=flow,
                      flow_uuid=flow_uuid, flow_version=2, results=results)
    org = get_organization(conn, org_id)
    warehouse = Warehouse(glific_warehouse_config, org)
    w = World(conn, glific_source, org, warehouse, {"asha": asha, "ben": ben, "sim": sim, "flow": flow, "hi": hi,
                                                     "failing": failing, "to_ben": to_ben, "to_sim": to_sim})
    w.sync()
    # Changes after the first sync: new versions of a message and of a contact.
    later = NOW - timedelta(hours=1)
    gw.update(conn, "messages", failing, at=later, status="error", bsp_status="error",
              errors={"message": "failed", "payload": {"payload": {"code": 1002, "reason": "Number does not exist"}}})
    gw.update(conn, "contacts", ben, at=later, name="Ben Renamed")
    w.sync("messages", "contacts")
    yield w
    warehouse.close()


def add_history(w: World) -> int:
    """Rows Glific's own sync wrote before the take-over: no bq_uuid, older send times; one of a
    message that exists only in BigQuery now (purged at the source), in two versions."""
    table = f"`{w.warehouse.dataset_ref}.messages`"
    w.warehouse.query(
        f"INSERT INTO {table} SELECT * REPLACE (CAST(NULL AS STRING) AS bq_uuid, "
        f"DATETIME_SUB(bq_inserted_at, INTERVAL 1 DAY) AS bq_inserted_at, 'old body' AS body) "
        f"FROM {table} WHERE id = @id", id=w.ids["hi"])
    purged = 10**9
    for days, body in ((3, "purged, first"), (2, "purged, last")):
        w.warehouse.query(
            f"INSERT INTO {table} SELECT * REPLACE (@purged AS id, CAST(NULL AS STRING) AS bq_uuid, "
            f"DATETIME_SUB(bq_inserted_at, INTERVAL {days} DAY) AS bq_inserted_at, @body AS body) "
            f"FROM {table} WHERE id = @id AND bq_uuid IS NOT NULL", id=w.ids["to_ben"], purged=purged, body=body)
    return purged


def resend_newest_revision(w: World) -> None:
    """An at-least-once re-send of the newest flow revision: the same row, a new send."""
    table = f"`{w.warehouse.dataset_ref}.flows`"
    w.warehouse.query(
        f"INSERT INTO {table} SELECT * REPLACE (GENERATE_UUID() AS bq_uuid, "
        f"DATETIME_ADD(bq_inserted_at, INTERVAL 1 SECOND) AS bq_inserted_at) FROM {table} "
        f"QUALIFY ROW_NUMBER() OVER (ORDER BY inserted_at DESC, bq_inserted_at DESC) = 1")


def newest(rows: list[dict], key=("id",)) -> dict[tuple, dict]:
    """The newest version per key: the latest send, a row without a send time the oldest."""
    def order(r):
        return (r["bq_inserted_at"] is not None, r["bq_inserted_at"] or datetime.min, r["bq_uuid"] or "")

    found: dict[tuple, dict] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        if k not in found or order(row) > order(found[k]):
            found[k] = row
    return found


# -- dedup ---------------------------------------------------------------------------------------


def test_dedup_leaves_exactly_the_newest_version_per_id_history_without_bq_uuid_included(world):
    purged = add_history(world)
    before = world.rows("messages")
    expected = {k[0]: (r["body"], r["status"]) for k, r in newest(before).items()}
    assert len(before) > len(expected)  # there is something to deduplicate

    results = {r.table: r for r in dedup_tenant(world.warehouse, since=None)}

    assert all(r.error is None for r in results.values()), [r.error for r in results.values() if r.error]
    after = world.rows("messages")
    assert sorted(r["id"] for r in after) == sorted(expected)  # one row per id
    assert {r["id"]: (r["body"], r["status"]) for r in after} == expected
    assert {r["id"]: r["body"] for r in after}[purged] == "purged, last"  # history only in BigQuery stays
    assert {r["id"]: r["body"] for r in after}[world.ids["hi"]] == "hi"  # the synced version beats the older history
    assert all(r["bq_uuid"] for r in after)
    assert results["messages"].deleted == len(before) - len(after)
    assert {r["id"]: r["name"] for r in world.rows("contacts")}[world.ids["ben"]] == "Ben Renamed"
    assert len(world.rows("contacts")) == len({r["id"] for r in world.rows("contacts")})


def test_tables_glific_writes_without_send_columns_are_skipped_with_the_reason(world):
    (tags,) = dedup_tenant(world.warehouse, ["tags"], since=None)

    assert tags.deleted == 0 and tags.error is None
    assert "bq_uuid" in tags.skipped_reason and "Glific" in tags.skipped_reason


def test_flow_revisions_survive_dedup_and_only_their_resends_go(world):
    resend_newest_revision(world)
    before = world.rows("flows")
    assert len(before) == 3 and {r["id"] for r in before} == {world.ids["flow"]}  # two revisions, one re-sent

    dedup_tenant(world.warehouse, ["flows"], since=None)

    after = world.rows("flows")
    assert len(after) == 2
    assert sorted(r["status"] for r in after) == ["archived", "published"]
    kept = {(r["id"], r["inserted_at"]): r["bq_uuid"] for r in after}
    assert kept == {k: r["bq_uuid"] for k, r in newest(before, ("id", "inserted_at")).items()}


# -- views ---------------------------------------------------------------------------------------


def test_latest_views_hold_one_row_per_id_and_flows_one_per_revision(world):
    add_history(world)
    resend_newest_revision(world)

    created = views.create_views(world.warehouse)

    assert {"messages_latest", "contacts_latest", "flows_latest", "tags_latest", "contacts_messages",
            views.FLAT_FIELDS} <= set(created)
    for table, key in (("messages", ("id",)), ("contacts", ("id",)), ("flow_results", ("id",)),
                       ("tags", ("id",)), ("flows", ("id", "inserted_at"))):
        rows = world.rows(table)
        latest = world.warehouse.query(f"SELECT * FROM `{world.warehouse.dataset_ref}.{table}_latest`")
        if table == "tags":
            assert len(latest) == len({r["id"] for r in rows})
            continue
        assert {tuple(r[c] for c in key): r["bq_uuid"] for r in latest} == {
            k: r["bq_uuid"] for k, r in newest(rows, key).items()}, table
        assert len(latest) == len(newest(rows, key))
    assert len(world.warehouse.query(f"SELECT * FROM `{world.warehouse.dataset_ref}.flows_latest`")) == 2


def test_contacts_messages_is_glifics_view_with_one_row_per_message(world):
    views.create_views(world.warehouse)

    rows = world.warehouse.query(f"SELECT * FROM `{world.warehouse.dataset_ref}.contacts_messages`")

    assert list(rows[0]) == ["id", "uuid", "contact_phone", "phone", "name", "optin_time", "language", "flow_label",
                             "tags_label", "inserted_at", "media_url"]
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == len(by_id)  # one row per message, although messages and contacts hold several versions
    ids = world.ids
    assert set(by_id) == {ids["hi"], ids["failing"], ids["to_ben"]}  # the simulator's message: no exported contact
    assert by_id[ids["to_ben"]]["name"] == "Ben Renamed"
    assert by_id[ids["hi"]]["tags_label"] == "Greeting" and by_id[ids["failing"]]["tags_label"] == ""
    assert by_id[ids["hi"]]["language"] == "English"


def test_flat_fields_has_one_row_per_contact_and_a_column_per_field_label(world):
    views.create_views(world.warehouse)

    rows = world.warehouse.query(f"SELECT * FROM `{world.warehouse.dataset_ref}.flat_fields`")

    assert len(rows) == len({r["id"] for r in rows}) == len(newest(world.rows("contacts")))
    asha = next(r for r in rows if r["id"] == world.ids["asha"])
    assert (asha["City"], asha["Age_Group"]) == ("Pune", "30s")


def test_report_views_return_what_a_query_over_the_source_computes(world):
    views.create_views(world.warehouse)
    ref = world.warehouse.dataset_ref

    failures = world.warehouse.query(f"SELECT id, contact_phone, bsp_status, error_code, error_message FROM `{ref}.message_delivery_failures`")
    at_source = world.conn.execute(
        "SELECT m.id, c.phone, m.bsp_status::text, m.errors->'payload'->'payload'->>'code', "
        "m.errors->'payload'->'payload'->>'reason' FROM messages m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.organization_id = %s AND (m.status = 'error' OR m.bsp_status = 'error')", (world.org.id,)).fetchall()
    assert sorted(tuple(r.values()) for r in failures) == sorted(at_source) and at_source

    answers = world.warehouse.query(f"SELECT flow_result_id, flow_name, contact_phone, answer_key, answer_input, "
                                    f"answer_category FROM `{ref}.flow_results_answers`")
    at_source = world.conn.execute(
        "SELECT fr.id, f.name, c.phone, e.key, e.value->>'input', e.value->>'category' "
        "FROM flow_results fr JOIN flows f ON f.id = fr.flow_id JOIN contacts c ON c.id = fr.contact_id, "
        "jsonb_each(fr.results) e WHERE fr.organization_id = %s AND c.phone NOT LIKE '9876543210%%'",
        (world.org.id,)).fetchall()
    assert sorted(tuple(r.values()) for r in answers) == sorted(at_source) and len(at_source) == 2

    counts = world.warehouse.query(f"SELECT day, direction, status, message_count FROM `{ref}.daily_message_counts`")
    at_source = world.conn.execute(
        "SELECT ((inserted_at AT TIME ZONE 'UTC') AT TIME ZONE %s)::date, flow::text, status::text, count(*) "
        "FROM messages WHERE organization_id = %s GROUP BY 1, 2, 3", (TIMEZONE, world.org.id)).fetchall()
    assert sorted(tuple(r.values()) for r in counts) == sorted(at_source)


# -- exports and checks --------------------------------------------------------------------------


def test_an_export_holds_the_latest_state_of_glifics_tables(world, tmp_path):
    add_history(world)
    resend_newest_revision(world)

    result = export_tenant(world.warehouse, ["messages", "flows", "tags"], formats=["csv"], destination=tmp_path)

    def read(table):
        path = next(f.uri for f in result.files if f.table == table)
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))

    messages = {int(r["id"]): (r["body"], r["status"]) for r in read("messages")}
    at_source = world.conn.execute("SELECT id, body, status::text FROM messages WHERE organization_id = %s",
                                   (world.org.id,)).fetchall()
    assert {i: v for i, v in messages.items() if i != 10**9} == {i: (b, s) for i, b, s in at_source}
    assert messages[10**9] == ("purged, last", "enqueued")  # history kept, in its newest version
    flows = read("flows")
    revisions = world.conn.execute("SELECT status FROM flow_revisions WHERE flow_id = %s AND status <> 'draft'",
                                   (world.ids["flow"],)).fetchall()
    assert sorted(r["status"] for r in flows) == sorted(s for (s,) in revisions)
    assert json.loads(next(r for r in flows if r["status"] == "published")["revision"])["nodes"] == [{"uuid": "n1"}]
    assert [r["label"] for r in read("tags")] == ["Greeting"]
    assert "bq_uuid" not in flows[0]


def test_checks_pass_on_a_synced_tenant_and_name_it_when_a_row_is_missing(world):
    specs = [registry.table(name, registry.GLIFIC_TABLES) for name in ("messages", "contacts", "flows", "flow_results")]
    for spec in specs:
        unique = checks.duplicate_ids(world.warehouse, world.org.id, spec.name)
        reconciled = checks.reconcile(world.source, world.warehouse, world.org.id, spec)
        assert unique.passed and reconciled.passed, (unique, reconciled)
        assert reconciled.numbers["missing"] == 0

    world.warehouse.query(f"DELETE FROM `{world.warehouse.dataset_ref}.messages` WHERE id = @id", id=world.ids["to_ben"])
    finding = checks.reconcile(world.source, world.warehouse, world.org.id, specs[0])

    assert not finding.passed
    assert finding.organization_id == world.org.id and str(world.ids["to_ben"]) in finding.summary
