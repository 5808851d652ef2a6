"""What BigQuery refuses, against real PostgreSQL and the emulator: a refused row is set aside
under its source row's id whatever the layout's id, and redrive finds it by that id; a refusal
of the whole table is the sync's error, not bad rows.

The Storage Write API's answers come from a gRPC proxy in front of the emulator's port
(``grpc_proxy``), answering as BigQuery does where the emulator cannot be made to: refusing an
append for a reason of the table (a ``_default`` stream that does not see a new column yet), or
ending a response stream before it acknowledged every request. Load jobs are refused by the
emulator itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import grpc
import pyarrow as pa
import pytest

from glific_bq import registry, watermarks
from glific_bq.local import glific_writes as gw
from glific_bq.redrive import redrive
from glific_bq.registry import TableSpec
from glific_bq.sync import sync_table
from glific_bq.warehouse import DEAD_LETTERS, Warehouse, WarehouseConfig, WarehouseError

from .grpc_proxy import CutShort, Refuse, StorageWriteProxy
from .helpers import add_notes, add_organization, warehouse_rows

GLIFIC = registry.GLIFIC_TABLES
NOTES = TableSpec("notes")
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)  # past the sync's horizon

#: ``whatsapp_forms`` as Glific's migration creates it (CreateWhatsappFormsTables; the local
#: schema predates it), for the layout whose ``id`` of it is a STRING.
WHATSAPP_FORMS_DDL = """
CREATE TYPE whatsapp_forms_status_enum AS ENUM ('draft', 'published', 'inactive');
CREATE TYPE whatsapp_forms_category_enum AS ENUM ('signup_up', 'signin', 'appointment_booking',
    'lead_generation', 'contact_us', 'customer_support', 'survey', 'other');
CREATE TABLE whatsapp_forms (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL,
    description text,
    meta_flow_id varchar(255) NOT NULL,
    status whatsapp_forms_status_enum NOT NULL DEFAULT 'draft',
    definition jsonb DEFAULT '{}',
    categories whatsapp_forms_category_enum[] DEFAULT '{}',
    organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    inserted_at timestamp(6) NOT NULL,
    updated_at timestamp(6) NOT NULL
);
"""


def _letters(warehouse: Warehouse) -> list[dict]:
    if not warehouse.table_exists(DEAD_LETTERS):
        return []
    return warehouse.query(f"SELECT table_name, id, error FROM `{warehouse.dataset_ref}.{DEAD_LETTERS}` ORDER BY id")


def test_a_refused_row_of_a_table_with_a_text_id_is_set_aside_and_its_table_moves_on(db, source,
                                                                                      glific_warehouse_config):
    db.execute(WHATSAPP_FORMS_DDL)
    org = add_organization(db)
    form = {"organization_id": org.id, "meta_flow_id": "m1", "status": "published", "categories": ["survey"]}
    refused = gw.insert_one(db, "whatsapp_forms", at=NOW, **{**form, "name": "No categories", "categories": None})
    good = gw.insert_one(db, "whatsapp_forms", at=NOW, **{**form, "name": "Feedback"})
    spec = registry.table("whatsapp_forms", GLIFIC)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        first = sync_table(source, warehouse, org, spec)
        later = gw.insert_one(db, "whatsapp_forms", at=NOW, **{**form, "name": "Later"})
        second = sync_table(source, warehouse, org, spec)
        names = [r["name"] for r in warehouse.query(f"SELECT name FROM `{warehouse.dataset_ref}.whatsapp_forms` "
                                                     "ORDER BY id")]
        letters = _letters(warehouse)

    assert (first.status, first.inserted, first.set_aside) == ("synced", 2, 1)
    assert [(r["table_name"], r["id"]) for r in letters] == [("whatsapp_forms", refused)]
    assert "categories" in letters[0]["error"]
    assert (second.inserted, names) == (1, ["Feedback", "Later"])
    assert watermarks.get(db, org.id, "whatsapp_forms").table_id == later > good


def test_redrive_of_a_glific_flow_sends_the_refused_revision_and_keeps_its_letter_until_it_loads(
        db, source, glific_warehouse_config):
    """In the Glific layout a ``flows`` row's id is its flow's, the source row a revision: the
    letter names the revision, so redrive neither sends another revision whose id happens to be
    the flow's id nor forgets the letter while the revision is still refused."""
    org = add_organization(db)
    registration = gw.flow(db, org.id, "Registration", at=NOW)
    gw.publish_revision(db, registration, at=NOW)
    for _ in range(3):  # archived revisions, exported too: their ids pass the flows' ids
        gw.revision(db, registration, {"name": "Registration", "nodes": []}, at=NOW)
        gw.publish_revision(db, registration, at=NOW)
    broken = gw.flow(db, org.id, "Broken", at=NOW)
    db.execute("UPDATE flow_revisions SET definition = NULL WHERE flow_id = %s", (broken,))
    broken_revision = gw.publish_revision(db, broken, at=NOW)
    # The revision a lookup by the flow's id would find: one of Registration's, exported.
    assert db.execute("SELECT flow_id, status FROM flow_revisions WHERE id = %s", (broken,)).fetchone() == \
        (registration, "archived")
    spec = registry.table("flows", GLIFIC)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        synced = sync_table(source, warehouse, org, spec)
        before = warehouse.query(f"SELECT COUNT(*) AS n FROM `{warehouse.dataset_ref}.flows`")[0]["n"]
        letters = _letters(warehouse)

        still_broken = redrive(source, warehouse, org, spec)
        after_still_broken = warehouse.query(f"SELECT COUNT(*) AS n FROM `{warehouse.dataset_ref}.flows`")[0]["n"]
        letters_kept = _letters(warehouse)

        db.execute("UPDATE flow_revisions SET definition = '{\"name\": \"Broken\", \"nodes\": []}' WHERE id = %s",
                   (broken_revision,))
        fixed = redrive(source, warehouse, org, spec)
        names = [r["name"] for r in warehouse.query(f"SELECT name FROM `{warehouse.dataset_ref}.flows`")]
        letters_after_fix = _letters(warehouse)

    assert synced.set_aside == 1
    assert [(r["table_name"], r["id"]) for r in letters] == [("flows", broken_revision)]
    assert (still_broken.updated, still_broken.set_aside, after_still_broken) == (0, 1, before)
    assert [r["id"] for r in letters_kept] == [broken_revision]
    assert (fixed.updated, fixed.set_aside, letters_after_fix) == (1, 0, [])
    assert sorted(names) == ["Broken"] + ["Registration"] * before


# -- refusals of the whole table ---------------------------------------------------------------

#: What BigQuery answers an append whose rows carry a column the table's ``_default`` stream does
#: not see yet (for a while after the column was added).
NOT_YET_SEEN = ("Input schema has more fields than BigQuery schema, extra fields: 'mood' "
                "Entity: projects/p/datasets/d/tables/notes/streams/_default")


@pytest.fixture
def proxy(bigquery_emulator) -> Iterator[StorageWriteProxy]:
    with StorageWriteProxy(bigquery_emulator.grpc_endpoint) as proxy:
        yield proxy


@pytest.fixture
def proxied(warehouse_config, proxy) -> WarehouseConfig:
    """The test's emulator settings, the Storage Write API reached through ``proxy``."""
    return dataclasses.replace(warehouse_config, storage_emulator_host=proxy.endpoint)


@pytest.mark.parametrize("in_response", [False, True], ids=["as_status", "in_each_response"])
def test_a_refusal_of_every_append_fails_the_sync_and_sets_no_row_aside(notes, source, proxy, proxied, in_response):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(8)])
    warehouse = Warehouse(proxied, org)
    proxy.answer("notes", Refuse(grpc.StatusCode.INVALID_ARGUMENT, NOT_YET_SEEN, in_response=in_response))

    with pytest.raises(WarehouseError, match="more fields than BigQuery schema"):
        sync_table(source, warehouse, org, NOTES)

    assert watermarks.get(notes, org.id, "notes").table_id == 0  # the page is not passed
    assert _letters(warehouse) == []
    # The page, again once its table was checked, its two halves and its first and last rows
    # alone: not 2n - 1 appends.
    assert [a.rows for a in proxy.appends_to("notes")] == [(8,), (8,), (4,), (4,), (1,), (1,)]

    proxy.answer("notes", None)  # the stream sees the column now
    later = sync_table(source, warehouse, org, NOTES)
    assert (later.inserted, later.set_aside) == (8, 0)
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids


@pytest.mark.parametrize("refusal", [
    Refuse(grpc.StatusCode.PERMISSION_DENIED, "Permission 'TABLES_UPDATE_DATA' denied on resource"),
    Refuse(grpc.StatusCode.RESOURCE_EXHAUSTED, "Exceeds 'AppendRows throughput' quota", in_response=True),
], ids=["permission_as_status", "quota_in_response"])
def test_a_refusal_with_a_code_that_is_not_about_rows_fails_the_sync_at_once(notes, source, proxy, proxied, refusal):
    org = add_organization(notes)
    add_notes(notes, org, [f"n{i}" for i in range(8)])
    warehouse = Warehouse(proxied, org)
    proxy.answer("notes", refusal)

    with pytest.raises(WarehouseError, match=refusal.message):
        sync_table(source, warehouse, org, NOTES)

    assert watermarks.get(notes, org.id, "notes").table_id == 0
    assert _letters(warehouse) == []
    assert [a.rows for a in proxy.appends_to("notes")] == [(8,)]


def test_a_load_job_refused_for_its_table_fails_the_sync_after_three_loads(notes, source, warehouse_config):
    """With ``load_parquet`` every halving is a load job, of the 1,500 a table may have a day. The
    table replaced by a view (an operator's doing): BigQuery refuses every load into it, each
    job's error naming its own upload."""
    config = dataclasses.replace(warehouse_config, write_method="load_parquet")
    org = add_organization(notes)
    add_notes(notes, org, ["first"])
    warehouse = Warehouse(config, org)
    sync_table(source, warehouse, org, NOTES)
    ref = warehouse.dataset_ref
    warehouse.query(f"CREATE TABLE `{ref}.notes_kept` AS SELECT * FROM `{ref}.notes`")
    warehouse.client.delete_table(f"{ref}.notes")
    warehouse.query(f"CREATE VIEW `{ref}.notes` AS SELECT * FROM `{ref}.notes_kept`")
    add_notes(notes, org, [f"n{i}" for i in range(8)])
    before = watermarks.get(notes, org.id, "notes").table_id
    loads_before = _loads_into(warehouse, "notes")

    with pytest.raises(WarehouseError, match="not an table"):
        sync_table(source, warehouse, org, NOTES)

    assert watermarks.get(notes, org.id, "notes").table_id == before
    assert _letters(warehouse) == []
    assert _loads_into(warehouse, "notes") - loads_before == 5  # the page, its two halves, its first and last rows


def _loads_into(warehouse: Warehouse, table: str) -> int:
    return sum(1 for job in warehouse.client.list_jobs(project=warehouse.project)
               if job.job_type == "load" and job.destination.dataset_id == warehouse.dataset
               and job.destination.table_id == table)


def test_a_row_bigquery_refuses_for_its_content_is_still_set_aside(notes, source, proxy, proxied):
    """A refusal that only the requests holding one row share is that row's: it alone is set
    aside, the rest lands, the watermark moves on."""
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "poison", "c", "d", "e"])
    warehouse = Warehouse(proxied, org)
    proxy.answer("notes", Refuse(grpc.StatusCode.INVALID_ARGUMENT, "Invalid value for field body",
                                 containing=b"poison"))

    result = sync_table(source, warehouse, org, NOTES)

    assert (result.inserted, result.set_aside) == (6, 1)
    assert [(r["table_name"], r["id"]) for r in _letters(warehouse)] == [("notes", ids[2])]
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids[:2] + ids[3:]
    assert watermarks.get(notes, org.id, "notes").table_id == ids[-1]


# -- acknowledgements ----------------------------------------------------------------------------


def test_an_append_stream_that_ends_unacknowledged_fails_the_sync_and_the_rows_come_later(
        notes, source, proxy, proxied):
    """A response stream that ends before acknowledging the page (here: nothing reached
    BigQuery) does not count as confirmed: the watermark stays, the rows go at the next sync."""
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "c"])
    warehouse = Warehouse(proxied, org)
    proxy.answer("notes", CutShort(acknowledged=0, forward=False))

    with pytest.raises(WarehouseError, match="acknowledged 0 of 1"):
        sync_table(source, warehouse, org, NOTES)

    assert watermarks.get(notes, org.id, "notes").table_id == 0
    proxy.answer("notes", None)
    later = sync_table(source, warehouse, org, NOTES)
    assert later.inserted == 3
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids


def test_every_append_names_its_stream_in_the_routing_header(notes, source, proxy, proxied):
    """BigQuery routes an AppendRows call by its x-goog-request-params header; the client library
    sends it empty, and BigQuery then refuses some calls ("Cannot route on empty project id",
    google-cloud-python#16650), a refusal that must never look like refused rows."""
    org = add_organization(notes)
    add_notes(notes, org, ["first"])
    warehouse = Warehouse(proxied, org)
    sync_table(source, warehouse, org, NOTES)
    add_notes(notes, org, ["second", "third"])
    sync_table(source, warehouse, org, NOTES)

    appends = proxy.appends_to("notes")
    assert len(appends) == 2
    assert all(a.stream.endswith(f"/datasets/{warehouse.dataset_ref.split('.')[-1]}/tables/notes/streams/_default")
               for a in appends), appends
    assert [a.routing for a in appends] == [f"write_stream={a.stream}" for a in appends]


def test_every_request_of_an_append_needs_its_own_acknowledgement(notes, source, proxy, proxied):
    """An append of three requests (one per record batch) whose stream ends after the first
    acknowledgement is an error, though BigQuery received all three (at-least-once: they may be
    sent again)."""
    org = add_organization(notes)
    add_notes(notes, org, ["set up"])
    warehouse = Warehouse(proxied, org)
    sync_table(source, warehouse, org, NOTES)
    table = warehouse.client.get_table(f"{warehouse.dataset_ref}.notes")
    target = warehouse.ensure_table(NOTES, list(table.schema))
    batches = [pa.record_batch({"id": pa.array([100 + i], pa.int64()), "organization_id": pa.array([org.id], pa.int64()),
                                "body": [f"batch {i}"], "inserted_at": pa.array([NOW], pa.timestamp("us")),
                                "updated_at": pa.array([NOW], pa.timestamp("us"))}) for i in range(3)]
    proxy.answer("notes", CutShort(acknowledged=1))

    with pytest.raises(WarehouseError, match="acknowledged 1 of 3"):
        warehouse.append(target, pa.Table.from_batches(batches))

    assert proxy.appends_to("notes")[-1].rows == (1, 1, 1)
