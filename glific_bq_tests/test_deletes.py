"""Deletes reach BigQuery only for tables whose policy says so."""

from __future__ import annotations

from glific_bq.deletes import propagate_deletes
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.sync import sync_table

from .helpers import add_notes, add_organization, warehouse_rows


def test_propagate_removes_every_version_of_rows_deleted_at_the_source(notes, source, warehouse_for):
    spec = TableSpec("notes", deletes=DeletePolicy.PROPAGATE)
    org, other = add_organization(notes), add_organization(notes)
    ids = add_notes(notes, org, ["keep", "erase me", "keep too"])
    other_ids = add_notes(notes, other, ["other tenant"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, spec)
    notes.execute("UPDATE notes SET body = 'erase me!', updated_at = updated_at + interval '1 second' WHERE id = %s", (ids[1],))
    sync_table(source, warehouse, org, spec)  # two versions of the row to erase
    sync_table(source, warehouse_for(other), other, spec)
    notes.execute("DELETE FROM notes WHERE id = %s", (ids[1],))

    removed = propagate_deletes(source, warehouse, org, spec)

    assert removed == 1
    assert sorted({r["id"] for r in warehouse_rows(warehouse, "notes")}) == [ids[0], ids[2]]
    assert [r["id"] for r in warehouse_rows(warehouse_for(other), "notes")] == other_ids


def test_keep_tables_never_lose_history_when_the_source_purges(notes, source, warehouse_for):
    spec = TableSpec("notes")  # KEEP, like messages
    org = add_organization(notes)
    ids = add_notes(notes, org, ["old", "new"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, spec)
    notes.execute("DELETE FROM notes WHERE id = %s", (ids[0],))  # Glific's two-month purge

    assert propagate_deletes(source, warehouse, org, spec) == 0
    sync_table(source, warehouse, org, spec)
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids
