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


def test_a_contact_deleted_at_the_source_is_gone_from_bigquery_after_the_next_scheduled_dedup_run(
        db, database_url, warehouse_config):
    """End to end through Dagster: the minute sync sends a contact, Glific deletes it, and the
    run the 90-minute schedule starts (``dedup_job``, incremental, no confirmation: a few deletes)
    removes every version of it, and nothing else."""
    import dagster as dg

    from glific_bq.defs.jobs import dedup_job, sync_job
    from glific_bq.defs.resources import GlificPostgres
    from glific_bq.local import glific_writes as gw
    from glific_bq.warehouse import Warehouse

    from .helpers import bigquery_resource

    org = add_organization(db)
    contacts = [gw.contact(db, org.id, f"91987650{n:04d}", name=f"Contact {n}") for n in range(10)]
    db.execute("UPDATE contacts SET updated_at = updated_at - interval '1 minute'")  # past the sync's horizon
    resources = {"postgres": GlificPostgres(database_url=database_url), "bigquery": bigquery_resource(warehouse_config)}
    instance = dg.DagsterInstance.ephemeral()
    assert sync_job.execute_in_process(resources=resources, instance=instance).success
    warehouse = Warehouse(warehouse_config, org)
    before = {r["id"] for r in warehouse_rows(warehouse, "contacts")}
    assert set(contacts) <= before
    db.execute("DELETE FROM contacts WHERE id = %s", (contacts[3],))  # erased on request

    assert dedup_job.execute_in_process(resources=resources, instance=instance).success

    assert {r["id"] for r in warehouse_rows(warehouse, "contacts")} == before - {contacts[3]}
