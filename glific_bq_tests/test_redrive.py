"""Redrive has the sync's safeguards (issue 16, item 15): the tenant-table's lock, the per-page
tenant check, and dead letters read a page at a time."""

from __future__ import annotations

import psycopg

from glific_bq import watermarks
from glific_bq.redrive import redrive
from glific_bq.registry import TableSpec
from glific_bq.sync import sync_table

from .helpers import add_notes, add_organization, warehouse_rows

NOTES = TableSpec("notes")


def _refused(notes, source, warehouse_for, count: int):
    """``count`` notes BigQuery refused (a DATETIME beyond year 9999), then fixed at the source."""
    org = add_organization(notes)
    notes.execute("ALTER TABLE notes ADD COLUMN IF NOT EXISTS happened timestamp")
    ids = add_notes(notes, org, [f"n{i}" for i in range(count + 2)])
    notes.execute("UPDATE notes SET happened = '2026-01-01'")
    notes.execute("UPDATE notes SET happened = '10000-01-01' WHERE id = ANY(%s)", (ids[1:count + 1],))
    warehouse = warehouse_for(org)
    assert sync_table(source, warehouse, org, NOTES).set_aside == count
    notes.execute("UPDATE notes SET happened = '2026-02-02' WHERE id = ANY(%s)", (ids[1:count + 1],))
    return org, ids, warehouse


def test_redrive_reads_its_letters_a_page_at_a_time_and_sends_them_all(notes, source, warehouse_for):
    org, ids, warehouse = _refused(notes, source, warehouse_for, 5)
    pages = []
    original = warehouse.dead_letter_ids

    def recorded(table, after=None, limit=None):
        found = original(table, after=after, limit=limit)
        pages.append((limit, len(found)))
        return found

    warehouse.dead_letter_ids = recorded

    result = redrive(source, warehouse, org, NOTES, page_ids=2)

    assert (result.updated, result.set_aside) == (5, 0)
    assert pages == [(2, 2), (2, 2), (2, 1), (2, 0)]
    assert original("notes") == []
    assert sorted({r["id"] for r in warehouse_rows(warehouse, "notes")}) == ids


def test_redrive_while_a_sync_holds_the_table_is_busy_and_changes_nothing(notes, source, warehouse_for, database_url):
    org, ids, warehouse = _refused(notes, source, warehouse_for, 2)
    with psycopg.connect(database_url, autocommit=True) as tick:
        with watermarks.exclusive(tick, org.id, "notes") as held:
            assert held
            result = redrive(source, warehouse, org, NOTES)
    assert result.status == "busy"
    assert warehouse.dead_letter_ids("notes") == ids[1:3]
