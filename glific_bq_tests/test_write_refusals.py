"""What BigQuery refuses, against real PostgreSQL and the emulator: a refused row is set aside
under its source row's id whatever the layout's id, and redrive finds it by that id.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from glific_bq import registry, watermarks
from glific_bq.local import glific_writes as gw
from glific_bq.sync import redrive, sync_table
from glific_bq.warehouse import DEAD_LETTERS, Warehouse

from .helpers import add_organization

GLIFIC = registry.GLIFIC_TABLES
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
