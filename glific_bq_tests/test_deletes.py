"""Deletes reach BigQuery only for tables whose policy says so."""

from __future__ import annotations

import pytest

from glific_bq.deletes import MassDeleteRefused, propagate_deletes
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


def test_a_mass_delete_is_refused_until_confirmed(notes, source, warehouse_for):
    spec = TableSpec("notes", deletes=DeletePolicy.PROPAGATE)
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(40)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, spec)
    notes.execute("DELETE FROM notes WHERE id = ANY(%s)", (ids[:12],))  # 30 %: a restore, a wrong database...

    with pytest.raises(MassDeleteRefused, match=r"12 of 40 id\(s\).*nothing deleted.*confirm_deletes"):
        propagate_deletes(source, warehouse, org, spec)
    assert len({r["id"] for r in warehouse_rows(warehouse, "notes")}) == 40  # nothing deleted

    assert propagate_deletes(source, warehouse, org, spec, confirm=True) == 12
    assert sorted({r["id"] for r in warehouse_rows(warehouse, "notes")}) == ids[12:]


def test_a_few_deletes_below_the_floor_need_no_confirmation(notes, source, warehouse_for):
    spec = TableSpec("notes", deletes=DeletePolicy.PROPAGATE)
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "c"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, spec)
    notes.execute("DELETE FROM notes WHERE id = %s", (ids[0],))  # one contact erased: a third of a tiny table

    assert propagate_deletes(source, warehouse, org, spec) == 1
