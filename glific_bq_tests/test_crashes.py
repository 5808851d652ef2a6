"""A sync killed at any step loses nothing, and after dedup leaves exactly one version per row."""

from __future__ import annotations

import pytest

from glific_bq.dedup import dedup_table
from glific_bq.registry import TableSpec
from glific_bq.source import Source
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.warehouse import Warehouse, writes

from .helpers import NOTES_DDL, add_notes, add_organization, warehouse_rows

NOTES = TableSpec("notes")
PAGES = SyncOptions(page_rows=10)


class Crash(Exception):
    """The process dies here."""


class HalfWritingWarehouse(Warehouse):
    """Writes the first half of its second write, then dies: a crash in the middle of a write."""

    write_count = 0


@pytest.fixture(autouse=True)
def half_writes(monkeypatch):
    """Every write goes through ``warehouse.writes.write``: a HalfWritingWarehouse's dies there."""
    real = writes.write

    def write(warehouse, target, rows):
        if isinstance(warehouse, HalfWritingWarehouse):
            warehouse.write_count += 1
            if warehouse.write_count == 2:
                real(warehouse, target, rows.slice(0, rows.num_rows // 2))
                raise Crash("killed during the write")
        real(warehouse, target, rows)

    monkeypatch.setattr(writes, "write", write)


def crash_at(step: str):
    seen = []

    def on_step(name: str) -> None:
        if name == step:
            seen.append(name)
            if len(seen) == 2:  # on the second page, with the first one done
                raise Crash(f"killed after {step}")

    return on_step


@pytest.mark.parametrize("step", ["extracted", "during the write", "written", "advanced"])
def test_a_sync_killed_at_any_step_loses_nothing_and_dedup_leaves_one_version(
    step, db, database_url, warehouse_config
):
    db.execute(NOTES_DDL)
    org = add_organization(db)
    ids = add_notes(db, org, [f"n{i}" for i in range(25)])
    with Source(database_url) as source:
        sync_table(source, Warehouse(warehouse_config, org), org, NOTES, PAGES)
    db.execute("UPDATE notes SET body = body || ' edited', updated_at = updated_at + interval '1 second' "
               "WHERE id = ANY(%s)", (ids[::2],))
    add_notes(db, org, [f"new {i}" for i in range(15)])

    with Source(database_url) as source, pytest.raises(Crash):
        if step == "during the write":
            sync_table(source, HalfWritingWarehouse(warehouse_config, org), org, NOTES, PAGES)
        else:
            sync_table(source, Warehouse(warehouse_config, org), org, NOTES, PAGES, on_step=crash_at(step))

    warehouse = Warehouse(warehouse_config, org)
    with Source(database_url) as restarted:  # a new process: fresh connections
        assert sync_table(restarted, warehouse, org, NOTES, PAGES).caught_up
    dedup_table(warehouse, "notes", since=None)

    rows = warehouse_rows(warehouse, "notes")
    expected = dict(db.execute("SELECT id, body FROM notes WHERE organization_id = %s", (org.id,)).fetchall())
    assert sorted(r["id"] for r in rows) == sorted(expected)  # nothing lost, nothing invented, no copies
    assert {r["id"]: r["body"] for r in rows} == expected
