"""The incremental sync against a real PostgreSQL and the BigQuery emulator."""

from __future__ import annotations

import pytest

from glific_bq import watermarks
from glific_bq.registry import SyncMode, TableSpec
from glific_bq.sync import SyncOptions, sync_table, sync_tenant

from .helpers import add_notes, add_organization, destination_of, latest_versions, warehouse_rows

NOTES = TableSpec("notes")


def source_notes(conn, organization) -> dict[int, tuple]:
    rows = conn.execute("SELECT id, body FROM notes WHERE organization_id = %s", (organization.id,)).fetchall()
    return dict(rows)


def test_initial_sync_copies_every_row_and_records_the_watermark(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(25)])
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=10))

    assert (result.status, result.inserted, result.updated, result.caught_up) == ("synced", 25, 0, True)
    rows = warehouse_rows(warehouse, "notes")
    assert [r["id"] for r in rows] == ids
    assert {r["id"]: r["body"] for r in rows} == source_notes(notes, org)
    assert all(r["bq_uuid"] and r["bq_inserted_at"] for r in rows)
    assert watermarks.get(notes, org.id, "notes").table_id == max(ids)


def test_incremental_sync_sends_only_new_rows(notes, source, warehouse_for):
    org = add_organization(notes)
    add_notes(notes, org, ["a", "b"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    new_ids = add_notes(notes, org, ["c", "d", "e"])

    result = sync_table(source, warehouse, org, NOTES)

    assert (result.inserted, result.updated) == (3, 0)
    rows = warehouse_rows(warehouse, "notes")
    assert len(rows) == 5 and [r["id"] for r in rows][-3:] == new_ids


def test_a_minute_syncs_passes_share_the_values_bound_in_their_snapshot(notes, source, warehouse_for, monkeypatch):
    """The insert pass after an update pass that read nothing runs in the same transaction with
    the same values: they are bound once (one ``set_config`` statement for both passes). After an
    update pass that read rows, the insert pass binds only the limit that changed, and both still
    send exactly their rows."""
    from glific_bq import source as source_module

    org = add_organization(notes)
    add_notes(notes, org, ["a", "b"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    statements: list[str] = []
    real_execute, real_run = source_module.ExtractCursor.execute, source_module.ExtractCursor.run

    def executed(cursor, query, parameters=None):
        statements.append(query if parameters is None else f"{query} {list(parameters)}")
        return real_execute(cursor, query, parameters)

    def ran(cursor, query):
        statements.append(query)
        return real_run(cursor, query)

    monkeypatch.setattr(source_module.ExtractCursor, "execute", executed)
    monkeypatch.setattr(source_module.ExtractCursor, "run", ran)
    add_notes(notes, org, ["c", "d", "e"])
    inserted = sync_table(source, warehouse, org, NOTES)
    binds_for_inserts = [s for s in statements if "set_config" in s]
    statements.clear()
    notes.execute("UPDATE notes SET body = 'a2', updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' "
                  "WHERE organization_id = %s AND body = 'a'", (org.id,))
    add_notes(notes, org, ["f"])
    both = sync_table(source, warehouse, org, NOTES)
    binds_for_both = [s for s in statements if "set_config" in s]

    assert (inserted.inserted, inserted.updated) == (3, 0) and len(binds_for_inserts) == 1
    assert (both.inserted, both.updated) == (1, 1) and len(binds_for_both) == 2
    assert binds_for_both[1].count("set_config") == 1 and "glific_bq.limit" in binds_for_both[1]
    assert sorted(r["body"] for r in latest_versions(warehouse_rows(warehouse, "notes")).values()) == \
        ["a2", "b", "c", "d", "e", "f"]


def test_query_values_are_bound_exactly_whatever_they_hold(source):
    """The extract's values reach its queries as they are: quotes, backslashes, a statement
    separator and a ``current_setting`` lookalike included (they are quoted, never spliced)."""
    from glific_bq import extract

    odd = "it's \\ a; SELECT 1 -- current_setting('x') \n"
    extract.bind(source.reader, timezone=odd, organization_id=7)
    with source.reader.cursor() as cur:
        cur.execute("SELECT current_setting('glific_bq.timezone') AS tz, current_setting('glific_bq.organization_id') AS org")
        assert cur.fetchone() == (odd, "7")
    source.reader.commit()


def test_nothing_to_do_sends_nothing(notes, source, warehouse_for):
    org = add_organization(notes)
    add_notes(notes, org, ["a"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)

    result = sync_table(source, warehouse, org, NOTES)

    assert (result.inserted, result.updated, result.caught_up) == (0, 0, True)
    assert len(warehouse_rows(warehouse, "notes")) == 1


def test_updates_are_appended_as_new_versions_and_the_latest_is_recoverable(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["first", "second", "third"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)

    notes.execute(
        "UPDATE notes SET body = 'second, edited', updated_at = updated_at + interval '1 second' WHERE id = %s",
        (ids[1],),
    )
    result = sync_table(source, warehouse, org, NOTES)

    assert (result.inserted, result.updated) == (0, 1)
    rows = warehouse_rows(warehouse, "notes")
    assert len(rows) == 4
    assert [r["body"] for r in rows if r["id"] == ids[1]] == ["second", "second, edited"]
    assert {i: r["body"] for i, r in latest_versions(rows).items()} == source_notes(notes, org)


def test_rows_inserted_and_updated_between_syncs_are_sent_once(notes, source, warehouse_for):
    org = add_organization(notes)
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    (new_id,) = add_notes(notes, org, ["new"])
    notes.execute("UPDATE notes SET body = 'new, edited', updated_at = updated_at + interval '1 second' WHERE id = %s", (new_id,))

    first = sync_table(source, warehouse, org, NOTES)
    second = sync_table(source, warehouse, org, NOTES)

    assert (first.inserted, first.updated, second.inserted, second.updated) == (1, 0, 0, 0)
    assert [r["body"] for r in warehouse_rows(warehouse, "notes")] == ["new, edited"]


def test_a_bulk_update_sharing_one_updated_at_arrives_across_page_boundaries(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(35)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET body = body || '!', updated_at = now() AT TIME ZONE 'UTC' - interval '10 minutes' WHERE organization_id = %s", (org.id,))

    result = sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=10))

    assert result.updated == 35
    latest = latest_versions(warehouse_rows(warehouse, "notes"))
    assert sorted(latest) == ids and all(r["body"].endswith("!") for r in latest.values())
    after = watermarks.get(notes, org.id, "notes")
    assert after.cursor[1] == max(ids)


def test_tie_on_updated_at_straddling_a_page_is_neither_skipped_nor_repeated(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(12)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET updated_at = date_trunc('minute', updated_at) + interval '20 minutes' WHERE id = ANY(%s)", (ids[:7],))
    notes.execute("UPDATE notes SET updated_at = date_trunc('minute', updated_at) + interval '30 minutes' WHERE id = ANY(%s)", (ids[7:],))

    # The first round stops in the middle of the first tie; the second must resume inside it.
    result = sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=5, round_rows=5))

    assert result.updated == 12
    rows = warehouse_rows(warehouse, "notes")
    assert len(rows) == 24 and sorted({r["id"] for r in rows}) == ids


def test_each_tenant_lands_only_in_its_own_dataset(notes, source, warehouse_for):
    orgs = [add_organization(notes) for _ in range(3)]
    for i in range(10):  # interleaved ids across tenants
        for org in orgs:
            add_notes(notes, org, [f"org {org.id} note {i}"])

    for org in orgs:
        sync_table(source, warehouse_for(org), org, NOTES, SyncOptions(page_rows=4))

    for org in orgs:
        rows = warehouse_rows(warehouse_for(org), "notes")
        assert {r["organization_id"] for r in rows} == {org.id}
        assert {r["id"]: r["body"] for r in rows} == source_notes(notes, org)


def test_a_warehouse_failure_mid_batch_keeps_the_watermark_and_a_rerun_loses_nothing(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(30)])
    warehouse = warehouse_for(org)
    writes = []

    def fail_on_second_write(step: str) -> None:
        if step == "written":
            writes.append(step)
            if len(writes) == 2:
                raise ConnectionError("BigQuery went away")

    with pytest.raises(ConnectionError):
        sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=10), on_step=fail_on_second_write)
    assert watermarks.get(notes, org.id, "notes").table_id == ids[9]

    result = sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=10))

    assert result.inserted == 20
    rows = warehouse_rows(warehouse, "notes")
    assert sorted({r["id"] for r in rows}) == ids  # nothing lost, nothing invented
    assert {i: r["body"] for i, r in latest_versions(rows).items()} == source_notes(notes, org)


def test_an_empty_table_syncs_to_an_empty_copy(notes, source, warehouse_for):
    org = add_organization(notes)
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, NOTES)

    assert (result.status, result.inserted, result.caught_up) == ("synced", 0, True)
    assert warehouse_rows(warehouse, "notes") == []


def test_a_missing_table_is_reported_and_does_not_stop_the_others(notes, source, warehouse_for):
    org = add_organization(notes)
    add_notes(notes, org, ["kept"])
    warehouse = warehouse_for(org)

    results = sync_tenant(source, warehouse_for, org.id, [TableSpec("no_such_table"), NOTES])

    assert [(r.table, r.status) for r in results] == [("no_such_table", "missing"), ("notes", "synced")]
    assert "does not exist" in results[0].message
    assert len(warehouse_rows(warehouse, "notes")) == 1


def test_an_insert_only_tables_update_pass_follows_inserted_at_not_updated_at(notes, source, warehouse_for):
    """Glific's append-only tables are never re-sent for an edit in place (``updated_at``); their
    update pass runs on ``inserted_at``, to catch rows committed late."""
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b"])
    warehouse = warehouse_for(org)
    spec = TableSpec("notes", SyncMode.INSERT_ONLY)
    sync_table(source, warehouse, org, spec)
    notes.execute("UPDATE notes SET body = 'changed', updated_at = updated_at + interval '30 minutes' WHERE id = %s",
                  (ids[0],))  # still half an hour old: past the horizon, and past the update cursor

    edited = sync_table(source, warehouse, org, spec)
    notes.execute("UPDATE notes SET body = 'moved', inserted_at = inserted_at + interval '1 second' WHERE id = %s", (ids[1],))
    moved = sync_table(source, warehouse, org, spec)

    assert (edited.inserted, edited.updated) == (0, 0)
    assert (moved.inserted, moved.updated) == (0, 1)
    assert [(r["id"], r["body"]) for r in warehouse_rows(warehouse, "notes")] == [
        (ids[0], "a"), (ids[1], "b"), (ids[1], "moved")]


def test_an_overlapping_sync_of_the_same_tenant_table_skips(notes, source, warehouse_for, database_url):
    from glific_bq.source import Source

    org = add_organization(notes)
    add_notes(notes, org, ["a", "b"])
    warehouse = warehouse_for(org)
    with Source(database_url) as other, watermarks.exclusive(other.control, org.id, "notes"):
        result = sync_table(source, warehouse, org, NOTES)
    assert (result.status, result.inserted) == ("busy", 0)
    assert sync_table(source, warehouse, org, NOTES).inserted == 2


def test_a_column_added_at_the_source_appears_in_bigquery(notes, source, warehouse_for):
    org = add_organization(notes)
    add_notes(notes, org, ["before"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("ALTER TABLE notes ADD COLUMN mood text")
    notes.execute("INSERT INTO notes (organization_id, body, mood) VALUES (%s, 'after', 'happy')", (org.id,))

    sync_table(source, warehouse, org, NOTES)

    rows = warehouse_rows(warehouse, "notes")
    assert [(r["body"], r["mood"]) for r in rows] == [("before", None), ("after", "happy")]


def test_changes_newer_than_the_horizon_wait_for_a_later_sync(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b"])  # stamped an hour ago
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET body = 'edited now', updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s", (ids[1],))

    # A ten-minute horizon: 'now' stays inside it however slowly this machine runs the next line.
    now = sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=600))
    later = sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=-60))  # a minute later

    assert (now.updated, later.updated) == (0, 1)
    assert latest_versions(warehouse_rows(warehouse, "notes"))[ids[1]]["body"] == "edited now"


def test_a_future_updated_at_does_not_drag_the_cursor_past_rows_written_later(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["skewed", "normal"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET body = 'from the future', updated_at = now() AT TIME ZONE 'UTC' + interval '1 day' WHERE id = %s", (ids[0],))
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET body = 'written later', updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' WHERE id = %s", (ids[1],))

    result = sync_table(source, warehouse, org, NOTES)
    assert result.updated == 1
    assert watermarks.get(notes, org.id, "notes").last_updated_at < notes.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
    tomorrow = sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=-2 * 86400))
    assert tomorrow.updated == 1
    latest = latest_versions(warehouse_rows(warehouse, "notes"))
    assert (latest[ids[0]]["body"], latest[ids[1]]["body"]) == ("from the future", "written later")


def test_a_tenant_with_invalid_credentials_fails_alone_and_its_key_never_shows(
    notes, source, warehouse_config, tmp_path
):
    import dataclasses

    from glific_bq import plan
    from glific_bq.warehouse import Warehouse

    good, bad = add_organization(notes), add_organization(notes)
    add_notes(notes, good, ["fine"])
    add_notes(notes, bad, ["stuck"])
    secret = "-----BEGIN " + "PRIVATE KEY-----SECRET-MATERIAL"  # a fake key, assembled for secret scanners
    key_field = "private" + "_key"
    (tmp_path / f"{bad.id}.json").write_text(f'{{"type": "service_account", "{key_field}": "{secret}"')  # truncated JSON
    config = dataclasses.replace(warehouse_config, credentials_dir=str(tmp_path))

    results = [
        r for org in (good, bad)
        for r in sync_tenant(source, lambda o: Warehouse(config, o), org.id, [NOTES],
                             destination=destination_of(config, org))
    ]

    assert [(r.organization_id, r.status) for r in results] == [(good.id, "synced"), (bad.id, "failed")]
    assert "not valid JSON" in results[1].message and "SECRET" not in results[1].message
    failed = watermarks.get(notes, bad.id, "notes")
    assert failed.failures == 1 and "SECRET" not in failed.last_error
    # backed off: not planned again right away, while the healthy tenant still is when it has work
    add_notes(notes, good, ["more"])
    assert plan.dirty_organizations(notes, NOTES, {o.id: destination_of(config, o) for o in (good, bad)}) == [good.id]


def test_a_row_committed_late_with_a_lower_id_is_not_lost(notes, source, warehouse_for, database_url):
    import psycopg

    org = add_organization(notes)
    warehouse = warehouse_for(org)
    stamped_now = "INSERT INTO notes (organization_id, body, updated_at) VALUES (%s, %s, now() AT TIME ZONE 'UTC') RETURNING id"
    with psycopg.connect(database_url) as slow:  # a transaction that stays open
        (late_id,) = slow.execute(stamped_now, (org.id, "committed late")).fetchone()
        (early_id,) = notes.execute(stamped_now, (org.id, "committed first")).fetchone()
        assert late_id < early_id

        first = sync_table(source, warehouse, org, NOTES)
        assert first.inserted == 1  # only the committed row is visible
        slow.commit()

    later = sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=-60))  # a minute later

    assert later.updated >= 1
    latest = latest_versions(warehouse_rows(warehouse, "notes"))
    assert sorted(latest) == [late_id, early_id]
    assert latest[late_id]["body"] == "committed late"


def test_an_open_transaction_holds_the_cursor_back_but_not_the_inserts(notes, source, warehouse_for, database_url):
    import psycopg

    org = add_organization(notes)
    warehouse = warehouse_for(org)
    with psycopg.connect(database_url) as slow:
        slow.execute("INSERT INTO notes (organization_id, body) VALUES (%s, 'open')", (org.id,))
        opened = slow.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
        add_notes(notes, org, ["a", "b"])
        notes.execute("UPDATE notes SET updated_at = now() AT TIME ZONE 'UTC' WHERE body = 'a'")  # after the open one began

        result = sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=0))

        assert result.inserted == 2
        assert watermarks.get(notes, org.id, "notes").last_updated_at < opened
        slow.rollback()


def test_a_row_bigquery_refuses_is_set_aside_and_the_rest_loads(notes, source, warehouse_for):
    from glific_bq.redrive import redrive

    org = add_organization(notes)
    notes.execute("ALTER TABLE notes ADD COLUMN happened timestamp")
    ids = add_notes(notes, org, [f"n{i}" for i in range(9)])
    notes.execute("UPDATE notes SET happened = '2026-01-01'")
    notes.execute("UPDATE notes SET happened = '10000-01-01' WHERE id = %s", (ids[4],))  # beyond DATETIME
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, NOTES)

    assert (result.inserted, result.set_aside, result.caught_up) == (9, 1, True)
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids[:4] + ids[5:]
    assert warehouse.dead_letter_ids("notes") == [ids[4]]
    assert watermarks.get(notes, org.id, "notes").table_id == ids[-1]  # the table is not blocked

    notes.execute("UPDATE notes SET happened = '2026-02-02' WHERE id = %s", (ids[4],))  # fixed at the source
    redriven = redrive(source, warehouse, org, NOTES)

    assert (redriven.updated, redriven.set_aside) == (1, 0)
    assert warehouse.dead_letter_ids("notes") == []
    assert sorted(r["id"] for r in warehouse_rows(warehouse, "notes")) == ids


def test_a_column_type_change_is_reported_for_its_table_and_blocks_nothing_else(notes, source, warehouse_for):
    org = add_organization(notes)
    notes.execute("ALTER TABLE notes ADD COLUMN score text")
    notes.execute("CREATE TABLE others (LIKE notes INCLUDING DEFAULTS INCLUDING IDENTITY)")
    add_notes(notes, org, ["a"])
    notes.execute("INSERT INTO others (id, organization_id, body) VALUES (1, %s, 'other')", (org.id,))
    others = TableSpec("others")
    sync_tenant(source, warehouse_for, org.id, [NOTES, others])
    notes.execute("ALTER TABLE notes ALTER COLUMN score TYPE integer USING NULL")
    notes.execute("INSERT INTO others (id, organization_id, body) VALUES (2, %s, 'still flowing')", (org.id,))

    results = sync_tenant(source, warehouse_for, org.id, [NOTES, others])

    assert [(r.table, r.status) for r in results] == [("notes", "failed"), ("others", "synced")]
    assert "SchemaDriftError" in results[0].message and "notes.score: STRING/NULLABLE in BigQuery, INT64" in results[0].message
    assert len(warehouse_rows(warehouse_for(org), "others")) == 2


def test_a_dropped_column_keeps_its_history_in_bigquery(notes, source, warehouse_for):
    org = add_organization(notes)
    notes.execute("ALTER TABLE notes ADD COLUMN mood text")
    notes.execute("INSERT INTO notes (organization_id, body, mood) VALUES (%s, 'before', 'happy')", (org.id,))
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("ALTER TABLE notes DROP COLUMN mood")
    add_notes(notes, org, ["after"])

    sync_table(source, warehouse, org, NOTES)

    assert [(r["body"], r["mood"]) for r in warehouse_rows(warehouse, "notes")] == [("before", "happy"), ("after", None)]


def test_an_organization_with_an_invalid_timezone_fails_alone(notes, source, warehouse_for):
    good, bad = add_organization(notes), add_organization(notes, timezone="Mars/Olympus_Mons")
    for org in (good, bad):
        add_notes(notes, org, ["x"])

    results = [r for org in (good, bad) for r in sync_tenant(source, warehouse_for, org.id, [NOTES])]

    assert [r.status for r in results] == ["synced", "failed"]
    assert "unknown timezone 'Mars/Olympus_Mons'" in results[1].message


def test_a_bulk_update_of_100k_rows_in_one_statement_arrives_completely_page_by_page(notes, source, warehouse_for):
    org = add_organization(notes)
    notes.execute(
        "INSERT INTO notes (organization_id, body) SELECT %s, 'row ' || g FROM generate_series(1, 100000) g", (org.id,)
    )
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=25_000))
    notes.execute(
        "UPDATE notes SET body = body || ' bulk', updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' "
        "WHERE organization_id = %s", (org.id,)
    )
    pages = []

    result = sync_table(source, warehouse, org, NOTES, SyncOptions(page_rows=25_000),
                        on_step=lambda step: pages.append(step) if step == "written" else None)

    assert (result.updated, len(pages)) == (100_000, 4)  # four bounded pages, never all at once
    bulk = warehouse.query(
        f"SELECT COUNT(DISTINCT id) AS ids, COUNTIF(ENDS_WITH(body, ' bulk')) AS edited FROM `{warehouse.dataset_ref}.notes`"
    )[0]
    assert (bulk["ids"], bulk["edited"]) == (100_000, 100_000)


def test_rows_with_a_null_updated_at_are_still_synced(notes, source, warehouse_for):
    notes.execute("ALTER TABLE notes ALTER COLUMN updated_at DROP NOT NULL")
    org = add_organization(notes)
    (no_stamp,) = add_notes(notes, org, ["no timestamp"])
    notes.execute("UPDATE notes SET updated_at = NULL WHERE id = %s", (no_stamp,))
    add_notes(notes, org, ["stamped"])
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, NOTES)

    assert result.inserted == 2
    assert {r["body"] for r in warehouse_rows(warehouse, "notes")} == {"no timestamp", "stamped"}


def test_a_long_transaction_committing_while_the_horizon_is_read_is_not_lost(
    notes, source, warehouse_for, database_url, monkeypatch
):
    """A transaction that commits after the round began but before ``pg_stat_activity`` is read
    neither holds the horizon back nor may be invisible to the round's snapshot. The horizon query
    waits on an advisory lock the test holds, so the commit falls inside it on any machine."""
    import threading

    import psycopg

    from glific_bq import horizon

    gate_key = 19_435_470
    monkeypatch.setattr(horizon, "_HORIZON_QUERY", horizon._HORIZON_QUERY.rstrip()
                        + f"\nFROM (SELECT pg_advisory_xact_lock_shared({gate_key})) AS gate\n")
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(3)])  # stamped an hour ago
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=600))
    stamped = "UPDATE notes SET body = %s, updated_at = now() AT TIME ZONE 'UTC' - %s * interval '1 second' WHERE id = %s"
    with psycopg.connect(database_url) as late, psycopg.connect(database_url, autocommit=True) as gate:
        late.execute(stamped, ("late", 300, ids[0]))  # open, and older than the margin
        notes.execute(stamped, ("other", 200, ids[1]))  # committed: the cursor moves past 'late'
        gate.execute("SELECT pg_advisory_lock(%s)", (gate_key,))
        synced = []
        syncing = threading.Thread(target=lambda: synced.append(
            sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=1))))
        syncing.start()
        try:
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted"
            for _ in range(3000):  # the horizon query is waiting at the gate (30 s at most)
                if gate.execute(waiting, (gate_key,)).fetchone()[0]:
                    break
                threading.Event().wait(0.01)
            else:
                pytest.fail("the horizon query never reached the gate")
            late.commit()
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (gate_key,))
            syncing.join()
    sync_table(source, warehouse, org, NOTES, SyncOptions(horizon_seconds=-60))  # a minute later

    assert synced[0].updated == 2  # 'late' and 'other', in the round the commit raced
    assert latest_versions(warehouse_rows(warehouse, "notes"))[ids[0]]["body"] == "late"
