"""The views against the BigQuery emulator, over rows synced from a real PostgreSQL.

Most tests read one hand-built world, synced once for the module (the ``db``/``source``/
``warehouse_for`` fixtures are per test; building the world per test would cost ~6 s each): two
organizations in different timezones (Asia/Kolkata, UTC+5:30, and America/Sao_Paulo, UTC-3) whose
rows carry the same UTC instants, so that a view bucketing by UTC days instead of local days gets
different answers. The views are created after the first sync and the world then changes (statuses
advance, answers are edited, a contact is edited without touching ``updated_at`` and re-sent): the
views must show the newest state without being re-created, with several versions of those rows in
the tables (no dedup runs here).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from glific_bq import views, watermarks
from glific_bq.dedup import dedup_table
from glific_bq.defs.assets import source_assets, table_assets
from glific_bq.defs.reports import report_assets, report_sensors
from glific_bq.defs.resources import GlificBigQuery, GlificPostgres
from glific_bq.layouts import Layout
from glific_bq.local.sample_data import create_schema
from glific_bq.registry import TABLES, TableSpec, table
from glific_bq.source import Source
from glific_bq.sync import sync_table
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

from .helpers import NOTES_DDL, add_notes, add_organization, bigquery_resource, latest_versions, warehouse_rows

DOCS = Path(__file__).resolve().parents[1] / "docs" / "looker-studio.md"
KOLKATA, SAO_PAULO = "Asia/Kolkata", "America/Sao_Paulo"
SYNCED = ("contacts", "messages", "flows", "flow_results")

#: The shapes of ``messages.errors`` the views must parse: sample_data's (Gupshup event nested in
#: ``payload.payload``), the traffic simulator's (``payload.code``), WhatsApp Cloud API's.
GUPSHUP_ERROR = {"message": "Could not send message to contact 😞",
                 "payload": {"payload": {"code": 1002, "reason": "Number Does Not Exists On WhatsApp",
                                         "type": "message-event"}}}
TRAFFIC_ERROR = {"message": "Message undeliverable 😞", "payload": {"code": 470}}
CLOUD_API_ERROR = {"error": {"code": 131026, "message": "Message undeliverable",
                             "error_data": {"details": "Receiver is incapable of receiving this message"}}}


def utc(text: str) -> datetime:
    """A naive UTC timestamp, as Glific stores them."""
    return datetime.fromisoformat(text)


def d(text: str):
    return datetime.fromisoformat(text).date()


@dataclass
class World:
    conn: psycopg.Connection
    source: Source
    orgs: dict[str, Organization] = field(default_factory=dict)
    warehouses: dict[str, Warehouse] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    created: dict[str, views.CreatedViews] = field(default_factory=dict)

    def add(self, label: str, statement: str, params: tuple) -> int:
        (self.ids[label],) = self.conn.execute(statement + " RETURNING id", params).fetchone()
        return self.ids[label]

    def contact(self, label, org, name, phone, inserted, optin=None, optout=None):
        return self.add(label, "INSERT INTO contacts (name, phone, optin_time, optin_status, optout_time, "
                        "fields, organization_id, inserted_at, updated_at, language_id) VALUES (%s, %s, %s, %s, %s, %s, "
                        "%s, %s, %s, (SELECT default_language_id FROM organizations WHERE id = %s))",
                        (name, phone, optin, optin is not None, optout, Jsonb({"district": {"value": "Pune"}}),
                         self.orgs[org].id, inserted, inserted, self.orgs[org].id))

    def message(self, label, org, contact, direction, type_, status, inserted, errors=None):
        c = self.ids[contact]
        return self.add(label, "INSERT INTO messages (body, type, flow, status, bsp_status, errors, sender_id, "
                        "receiver_id, contact_id, organization_id, inserted_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (f"{label} body", type_, direction, status, status, Jsonb(errors) if errors is not None else None,
                         c, c, c, self.orgs[org].id, inserted, inserted))

    def flow(self, label, org, name, inserted):
        return self.add(label, "INSERT INTO flows (name, uuid, organization_id, inserted_at, updated_at) "
                        "VALUES (%s, gen_random_uuid(), %s, %s, %s)", (name, self.orgs[org].id, inserted, inserted))

    def flow_result(self, label, org, flow, contact, results, inserted):
        return self.add(label, "INSERT INTO flow_results (results, flow_uuid, flow_version, contact_id, flow_id, "
                        "organization_id, inserted_at, updated_at) "
                        "SELECT %s, uuid, 3, %s, id, %s, %s, %s FROM flows WHERE id = %s",
                        (Jsonb(results), self.ids[contact], self.orgs[org].id, inserted, inserted, self.ids[flow]))

    def update(self, label: str, table_name: str, assignments: str, params: tuple = ()) -> None:
        self.conn.execute(f"UPDATE {table_name} SET {assignments} WHERE id = %s", (*params, self.ids[label]))

    def sync(self, org: str, *tables: str) -> None:
        for name in tables or SYNCED:
            result = sync_table(self.source, self.warehouses[org], self.orgs[org], table(name))
            assert result.status == "synced", result.message

    def query(self, org: str, statement: str) -> list[dict]:
        warehouse = self.warehouses[org]
        return warehouse.query(statement.replace("{ds}", warehouse.dataset_ref))


@pytest.fixture(scope="module")
def world(pg_server, bigquery_emulator):
    name = f"test_{uuid.uuid4().hex[:12]}"
    base = pg_server.get_uri()
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = base.replace("/postgres?", f"/{name}?", 1)
    config = WarehouseConfig(organizations="active",
        project=bigquery_emulator.project, dataset_template=f"v{uuid.uuid4().hex[:8]}_{{organization_id}}",
        emulator_host=bigquery_emulator.rest_url, storage_emulator_host=bigquery_emulator.grpc_endpoint,
        layout=Layout.RAW,  # the raw layout's reports (the Glific layout's: test_glific_layout.py)
    )
    with psycopg.connect(url, autocommit=True) as conn, Source(url) as source:
        create_schema(conn)
        watermarks.ensure_table(conn)
        w = World(conn, source)
        for label, tz in (("A", KOLKATA), ("B", SAO_PAULO)):
            w.orgs[label] = add_organization(conn, tz)
            w.warehouses[label] = Warehouse(config, w.orgs[label])
        build(w)
        yield w
        for warehouse in w.warehouses.values():
            warehouse.close()


def build(w: World) -> None:
    # Contacts: the same UTC instants in both organizations fall on different local days.
    w.contact("asha", "A", "Asha", "911000000001", utc("2024-03-01 20:00:00"), optin=utc("2024-03-01 20:05:00"))
    w.contact("ravi", "A", "Ravi", "911000000002", utc("2024-03-02 10:00:00"), optin=utc("2024-03-02 10:00:00"),
              optout=utc("2024-03-03 19:00:00"))
    w.contact("ana", "B", "Ana", "551000000001", utc("2024-03-01 20:00:00"), optin=utc("2024-03-02 02:00:00"))
    w.contact("joao", "B", "João", "551000000002", utc("2024-03-02 10:00:00"))

    w.message("m1", "A", "asha", "inbound", "text", "received", utc("2024-03-01 20:10:00"), {})
    w.message("m2", "A", "asha", "outbound", "text", "sent", utc("2024-03-01 18:00:00"), {})
    w.message("m3", "A", "ravi", "outbound", "text", "error", utc("2024-03-02 10:05:00"), GUPSHUP_ERROR)
    w.message("m4", "A", "ravi", "outbound", "image", "sent", utc("2024-03-02 10:06:00"), {})
    w.message("m5", "A", "ravi", "outbound", "text", "delivered", utc("2024-03-02 10:07:00"), CLOUD_API_ERROR)
    w.message("m6", "A", "asha", "outbound", "text", "read", utc("2024-03-02 11:00:00"), None)
    w.message("m7", "B", "ana", "inbound", "text", "received", utc("2024-03-01 20:10:00"), {})
    w.message("m8", "B", "ana", "outbound", "text", "sent", utc("2024-03-02 01:00:00"), {})
    w.message("m9", "B", "joao", "outbound", "text", "error", utc("2024-03-02 12:00:00"), {})

    w.flow("registration", "A", "Registration", utc("2024-02-01 00:00:00"))
    w.flow("feedback", "B", "Feedback", utc("2024-02-01 00:00:00"))
    w.flow_result("r1", "A", "registration", "asha", {
        "name": {"input": "Asha", "category": "All Responses", "inserted_at": "2024-03-01T20:11:00.000000Z"},
        "age": {"input": "17", "category": "Has Number", "inserted_at": "2024-03-01T20:12:00.000000Z"},
    }, utc("2024-03-01 20:11:00"))
    w.flow_result("r2", "A", "registration", "ravi", {}, utc("2024-03-02 10:01:00"))
    w.flow_result("r3", "A", "registration", "ravi", {
        "rating": {"input": 5, "category": "Has Number"},
        "comments": {"input": {"text": "not a single value"}, "category": "Other"},
    }, utc("2024-03-02 10:02:00"))
    w.flow_result("r4", "B", "feedback", "ana", {"rating": {"input": "⭐⭐⭐", "category": "Other"}},
                  utc("2024-03-01 20:30:00"))
    for org in ("A", "B"):
        w.sync(org)
        w.created[org] = views.create_views(w.warehouses[org])

    # After the views exist: new versions (stamped after every row sent so far, as Glific stamps
    # changes with the current time), which the views must show without being re-created.
    w.update("m2", "messages", "status = 'delivered', bsp_status = 'delivered', updated_at = %s", (utc("2024-03-05 10:00:00"),))
    w.sync("A", "messages")
    w.update("m2", "messages", "status = 'read', bsp_status = 'read', updated_at = %s", (utc("2024-03-05 10:01:00"),))
    w.update("m4", "messages", "status = 'error', bsp_status = 'error', errors = %s, updated_at = %s",
             (Jsonb(TRAFFIC_ERROR), utc("2024-03-05 10:02:00")))
    w.update("r1", "flow_results", "results = %s, updated_at = %s", (Jsonb({
        "name": {"input": "Asha", "category": "All Responses"},
        "age": {"input": "18", "category": "Has Number"},
        "district": {"input": "Pune", "category": "All Responses", "interactive": {"id": "2", "title": "Pune"}},
    }), utc("2024-03-05 10:03:00")))
    w.sync("A", "messages", "flow_results")
    # A change that does not touch updated_at (glific#4586), reaching BigQuery by a re-send: two
    # versions of Ravi share updated_at (glific#1750, #2093); Asha is sent again unchanged.
    w.update("ravi", "contacts", "name = 'Ravi Kumar'")
    watermarks.reset(w.conn, w.orgs["A"].id, "contacts", w.warehouses["A"].destination)
    w.sync("A", "contacts")


# -- _latest ----------------------------------------------------------------------------------


def test_latest_views_hold_exactly_the_newest_version_of_every_row_between_dedup_runs(world):
    for name in SYNCED:
        rows = warehouse_rows(world.warehouses["A"], name)
        latest = world.query("A", f"SELECT * FROM `{{ds}}.{name}_latest`")

        assert len(latest) == len({r["id"] for r in latest}) == len(latest_versions(rows))
        assert {r["id"]: r for r in latest} == latest_versions(rows)
    versions = world.query("A", f"SELECT status FROM `{{ds}}.messages` WHERE id = {world.ids['m2']} ORDER BY bq_inserted_at")
    assert [v["status"] for v in versions] == ["sent", "delivered", "read"]
    (m2,) = world.query("A", f"SELECT status FROM `{{ds}}.messages_latest` WHERE id = {world.ids['m2']}")
    assert m2["status"] == "read"


def test_latest_views_match_the_source_after_changes_made_since_they_were_created(world):
    source = dict(world.conn.execute(
        "SELECT id, status::text FROM messages WHERE organization_id = %s", (world.orgs["A"].id,)).fetchall())
    latest = world.query("A", "SELECT id, status FROM `{ds}.messages_latest`")
    assert {r["id"]: r["status"] for r in latest} == source


def test_a_tie_on_updated_at_resolves_to_the_later_send(world):
    ravi = world.ids["ravi"]
    versions = world.query("A", f"SELECT name, updated_at FROM `{{ds}}.contacts` WHERE id = {ravi} ORDER BY bq_inserted_at")
    assert [v["name"] for v in versions] == ["Ravi", "Ravi Kumar"]
    assert versions[0]["updated_at"] == versions[1]["updated_at"]

    (latest,) = world.query("A", f"SELECT name FROM `{{ds}}.contacts_latest` WHERE id = {ravi}")
    assert latest["name"] == "Ravi Kumar"


def synced_notes(db, source, warehouse_for, bodies: list[str]) -> tuple[Warehouse, list[int]]:
    db.execute(NOTES_DDL)
    org = add_organization(db)
    warehouse = warehouse_for(org)
    ids = add_notes(db, org, bodies)
    sync_table(source, warehouse, org, TableSpec("notes"))
    return warehouse, ids


def add_copy(warehouse: Warehouse, note: int, body: str, bq_uuid: str, bq_inserted_at: str = "bq_inserted_at") -> None:
    """Another version of ``note`` in BigQuery, as another tool (or a resend) would leave it."""
    notes = f"{warehouse.dataset_ref}.notes"
    warehouse.client.query(
        f"INSERT INTO `{notes}` (id, organization_id, body, payload, inserted_at, updated_at, bq_uuid, bq_inserted_at) "
        f"SELECT id, organization_id, '{body}', payload, inserted_at, updated_at, '{bq_uuid}', {bq_inserted_at} "
        f"FROM `{notes}` WHERE id = {note}"
    ).result()


def viewed_and_kept(warehouse: Warehouse) -> tuple[dict, dict]:
    """What ``notes_latest`` shows, then what the dedup keeps."""
    views.create_views(warehouse, ["notes"], reports=())
    viewed = {r["id"]: r["body"] for r in warehouse.query(f"SELECT id, body FROM `{warehouse.dataset_ref}.notes_latest`")}
    dedup_table(warehouse, "notes", since=None)
    return viewed, {r["id"]: r["body"] for r in warehouse_rows(warehouse, "notes")}


def test_equal_send_times_resolve_by_bq_uuid_exactly_as_the_dedup_keeps(db, source, warehouse_for):
    warehouse, (first, _) = synced_notes(db, source, warehouse_for, ["first", "second"])
    add_copy(warehouse, first, "copy f", "ffffffff-0000-4000-8000-000000000000")
    add_copy(warehouse, first, "copy 0", "00000000-0000-4000-8000-000000000000")

    viewed, kept = viewed_and_kept(warehouse)

    assert viewed[first] == "copy f"
    assert viewed == kept


def test_a_version_without_send_time_is_the_oldest_for_the_views_and_the_dedup_alike(db, source, warehouse_for):
    warehouse, (first,) = synced_notes(db, source, warehouse_for, ["synced"])
    add_copy(warehouse, first, "unsent", "ffffffff", bq_inserted_at="NULL")  # a key that sorts last

    viewed, kept = viewed_and_kept(warehouse)

    assert viewed == kept == {first: "synced"}


# -- reports ----------------------------------------------------------------------------------


def test_contacts_messages_has_one_row_per_message_with_its_latest_contact(world):
    rows = world.query("A", "SELECT * FROM `{ds}.contacts_messages`")

    ids = world.ids
    assert {r["id"]: (r["status"], r["contact_name"], r["contact_phone"]) for r in rows} == {
        ids["m1"]: ("received", "Asha", "911000000001"),
        ids["m2"]: ("read", "Asha", "911000000001"),
        ids["m3"]: ("error", "Ravi Kumar", "911000000002"),
        ids["m4"]: ("error", "Ravi Kumar", "911000000002"),
        ids["m5"]: ("delivered", "Ravi Kumar", "911000000002"),
        ids["m6"]: ("read", "Asha", "911000000001"),
    }


def test_daily_message_counts_bucket_messages_by_the_organizations_local_day(world):
    def counts(org):
        rows = world.query(org, "SELECT * FROM `{ds}.daily_message_counts`")
        return sorted((r["day"], r["direction"], r["type"], r["status"], r["message_count"]) for r in rows)

    assert counts("A") == [  # UTC+5:30: 2024-03-01 20:10 UTC is 01:40 on the 2nd
        (d("2024-03-01"), "outbound", "text", "read", 1),
        (d("2024-03-02"), "inbound", "text", "received", 1),
        (d("2024-03-02"), "outbound", "image", "error", 1),
        (d("2024-03-02"), "outbound", "text", "delivered", 1),
        (d("2024-03-02"), "outbound", "text", "error", 1),
        (d("2024-03-02"), "outbound", "text", "read", 1),
    ]
    assert counts("B") == [  # UTC-3: 2024-03-02 01:00 UTC is 22:00 on the 1st
        (d("2024-03-01"), "inbound", "text", "received", 1),
        (d("2024-03-01"), "outbound", "text", "sent", 1),
        (d("2024-03-02"), "outbound", "text", "error", 1),
    ]


def test_flow_results_answers_have_one_row_per_answer_with_input_and_category(world):
    def answers(org):
        rows = world.query(org, "SELECT * FROM `{ds}.flow_results_answers`")
        return sorted((r["flow_result_id"], r["flow_name"], r["contact_phone"], r["answer_key"], r["answer_input"],
                       r["answer_category"]) for r in rows)

    r1, r3 = world.ids["r1"], world.ids["r3"]
    assert answers("A") == [  # r1 as edited after the views were created; r2 has no answer
        (r1, "Registration", "911000000001", "age", "18", "Has Number"),
        (r1, "Registration", "911000000001", "district", "Pune", "All Responses"),
        (r1, "Registration", "911000000001", "name", "Asha", "All Responses"),
        (r3, "Registration", "911000000002", "comments", None, "Other"),  # not a single value
        (r3, "Registration", "911000000002", "rating", "5", "Has Number"),  # a JSON number
    ]
    assert answers("B") == [(world.ids["r4"], "Feedback", "551000000001", "rating", "⭐⭐⭐", "Other")]
    (district,) = world.query("A", "SELECT answer_json FROM `{ds}.flow_results_answers` WHERE answer_key = 'district'")
    assert '"interactive":{"id":"2","title":"Pune"}' in district["answer_json"].replace(" ", "")


def test_contact_growth_counts_new_contacts_opt_ins_and_opt_outs_per_local_day(world):
    def growth(org):
        rows = world.query(org, "SELECT * FROM `{ds}.contact_growth`")
        rows = sorted((r["day"], r["new_contacts"], r["opt_ins"], r["opt_outs"], r["total_contacts"]) for r in rows)
        # The organization's own WhatsApp contact, created with the organization (today): one more
        # contact, on its own day, after the world's 2024 contacts.
        *history, (_, new, opt_ins, opt_outs, total) = rows
        assert (new, opt_ins, opt_outs) == (1, 0, 0) and total == history[-1][4] + 1
        return history

    assert growth("A") == [  # Asha 01:30 and Ravi 15:30 on the 2nd; Ravi's opt-out 00:30 on the 4th
        (d("2024-03-02"), 2, 2, 0, 2),
        (d("2024-03-04"), 0, 0, 1, 2),
    ]
    assert growth("B") == [  # Ana 17:00 on the 1st, opted in 23:00; João 07:00 on the 2nd
        (d("2024-03-01"), 1, 1, 0, 1),
        (d("2024-03-02"), 1, 0, 0, 2),
    ]


def test_message_delivery_failures_parse_code_and_message_from_each_error_shape(world):
    def failures(org):
        rows = world.query(org, "SELECT * FROM `{ds}.message_delivery_failures`")
        return {r["id"]: (r["status"], r["error_code"], r["error_message"], r["contact_phone"]) for r in rows}

    ids = world.ids
    assert failures("A") == {
        ids["m3"]: ("error", "1002", "Number Does Not Exists On WhatsApp", "911000000002"),  # sample_data's shape
        ids["m4"]: ("error", "470", "Message undeliverable 😞", "911000000002"),  # traffic's, latest version only
        ids["m5"]: ("delivered", "131026", "Receiver is incapable of receiving this message", "911000000002"),
    }
    assert failures("B") == {ids["m9"]: ("error", None, None, "551000000002")}  # error status, empty errors


# -- creation, documentation ------------------------------------------------------------------


def test_views_are_created_for_synced_tables_and_reports_whose_inputs_exist(world):
    created = world.created["A"]

    assert list(created) == [f"{t}_latest" for t in (s.name for s in TABLES) if t in SYNCED] + [v.name for v in views.REPORTS]
    assert created.skipped == {
        f"{s.name}_latest": f"{s.name} does not exist in BigQuery yet" for s in TABLES if s.name not in SYNCED
    }


def test_creating_views_again_changes_nothing(world):
    before = world.query("A", "SELECT * FROM `{ds}.daily_message_counts`")

    again = views.create_views(world.warehouses["A"])

    assert list(again) == list(world.created["A"])
    assert sorted(map(str, world.query("A", "SELECT * FROM `{ds}.daily_message_counts`"))) == sorted(map(str, before))


def test_reports_whose_inputs_do_not_exist_are_skipped_with_a_reason(db, warehouse_for):
    warehouse = warehouse_for(add_organization(db))

    created = views.create_views(warehouse)

    assert list(created) == []
    assert created.skipped["contacts_messages"] == (
        "messages does not exist in BigQuery yet; contacts does not exist in BigQuery yet"
    )


def test_every_report_view_has_its_documented_columns_and_descriptions_in_bigquery(world):
    client, dataset = world.warehouses["A"].client, world.warehouses["A"].dataset_ref
    legacy = {"INTEGER": "INT64", "BOOLEAN": "BOOL", "FLOAT": "FLOAT64"}
    for view in views.REPORTS:
        bq = client.get_table(f"{dataset}.{view.name}")

        assert bq.table_type == "VIEW"
        assert bq.description == view.description
        assert [(f.name, legacy.get(f.field_type, f.field_type), f.description) for f in bq.schema] == [
            (c.name, c.type, c.description) for c in view.columns
        ]
    assert client.get_table(f"{dataset}.messages_latest").description == views.latest_description("messages")


def test_the_docs_page_documents_every_view_and_column_from_the_single_source():
    text = DOCS.read_text()

    assert f"{views.DOCS_BEGIN}\n{views.reference_markdown()}\n{views.DOCS_END}" in text, (
        "docs/looker-studio.md is out of date: run python -m glific_bq.views docs/looker-studio.md"
    )
    for view in views.REPORTS:
        assert f"### `{view.name}`" in text
        assert all(f"| `{c.name}` | {c.type} |" in text for c in view.columns)
    assert all(f"`{s.name}_latest`" in text for s in TABLES)


def test_identifiers_are_validated_before_any_sql_is_built():
    with pytest.raises(ValueError):
        views.latest_sql("p.d", "messages`; DROP TABLE x; --")
    with pytest.raises(ValueError):
        views.latest_sql("p`.d", "messages")
    assert views._string_literal("it's \\ a\nline") == "'it\\'s \\\\ a\\nline'"


# -- Dagster ----------------------------------------------------------------------------------


@pytest.fixture
def resources(database_url, warehouse_config):
    return {
        "postgres": GlificPostgres(database_url=database_url),
        "bigquery": bigquery_resource(warehouse_config),
    }


def view_defs() -> dg.Definitions:
    """The definitions with the view assets (``glific_bq.definitions`` needs its environment)."""
    resources = {"postgres": GlificPostgres(database_url="postgresql://nowhere/none"), "bigquery": GlificBigQuery(project="p")}
    return dg.Definitions(assets=[*source_assets, *table_assets, *report_assets], sensors=report_sensors,
                          resources=resources)


def test_view_assets_sit_downstream_of_the_tables_they_read_with_their_own_running_sensor():
    defs = view_defs()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for view in views.REPORTS:
        node = graph.get(dg.AssetKey(["reports", view.name]))
        assert node.parent_keys == {dg.AssetKey(["bigquery", t]) for t in view.reads}
        assert node.group_name == "reports" and node.kinds == {"bigquery"} and node.partitions_def.name == "tenants"
    assert graph.get(dg.AssetKey(["reports", "messages_latest"])).parent_keys == {dg.AssetKey(["bigquery", "messages"])}
    sensors = {s.name: s.default_status for s in defs.get_repository_def().sensor_defs}
    assert sensors == {"report_views_automation": dg.DefaultSensorStatus.RUNNING}  # no stopped default sensor


def test_automation_requests_a_tenants_views_once_and_only_once_its_tables_exist():
    defs = view_defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", ["1", "2"])
    for name in ("messages", "contacts"):  # tenant 1 has these two tables; tenant 2 nothing yet
        instance.report_runless_asset_event(dg.AssetMaterialization(["bigquery", name], partition="1"))

    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    for name in ("messages", "contacts"):  # tenant 2's tables arrive
        instance.report_runless_asset_event(dg.AssetMaterialization(["bigquery", name], partition="2"))
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)

    views_of = {"messages_latest", "contacts_latest", "contacts_messages", "daily_message_counts", "contact_growth",
                "message_delivery_failures"}
    assert requested(first) == {(view, "1") for view in views_of}  # the tenant existed before the first tick
    assert second.total_requested == 0  # requested once, not every tick
    assert requested(third) == {(view, "2") for view in views_of}


def requested(result) -> set[tuple[str, str]]:
    return {
        (r.key.path[-1], partition)
        for r in result.results if r.key.path[0] == "reports"
        for partition in r.true_subset.expensively_compute_partition_keys()
    }


def test_materializing_a_report_creates_its_views_in_that_tenants_dataset(db, source, warehouse_for, resources):
    org = add_organization(db, KOLKATA)
    (contact,) = db.execute("INSERT INTO contacts (phone, organization_id, inserted_at, updated_at, language_id) "
                            "VALUES ('911', %s, '2024-03-01 20:00', '2024-03-01 20:00', 1) RETURNING id",
                            (org.id,)).fetchone()
    db.execute("INSERT INTO messages (type, flow, status, sender_id, receiver_id, contact_id, organization_id, inserted_at, "
               "updated_at) VALUES ('text', 'inbound', 'received', %s, %s, %s, %s, '2024-03-01 20:10', '2024-03-01 20:10')",
               (contact, contact, contact, org.id))
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, table("messages"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", [str(org.id)])
    daily = next(a for a in report_assets if a.key == dg.AssetKey(["reports", "daily_message_counts"]))

    result = dg.materialize([daily], partition_key=str(org.id), resources=resources, instance=instance)

    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.partition == str(org.id)
    assert event.materialization.metadata["view"].value == f"{warehouse.dataset_ref}.daily_message_counts"
    rows = warehouse.query(f"SELECT day, message_count FROM `{warehouse.dataset_ref}.daily_message_counts`")
    assert rows == [{"day": d("2024-03-02"), "message_count": 1}]


def test_materializing_a_report_before_its_tables_exist_fails_and_says_why(db, resources):
    org = add_organization(db)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", [str(org.id)])
    growth = next(a for a in report_assets if a.key == dg.AssetKey(["reports", "contact_growth"]))

    result = dg.materialize([growth], partition_key=str(org.id), resources=resources, instance=instance,
                            raise_on_error=False)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "contacts does not exist in BigQuery yet" in str(failure.event_specific_data.error)
