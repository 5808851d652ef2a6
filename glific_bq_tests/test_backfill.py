"""Backfills by load jobs: a large insert backlog goes by Parquet load jobs, within the table's
daily budget, and the minute syncs after it by the Storage Write API; nothing is lost either way."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from glific_bq import watermarks
from glific_bq.registry import TableSpec
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.warehouse import Warehouse, writes

from .helpers import add_notes, add_organization, warehouse_rows
from .test_types import ALL_TYPES_DDL, LONG, TRICKY

NOTES = TableSpec("notes")
#: A "large" backlog at test scale: 1,000 rows or more go by load jobs of 400 rows.
BACKFILL = SyncOptions(page_rows=100, load_backlog_rows=1_000, load_rows=400)


class Crash(Exception):
    pass


def test_a_large_backlog_goes_by_load_jobs_and_the_next_minute_sync_by_storage_write(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(1_100)])
    warehouse = warehouse_for(org)

    backfill = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert (backfill.inserted, backfill.loads, backfill.caught_up) == (1_100, 3, True)  # 400 + 400 + 300
    assert watermarks.loads_today(notes, org.id, "notes") == 3
    assert watermarks.get(notes, org.id, "notes").table_id == max(ids)
    new_ids = add_notes(notes, org, ["after the backfill", "and one more"])

    minute = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert (minute.inserted, minute.loads) == (2, 0)
    assert watermarks.loads_today(notes, org.id, "notes") == 3
    rows = warehouse_rows(warehouse, "notes")
    assert [r["id"] for r in rows] == ids + new_ids  # each row once, none lost
    assert rows[0]["body"] == "note 0" and all(r["bq_uuid"] and r["bq_inserted_at"] for r in rows)


def test_a_backlog_below_the_threshold_goes_by_storage_write(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(999)])
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert (result.inserted, result.loads) == (999, 0)
    assert [r["id"] for r in warehouse_rows(warehouse, "notes")] == ids


def test_a_backfill_stops_loading_when_the_tables_daily_budget_is_spent(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(1_100)])
    warehouse = warehouse_for(org)
    watermarks.create(notes, org.id, "notes", warehouse.destination)
    spent = writes.LOADS_PER_TABLE_PER_DAY - 2  # room for 2 of the 3 loads the backlog takes
    notes.execute("UPDATE glific_bq_watermarks SET loads = %s, loads_on = (now() AT TIME ZONE 'UTC')::date "
                  "WHERE organization_id = %s", (spent, org.id))

    result = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert (result.inserted, result.loads) == (1_100, 2)  # the last 300 rows by Storage Write
    assert watermarks.loads_today(notes, org.id, "notes") == writes.LOADS_PER_TABLE_PER_DAY
    assert [r["id"] for r in warehouse_rows(warehouse, "notes")] == ids
    more = add_notes(notes, org, [f"more {i}" for i in range(1_000)])

    result = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert (result.inserted, result.loads) == (1_000, 0)
    assert [r["id"] for r in warehouse_rows(warehouse, "notes")] == ids + more


def test_loads_of_yesterday_do_not_count_today(notes, source, warehouse_for):
    org = add_organization(notes)
    destination = warehouse_for(org).destination
    watermarks.create(notes, org.id, "notes", destination)
    notes.execute("UPDATE glific_bq_watermarks SET loads = %s, loads_on = (now() AT TIME ZONE 'UTC')::date - 1 "
                  "WHERE organization_id = %s", (writes.LOADS_PER_TABLE_PER_DAY, org.id))
    assert watermarks.loads_today(notes, org.id, "notes") == 0

    watermarks.record_load(notes, org.id, "notes", destination)

    assert watermarks.loads_today(notes, org.id, "notes") == 1


@pytest.mark.parametrize("step", ["extracted", "written"])
def test_a_backfill_killed_between_loads_moves_the_watermark_only_past_completed_loads(
    step, notes, source, warehouse_for
):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(1_100)])
    warehouse = warehouse_for(org)
    seen = []

    def crash(name: str) -> None:
        seen.append(name)
        # "extracted" 5 times: the first load (4 pages) is done, the second is being gathered;
        # "written" twice: the second load completed, its watermark not advanced yet.
        if name == step and seen.count(name) == {"extracted": 5, "written": 2}[step]:
            raise Crash(name)

    with pytest.raises(Crash):
        sync_table(source, warehouse, org, NOTES, BACKFILL, on_step=crash)
    assert watermarks.get(notes, org.id, "notes").table_id == ids[399]  # the first load's last row

    result = sync_table(source, warehouse, org, NOTES, BACKFILL)

    assert result.inserted == 700  # from the first load's last row on
    assert result.caught_up and watermarks.get(notes, org.id, "notes").table_id == max(ids)
    # Nothing lost. Rows the crashed round sent are sent again (a confirmed load not yet
    # recorded, and, by the update pass, rows whose cursor the crashed round did not get to
    # move): at-least-once, as with the Storage Write API; dedup keeps one version.
    assert set(r["id"] for r in warehouse_rows(warehouse, "notes")) == set(ids)



def test_rows_loaded_by_a_backfill_equal_the_rows_sent_by_storage_write(db, source, warehouse_for):
    """Every type, as the Parquet load path lands it, equals what the Storage Write path lands (in
    the emulator: BigQuery's own Parquet reading is not proven here)."""
    db.execute(ALL_TYPES_DDL)
    db.execute("ALTER TABLE everything DROP COLUMN nu, DROP COLUMN cash")  # the emulator lacks BIGNUMERIC
    by_append, by_load = add_organization(db, timezone="Asia/Kolkata"), add_organization(db, timezone="Asia/Kolkata")
    for org in (by_append, by_load):
        db.execute(
            "INSERT INTO everything (organization_id, i2, i4, i8, f4, f8, n, b, t, vc, ch, e, u, p, ip, j, jb, d, tm, "
            "ts, ts0, tstz, by, ia, ta, ja, pt) VALUES (%s, -32768, 2147483647, -9223372036854775808, 1.5, "
            "3.141592653589793, 12345678.91, true, %s, 'ação', 'ab', 'happy', '0e37df36-f698-11e6-8dd4-cb9ced3df976', "
            "'+91 98765 43210', '10.0.0.1', '{\"a\": [1, null]}', '{\"b\": {\"x\": \"😀\"}}', '2026-03-01', "
            "'23:59:59.999999', '2026-03-01 10:00:00.123456', '2026-03-01 20:00:00', '2026-03-01 10:00:00+00', "
            "'\\x0001ff', '{1,NULL,3}', '{x,😀,\"\"}', ARRAY['{\"a\": 1}'::jsonb], '(1,2)')", (org.id, TRICKY))
        db.execute("INSERT INTO everything (organization_id, t, ia, ta) VALUES (%s, '', '{}', '{}')", (org.id,))
        db.execute("INSERT INTO everything (organization_id) VALUES (%s)", (org.id,))
        db.execute("INSERT INTO everything (organization_id, t) VALUES (%s, %s)", (org.id, LONG))
    spec = TableSpec("everything")

    appended = sync_table(source, warehouse_for(by_append), by_append, spec, SyncOptions(load_backlog_rows=None))
    loaded = sync_table(source, warehouse_for(by_load), by_load, spec, SyncOptions(page_rows=2, load_backlog_rows=4, load_rows=2))

    assert (appended.inserted, appended.loads, loaded.inserted, loaded.loads) == (4, 0, 4, 2)

    def landed(org) -> list[dict]:
        rows = warehouse_rows(warehouse_for(org), "everything")
        own = ("id", "organization_id", "inserted_at", "updated_at", "bq_uuid", "bq_inserted_at")  # per row
        return [{k: v for k, v in r.items() if k not in own} for r in rows]

    assert landed(by_load) == landed(by_append)


def test_a_load_lands_record_columns_as_storage_write_does(db, warehouse_for):
    """Glific's nested contact columns (REPEATED RECORD, RECORD holding a REPEATED RECORD) through
    a backfill's Parquet load read back unchanged (in the emulator)."""
    from google.cloud import bigquery

    from glific_bq.protorows import arrow_schema
    from glific_bq.warehouse import Target

    from .test_nested_records import ROWS, SCHEMA, complete

    warehouse = warehouse_for(add_organization(db))
    warehouse.client.create_dataset(bigquery.Dataset(warehouse.dataset_ref), exists_ok=True)
    table_id = f"{warehouse.dataset_ref}.contacts"
    warehouse.client.create_table(bigquery.Table(table_id, schema=SCHEMA))
    load = writes.ParquetLoad(warehouse, Target(table_id, tuple(SCHEMA)))
    rows = pa.Table.from_pylist(ROWS, schema=arrow_schema(SCHEMA))
    load.add(rows.slice(0, 2))
    load.add(rows.slice(2))

    assert load.load() == []

    landed = warehouse.query(f"SELECT * FROM `{table_id}` ORDER BY id")
    assert landed == [{f.name: complete(f, row.get(f.name)) for f in SCHEMA} for row in ROWS]


def test_a_refused_load_falls_back_to_storage_write_and_sets_only_the_refused_row_aside(notes, source, warehouse_config):
    """A load job says only that its file failed (a DATETIME beyond year 9999 in one row, which
    BigQuery cannot read; a proxy in front of the emulator's REST port answers as BigQuery does,
    since the emulator loads it). That load's rows then go by the Storage Write API, which sets
    aside just that row; the other loads are loads, and the watermark moves past the backlog."""
    from .rest_proxy import LoadRefusingProxy

    org = add_organization(notes)
    notes.execute("ALTER TABLE notes ADD COLUMN happened timestamp")
    ids = add_notes(notes, org, [f"note {i}" for i in range(1_100)])
    notes.execute("UPDATE notes SET happened = '2026-01-01'")
    bad = ids[450]  # in the second load
    notes.execute("UPDATE notes SET happened = '10000-01-01' WHERE id = %s", (bad,))
    appended = []
    real_append = writes.append

    def append(warehouse, target, rows):  # observed: the Storage Write path the fallback takes
        appended.append(rows.num_rows)
        return real_append(warehouse, target, rows)

    with LoadRefusingProxy(warehouse_config.emulator_host) as proxy, pytest.MonkeyPatch.context() as patch:
        proxy.refuse_loads_holding("id", bad)
        patch.setattr(writes, "append", append)
        with Warehouse(dataclasses.replace(warehouse_config, emulator_host=proxy.url), org) as warehouse:
            result = sync_table(source, warehouse, org, NOTES, BACKFILL)
            landed = [r["id"] for r in warehouse_rows(warehouse, "notes")]
            letters = warehouse.dead_letter_ids("notes")

    assert proxy.loads == ["loaded", "refused", "loaded"] and sum(appended) == 400  # the refused load's rows
    assert (result.inserted, result.loads, result.set_aside, result.caught_up) == (1_100, 3, 1, True)
    assert landed == [i for i in ids if i != bad] and letters == [bad]
    assert watermarks.get(notes, org.id, "notes").table_id == max(ids)
