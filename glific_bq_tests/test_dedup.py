"""The dedup pass against the BigQuery emulator: keeps exactly the newest version of each id.

Hand-built versions (chosen ``bq_inserted_at``, ``bq_uuid``, ``updated_at``) are written with DML
``INSERT … VALUES``; ``Warehouse.append`` would stamp its own. The emulator has no streaming
buffer, so ``BufferGuard`` plays BigQuery's part: it fails any UPDATE or DELETE that would touch a
row sent inside the window, as BigQuery refuses DML on rows in the streaming buffer.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq import dedup
from glific_bq.dedup import dedup_table, dedup_tenant
from glific_bq.registry import TableSpec
from glific_bq.schema import METADATA_FIELDS
from glific_bq.sync import sync_table
from glific_bq.tenants import Organization

from .helpers import add_notes, add_organization, latest_versions, warehouse_rows

NOTES = TableSpec("notes")
NOW = datetime(2024, 11, 10, 12, 0, tzinfo=timezone.utc)
INSERTED = datetime(2024, 11, 1, 9, 0)  # every version of a row shares its inserted_at
UPDATED = datetime(2024, 11, 5, 10, 0)
SCHEMA = [
    SchemaField("id", "INT64"),
    SchemaField("organization_id", "INT64"),
    SchemaField("body", "STRING"),
    SchemaField("inserted_at", "DATETIME"),
    SchemaField("updated_at", "DATETIME"),
    *METADATA_FIELDS,
]
UUID_A, UUID_B, UUID_C, UUID_F = ("aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000",
                                  "cccccccc-0000-4000-8000-000000000000", "ffffffff-0000-4000-8000-000000000000")


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


@pytest.fixture
def warehouse(warehouse_for):
    return warehouse_for(Organization(id=7, shortcode="org7", timezone="UTC", is_active=True))


def versions_table(warehouse, name: str = "notes") -> str:
    warehouse.ensure_table(TableSpec(name), SCHEMA)
    return f"{warehouse.dataset_ref}.{name}"


def insert(warehouse, table: str, rows: list[tuple]) -> None:
    """Insert versions ``(id, body, bq_inserted_at, bq_uuid[, updated_at])`` with DML."""
    values, params = [], []
    for i, (id_, body, sent, uuid, *updated) in enumerate(rows):
        values.append(f"(@id{i}, 7, @body{i}, @inserted, @updated{i}, @uuid{i}, @sent{i})")
        params += [
            bigquery.ScalarQueryParameter(f"id{i}", "INT64", id_),
            bigquery.ScalarQueryParameter(f"body{i}", "STRING", body),
            bigquery.ScalarQueryParameter(f"updated{i}", "DATETIME", updated[0] if updated else UPDATED),
            bigquery.ScalarQueryParameter(f"uuid{i}", "STRING", uuid),
            bigquery.ScalarQueryParameter(f"sent{i}", "TIMESTAMP", sent),
        ]
    params.append(bigquery.ScalarQueryParameter("inserted", "DATETIME", INSERTED))
    statement = (f"INSERT INTO `{table}` (id, organization_id, body, inserted_at, updated_at, bq_uuid, bq_inserted_at) "
                 f"VALUES {', '.join(values)}")
    warehouse.client.query(statement, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()


def bodies(warehouse, table: str = "notes") -> dict[int, list[str]]:
    """The bodies of each id's versions, in send order."""
    by_id: dict[int, list[str]] = {}
    for row in warehouse_rows(warehouse, table):
        by_id.setdefault(row["id"], []).append(row["body"])
    return by_id


class BufferGuard:
    """Wraps ``client.query``: records every statement and, like BigQuery with its streaming
    buffer, fails an UPDATE or DELETE whose WHERE matches a row sent after ``edge`` (or with no
    send time). Only DML is checked: reading buffered rows is allowed."""

    _DML = re.compile(r"^\s*(?:DELETE FROM|UPDATE)\s+(`[^`]+`)[^\n]*\nWHERE (.*)$", re.S)

    def __init__(self, client, edge: datetime | None = None) -> None:
        self.client, self.query_ = client, client.query
        self.edge = edge
        self.statements: list[str] = []

    def query(self, statement, job_config=None, **kwargs):
        self.statements.append(statement)
        match = self._DML.match(statement)
        if match and self.edge is not None:
            table, where = match.groups()
            params = [*(job_config.query_parameters if job_config else []),
                      bigquery.ScalarQueryParameter("buffer_edge", "TIMESTAMP", self.edge)]
            probe = (f"SELECT COUNT(*) AS n FROM {table} WHERE ({where}) "
                     "AND (bq_inserted_at IS NULL OR bq_inserted_at > @buffer_edge)")
            (row,) = self.query_(probe, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()
            assert row["n"] == 0, f"DML would touch {row['n']} rows in the streaming buffer:\n{statement}"
        return self.query_(statement, job_config=job_config, **kwargs)

    @property
    def dml(self) -> list[str]:
        return [s.split()[0] for s in self.statements if self._DML.match(s)]


@pytest.fixture
def guard(warehouse, monkeypatch):
    guard = BufferGuard(warehouse.client)
    monkeypatch.setattr(warehouse.client, "query", guard.query)
    return guard


def test_leaves_exactly_the_newest_version_per_id(notes, source, warehouse_for):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "c", "d"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    for round_ in (1, 2):  # ids[0] and ids[1] get 3 versions, ids[2] gets 2, ids[3] stays single
        changed = ids[:2] if round_ == 2 else ids[:3]
        notes.execute("UPDATE notes SET body = body || '+', updated_at = updated_at + interval '1 second' "
                      "WHERE id = ANY(%s)", (changed,))
        sync_table(source, warehouse, org, NOTES)
    before = warehouse_rows(warehouse, "notes")
    assert len(before) == 9

    result = dedup_table(warehouse, "notes", since=None)

    after = warehouse_rows(warehouse, "notes")
    assert (result.deleted, result.candidates, result.error, result.skipped_reason) == (5, 4, None, None)
    assert after == sorted(latest_versions(before).values(), key=lambda r: r["id"])
    assert [r["body"] for r in after] == ["a++", "b++", "c+", "d"]


def test_ties_on_updated_at_are_resolved_by_load_time_then_bq_uuid(warehouse):
    table = versions_table(warehouse)
    insert(warehouse, table, [  # every version has the same updated_at
        (1, "sent later, smaller uuid", hours_ago(5), UUID_A),
        (1, "sent first, greatest uuid", hours_ago(6), UUID_F),
        (2, "same time, uuid b", hours_ago(5), UUID_B),
        (2, "same time, uuid c", hours_ago(5), UUID_C),
        (2, "same time, uuid a", hours_ago(5), UUID_A),
    ])

    first = dedup_table(warehouse, "notes", since=None, now=NOW)
    again = dedup_table(warehouse, "notes", since=None, now=NOW)

    assert (first.deleted, again.deleted) == (3, 0)
    assert bodies(warehouse) == {1: ["sent later, smaller uuid"], 2: ["same time, uuid c"]}


def test_a_daylight_saving_repeat_keeps_the_later_sent_version(notes, source, warehouse_for):
    org = add_organization(notes, timezone="America/New_York")
    (note,) = add_notes(notes, org, ["before the repeat"])
    # 05:30 UTC is 01:30 EDT; 06:10 UTC, forty minutes later, is 01:10 EST: local time goes back.
    notes.execute("UPDATE notes SET updated_at = '2024-11-03 05:30:00' WHERE id = %s", (note,))
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute("UPDATE notes SET body = 'after the repeat', updated_at = '2024-11-03 06:10:00' WHERE id = %s", (note,))
    sync_table(source, warehouse, org, NOTES)
    first, second = warehouse_rows(warehouse, "notes")
    assert second["updated_at"] < first["updated_at"] < second["updated_at"] + timedelta(hours=1)
    assert first["bq_inserted_at"] < second["bq_inserted_at"]

    result = dedup_table(warehouse, "notes", since=None)

    assert result.deleted == 1
    assert [r["body"] for r in warehouse_rows(warehouse, "notes")] == ["after the repeat"]


def test_rows_without_bq_uuid_are_deduplicated_and_identical_copies_leave_one(warehouse):
    table = versions_table(warehouse)
    insert(warehouse, table, [
        (1, "old, no uuid", hours_ago(6), None),
        (1, "new, no uuid", hours_ago(5), None),
        (2, "copy", hours_ago(5), None),
        (2, "copy", hours_ago(5), None),
        (3, "old, uuid", hours_ago(6), UUID_F),
        (3, "new, no uuid", hours_ago(5), None),
        (4, "copy with uuid", hours_ago(5), UUID_A),
        (4, "copy with uuid", hours_ago(5), UUID_A),
    ])

    result = dedup_table(warehouse, "notes", since=None, now=NOW)

    assert result.deleted == 4
    assert bodies(warehouse) == {1: ["new, no uuid"], 2: ["copy"], 3: ["new, no uuid"], 4: ["copy with uuid"]}
    assert all(r["bq_uuid"] for r in warehouse_rows(warehouse, "notes"))


def test_copies_of_the_newest_version_are_never_all_deleted(warehouse, monkeypatch):
    # Should copies keep one key (no UUID given: say a copy landed between the UPDATE and the
    # DELETE), the DELETE still keeps every row that ties for the newest: RANK, not ROW_NUMBER.
    monkeypatch.setattr(dedup, "GIVE_KEYS", "SELECT 0")
    table = versions_table(warehouse)
    insert(warehouse, table, [
        (1, "old", hours_ago(6), UUID_F),
        (1, "newest", hours_ago(5), UUID_A),
        (1, "newest", hours_ago(5), UUID_A),
    ])

    result = dedup_table(warehouse, "notes", since=None, now=NOW)

    assert result.deleted == 1
    assert bodies(warehouse) == {1: ["newest", "newest"]}


def test_rows_inside_the_buffer_window_are_untouched(warehouse, guard):
    table = versions_table(warehouse)
    insert(warehouse, table, [
        (1, "committed", hours_ago(5), UUID_A),
        (1, "buffered", hours_ago(1), UUID_B),  # newer: the committed version may go
        (2, "buffered 1", hours_ago(1.2), UUID_A),
        (2, "buffered 2", hours_ago(1), UUID_B),
        (3, "buffered copy", hours_ago(1), None),
        (3, "buffered copy", hours_ago(1), None),
        (4, "committed copy", hours_ago(5), None),  # these need a uuid (UPDATE), then go (DELETE)
        (4, "committed copy", hours_ago(5), None),
        (4, "buffered, no uuid", hours_ago(1), None),
        (5, "committed", hours_ago(5), UUID_A),
        (5, "buffered 1", hours_ago(1.2), UUID_A),  # older than its neighbour, but in the buffer
        (5, "buffered 2", hours_ago(1), UUID_B),
    ])
    guard.edge = hours_ago(3)

    result = dedup_table(warehouse, "notes", since=None, buffer_window=timedelta(hours=3), now=NOW)

    assert guard.dml == ["UPDATE", "DELETE"]  # both checked against the buffer by the guard
    assert result.deleted == 4
    assert bodies(warehouse) == {
        1: ["buffered"], 2: ["buffered 1", "buffered 2"], 3: ["buffered copy", "buffered copy"],
        4: ["buffered, no uuid"], 5: ["buffered 1", "buffered 2"],
    }
    rows = warehouse_rows(warehouse, "notes")
    assert [r["bq_uuid"] for r in rows if r["id"] in (3, 4)] == [None, None, None]  # not updated


def test_versions_left_inside_the_window_are_deleted_by_the_next_pass(warehouse, guard):
    table = versions_table(warehouse)
    insert(warehouse, table, [
        (1, "buffered 1", hours_ago(2.5), UUID_A),  # older than the next pass's since minus the margin
        (1, "buffered 2", hours_ago(2), UUID_B),
        (2, "copy", hours_ago(2), None),
        (2, "copy", hours_ago(2), None),
    ])
    window = timedelta(hours=3)
    first = dedup_table(warehouse, "notes", since=None, buffer_window=window, now=NOW)
    later = NOW + window
    guard.edge = later - window

    checked = len(guard.dml)
    second = dedup_table(warehouse, "notes", since=NOW, buffer_window=window, now=later)

    assert (first.deleted, second.candidates, second.deleted) == (0, 2, 2)
    assert bodies(warehouse) == {1: ["buffered 2"], 2: ["copy"]}
    assert len(guard.dml) > checked  # the second pass's DML went through the buffer guard


def test_only_ids_changed_since_the_previous_pass_are_examined(warehouse):
    table = versions_table(warehouse)
    since = NOW - timedelta(days=1)
    insert(warehouse, table, [
        (1, "old", hours_ago(72), UUID_A),  # duplicates, but nothing new: not examined
        (1, "old too", hours_ago(48), UUID_B),
        (2, "old", hours_ago(72), UUID_A),
        (2, "changed", hours_ago(2), UUID_B),
        (3, "old", hours_ago(72), UUID_A),
        (3, "sent just before since, within the margin", since - dedup.SINCE_MARGIN / 2, UUID_B),
        (4, "single, unchanged", hours_ago(72), UUID_A),
    ])

    result = dedup_table(warehouse, "notes", since=since, now=NOW)

    assert (result.candidates, result.deleted) == (2, 2)
    assert bodies(warehouse) == {
        1: ["old", "old too"], 2: ["changed"], 3: ["sent just before since, within the margin"],
        4: ["single, unchanged"],
    }


def test_nothing_to_delete_issues_no_dml_and_deletes_nothing(warehouse, guard):
    table = versions_table(warehouse)
    insert(warehouse, table, [(1, "a", hours_ago(5), UUID_A), (2, "b", hours_ago(4), None), (3, "c", hours_ago(2), UUID_B)])
    guard.statements.clear()

    result = dedup_table(warehouse, "notes", since=None, now=NOW)

    assert (result.deleted, result.candidates, result.error) == (0, 3, None)
    assert guard.dml == [] and len(guard.statements) == 1  # the survey only
    assert bodies(warehouse) == {1: ["a"], 2: ["b"], 3: ["c"]}


def test_a_missing_table_is_skipped_and_a_failing_table_does_not_stop_the_others(warehouse):
    insert(warehouse, versions_table(warehouse), [(1, "old", hours_ago(6), UUID_A), (1, "new", hours_ago(5), UUID_B)])
    broken = bigquery.Table(f"{warehouse.dataset_ref}.broken", schema=[
        SchemaField("id", "INT64"), SchemaField("bq_uuid", "STRING"), SchemaField("bq_inserted_at", "STRING")])
    warehouse.client.create_table(broken)

    results = dedup_tenant(warehouse, ["no_such_table", "broken", "bad-name", NOTES], since=None, now=NOW)

    assert [r.table for r in results] == ["no_such_table", "broken", "bad-name", "notes"]
    missing, failed, invalid, done = results
    assert "does not exist" in missing.skipped_reason and missing.error is None
    assert "DedupError" in failed.error and "bq_inserted_at is STRING" in failed.error
    assert "ValueError" in invalid.error
    assert (done.deleted, done.error, done.skipped_reason) == (1, None, None)
    assert bodies(warehouse) == {1: ["new"]}


@pytest.mark.parametrize("since", [None, NOW - timedelta(days=1)], ids=["full", "incremental"])
def test_more_ids_than_a_parameter_holds_are_selected_by_subquery(warehouse, monkeypatch, since):
    monkeypatch.setattr(dedup, "MAX_LISTED_IDS", 1)
    table = versions_table(warehouse)
    insert(warehouse, table, [
        (1, "old", hours_ago(72), UUID_A), (1, "new", hours_ago(2), UUID_B),
        (2, "copy", hours_ago(2), None), (2, "copy", hours_ago(2), None),
        (3, "old", hours_ago(72), UUID_A), (3, "old too", hours_ago(48), UUID_B),
    ])

    result = dedup_table(warehouse, "notes", since=since, now=NOW)

    untouched = since is not None  # id 3 changed before since
    assert result.deleted == (2 if untouched else 3)
    assert bodies(warehouse) == {1: ["new"], 2: ["copy"], 3: ["old", "old too"] if untouched else ["old too"]}


def test_the_dedup_run_goes_on_past_a_tenant_it_cannot_open(notes, source, warehouse_config, tmp_path):
    import dataclasses

    from glific_bq import upkeep, watermarks
    from glific_bq.warehouse import Warehouse

    good, broken = add_organization(notes), add_organization(notes)
    (note,) = add_notes(notes, good, ["a"])
    (tmp_path / f"{broken.id}.json").write_text("not a key")
    config = dataclasses.replace(warehouse_config, credentials_dir=str(tmp_path))
    sync_table(source, Warehouse(config, good), good, NOTES)
    notes.execute("UPDATE notes SET body = 'b', updated_at = updated_at + interval '1 second' WHERE id = %s", (note,))
    sync_table(source, Warehouse(config, good), good, NOTES)  # a second version

    results = upkeep.dedup_tenants(source, lambda o: Warehouse(config, o), [broken, good], [NOTES], full=True)

    (failed,) = [r for r in results if r.error]
    assert failed.organization_id == broken.id and "not valid JSON" in failed.describe_failure()
    (done,) = [r for r in results if r.organization_id == good.id]
    assert done.error is None and done.metadata["deleted"] == 1
    assert watermarks.get(notes, good.id, "notes").deduped_at is not None


def test_month_filter_is_literal_ranges_with_consecutive_months_merged_and_nulls_named():
    from glific_bq.sent_months import NO_MONTH

    months = [dedup.date(2026, 3, 1), dedup.date(2026, 1, 1), dedup.date(2026, 2, 1), dedup.date(2026, 12, 1), NO_MONTH]

    assert dedup.month_filter("inserted_at", "DATETIME", months, alias="t") == (
        "((t.`inserted_at` >= DATETIME '2026-01-01' AND t.`inserted_at` < DATETIME '2026-04-01') OR "
        "(t.`inserted_at` >= DATETIME '2026-12-01' AND t.`inserted_at` < DATETIME '2027-01-01') OR "
        "t.`inserted_at` IS NULL)")
    assert dedup.month_filter("inserted_at", "TIMESTAMP", [dedup.date(2026, 1, 1)]) == (
        "((`inserted_at` >= TIMESTAMP '2026-01-01 00:00:00+00' AND `inserted_at` < TIMESTAMP '2026-02-01 00:00:00+00'))")
    assert dedup.month_filter("inserted_at", "DATE", []) == "FALSE"
