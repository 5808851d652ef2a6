"""History mode (``GLIFIC_BQ_VERSIONS=history``) and the pruned in-place dedup, against real
PostgreSQL and the emulator: every version kept in ``<table>_history``, ``<table>`` the source's
latest state row by row, refreshes that die at any statement, and the statements themselves
read only the months and days the changes live in.

The emulator bills nothing and its dry runs report no bytes, so what BigQuery would read is
asserted from the statements: ``Statements`` records every SQL text and its parameters on the one
query path (``warehouse.client.query``, which ``warehouse.queries.run`` calls).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from google.cloud import bigquery

from glific_bq import clean, dedup, registry, sent_months, upkeep, views
from glific_bq.local import glific_writes as gw
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.sync import sync_table
from glific_bq.tenants import get_organization
from glific_bq.warehouse import Warehouse
from glific_bq.warehouse.config import Versions

from .helpers import add_notes, add_organization, latest_versions, warehouse_rows

NOTES = TableSpec("notes")
JANUARY, MARCH = datetime(2026, 1, 15, 9, 0), datetime(2026, 3, 15, 9, 0)
_phones = itertools.count(1)


class Statements:
    """Records every statement sent to BigQuery, with its parameters; ``kill_at`` (a count of
    statements) makes the one at that index fail before it runs, ``kill_after`` after it ran: a
    process that died there."""

    def __init__(self, client) -> None:
        self.client, self.query_ = client, client.query
        self.sql: list[str] = []
        self.params: list[dict] = []
        self.kill_at: int | None = None
        self.kill_after: int | None = None

    def query(self, statement, job_config=None, **kwargs):
        index = len(self.sql)
        self.sql.append(statement)
        self.params.append({p.name: getattr(p, "value", getattr(p, "values", None))
                            for p in (job_config.query_parameters if job_config else [])})
        if index == self.kill_at:
            raise Killed(statement)
        job = self.query_(statement, job_config=job_config, **kwargs)
        if index == self.kill_after:
            job.result()
            raise Killed(statement)
        return job

    def clear(self) -> None:
        self.sql.clear()
        self.params.clear()

    def starting(self, word: str) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith(word)]


class Killed(RuntimeError):
    pass


@pytest.fixture
def history_config(warehouse_config):
    return replace(warehouse_config, versions=Versions.HISTORY)


def _open(config, organization) -> tuple[Warehouse, Statements]:
    warehouse = Warehouse(config, organization)
    recorder = Statements(warehouse.client)
    warehouse.client.query = recorder.query
    return warehouse, recorder


def _months(statement: str, column: str = "inserted_at") -> set[str]:
    """The months a statement's literal ranges on ``column`` cover (first days)."""
    found = set()
    for first, end in re.findall(rf"`{column}` >= \w+ '(\d{{4}}-\d{{2}})-01[^']*' AND [\w.]*`{column}` < \w+ '(\d{{4}}-\d{{2}})-01",
                                 statement):
        month = date.fromisoformat(first + "-01")
        while month.isoformat()[:7] != end:
            found.add(month.isoformat()[:7])
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return found


def _columns_named(statement: str, columns) -> set[str]:
    """Which of ``columns`` the statement names (as words)."""
    return {c for c in columns if re.search(rf"\b{c}\b", statement)}


def _refresh(source, warehouse, spec=NOTES, **kwargs):
    result = clean.refresh_table(source.control, warehouse, spec, **kwargs)
    assert result.error is None and result.skipped_reason is None, result
    return result


def _clean_rows(warehouse, table="notes"):
    return warehouse_rows(warehouse, table)


def _source_notes(conn) -> dict[int, str]:
    return dict(conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall())


_edits = itertools.count(1)


def _edit(conn, ids, suffix="+"):
    """A new version of ``ids``, changed later than any change before (and before the horizon)."""
    at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=30) + timedelta(seconds=next(_edits))
    conn.execute("UPDATE notes SET body = body || %s, updated_at = %s WHERE id = ANY(%s)", (suffix, at, list(ids)))


def _as_if_sent_earlier(conn, warehouse, table, hours=5):
    """Move what was sent so far ``hours`` back in time (its send times in BigQuery, the months'
    record in PostgreSQL), as if those syncs ran then: the tests' clock, without waiting."""
    warehouse.query(f"UPDATE `{warehouse.dataset_ref}.{table}` "
                    f"SET bq_inserted_at = TIMESTAMP_SUB(bq_inserted_at, INTERVAL {hours} HOUR) WHERE TRUE")
    conn.execute(f"UPDATE {sent_months.TABLE} SET sent_at = sent_at - make_interval(hours => %s)", (hours,))


def _hours_ago(hours):
    return datetime.now(timezone.utc) - timedelta(hours=hours)


# -- history kept, clean table right --------------------------------------------------------------


def test_history_keeps_every_version_and_the_clean_table_is_the_source_row_by_row(notes, source, history_config):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "c", "d", "e"])
    warehouse, _ = _open(history_config, org)
    for round_ in range(4):
        if round_:
            _edit(notes, ids[:round_ + 1])
        sync_table(source, warehouse, org, NOTES)
        if round_ % 2:  # refreshes between some syncs only: the history carries the rest
            _refresh(source, warehouse)
    _refresh(source, warehouse)

    history = warehouse_rows(warehouse, "notes_history")
    # 5 first sends, then 2, 3 and 4 edited ids sent again: every version is still there.
    assert len(history) == 5 + 2 + 3 + 4
    assert len({r["bq_uuid"] for r in history}) == len(history)
    rows = _clean_rows(warehouse)
    assert {r["id"]: r["body"] for r in rows} == _source_notes(notes)
    assert len(rows) == len(ids)
    assert rows == sorted(latest_versions(history).values(), key=lambda r: r["id"])


def test_a_table_synced_in_history_mode_is_set_up_as_a_clean_table_and_a_history(notes, source, history_config):
    org = add_organization(notes)
    add_notes(notes, org, ["a"])
    warehouse, _ = _open(history_config, org)
    sync_table(source, warehouse, org, NOTES)

    history = warehouse.client.get_table(f"{warehouse.dataset_ref}.notes_history")
    table = warehouse.client.get_table(f"{warehouse.dataset_ref}.notes")
    assert (history.time_partitioning.type_, history.time_partitioning.field, history.clustering_fields) == (
        "DAY", "bq_inserted_at", ["id"])
    assert (table.time_partitioning.type_, table.time_partitioning.field, table.clustering_fields) == (
        "MONTH", "inserted_at", ["id"])
    assert [f.name for f in table.schema] == [f.name for f in history.schema]
    assert warehouse_rows(warehouse, "notes") == []  # until the first refresh


# -- what the statements read ----------------------------------------------------------------------


def test_the_sync_issues_no_query_only_appends_in_either_mode(notes, source, warehouse_config, history_config):
    """The sync's writes are Storage Write appends: once its tables are set up, a sync sends no
    query or DML at all, so it reads no partition of any table (in history mode it appends to
    ``<table>_history`` only)."""
    for config in (warehouse_config, history_config):
        org = add_organization(notes)
        ids = add_notes(notes, org, ["a", "b"])
        warehouse, statements = _open(config, org)
        sync_table(source, warehouse, org, NOTES)
        _edit(notes, ids[:1])
        statements.clear()

        assert sync_table(source, warehouse, org, NOTES).updated == 1
        assert statements.sql == [], config.versions


# -- (the refresh and the dedup) ----------------------------------------------------------------------


def test_a_refresh_reads_only_the_days_sent_since_and_merges_only_the_changed_months(notes, source, history_config):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["jan", "mar", "now"])
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (JANUARY, ids[0]))
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (MARCH, ids[1]))
    warehouse, statements = _open(history_config, org)
    sync_table(source, warehouse, org, NOTES)
    _as_if_sent_earlier(notes, warehouse, "notes_history")
    first = _hours_ago(3)
    _refresh(source, warehouse, now=first)

    _edit(notes, [ids[0]])  # an old row re-sent: its version lands in January, not in this month
    sync_table(source, warehouse, org, NOTES)
    statements.clear()
    result = _refresh(source, warehouse, now=_hours_ago(0))

    changes, merge = statements.sql
    lower = first - dedup.SINCE_MARGIN
    history_bound = f"bq_inserted_at >= TIMESTAMP '{lower:%Y-%m-%d %H:%M:%S.%f}+00'"
    assert history_bound in changes and history_bound in merge  # the history's days since the mark only
    assert changes.count("WHERE") == 1 and "notes_history" in changes and "`notes`" not in changes
    assert _columns_named(changes, ("id", "inserted_at", "bq_inserted_at", "body", "updated_at", "bq_uuid",
                                    "organization_id", "payload")) == {"id", "inserted_at", "bq_inserted_at"}
    assert merge.startswith("\nMERGE") and _months(merge) == {"2026-01"}  # the old month, and only it
    assert (result.ids, result.merged, result.months) == (1, 1, ["2026-01"])
    assert {r["id"]: r["body"] for r in _clean_rows(warehouse)} == _source_notes(notes)


def test_a_refresh_with_nothing_sent_merges_nothing(notes, source, history_config):
    org = add_organization(notes)
    add_notes(notes, org, ["a"])
    warehouse, statements = _open(history_config, org)
    sync_table(source, warehouse, org, NOTES)
    _as_if_sent_earlier(notes, warehouse, "notes_history")
    first = _hours_ago(3)
    _refresh(source, warehouse, now=first)
    statements.clear()

    result = _refresh(source, warehouse, now=_hours_ago(0))

    assert (result.ids, result.merged) == (0, 0)
    assert statements.starting("MERGE") == [] and len(statements.sql) == 1  # CHANGES only


def test_the_in_place_dedup_surveys_only_the_months_the_sends_touched(notes, source, warehouse_config):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["jan", "mar", "now"])
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (JANUARY, ids[0]))
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (MARCH, ids[1]))
    warehouse, statements = _open(warehouse_config, org)
    sync_table(source, warehouse, org, NOTES)
    _as_if_sent_earlier(notes, warehouse, "notes")
    # Months were recorded since long before (a pass a day ago noted it), then a pass 3 hours ago.
    sent_months.start(source.control, org.id, "notes", warehouse.destination, _hours_ago(24))
    upkeep.dedup_tenants(source, lambda o: warehouse, [org], [NOTES], now=_hours_ago(3))
    _edit(notes, [ids[0]])  # an old row re-sent: its duplicate lands in January
    sync_table(source, warehouse, org, NOTES)
    statements.clear()

    (outcome,) = upkeep.dedup_tenants(source, lambda o: warehouse, [org], [NOTES], now=_hours_ago(0))

    survey, *rest = [s for s in statements.sql if "notes`" in s]
    assert _months(survey) == {"2026-01"}
    assert rest and all(_months(s) == {"2026-01"} for s in rest)  # KEY_CHECK and DELETE too
    assert outcome.metadata["deleted"] == 1
    assert {r["id"]: r["body"] for r in warehouse_rows(warehouse, "notes")} == _source_notes(notes)


def test_the_in_place_dedup_without_a_record_of_months_surveys_every_month(notes, source, warehouse_config):
    """Versions sent before months were recorded (an upgrade): no restriction, nothing missed."""
    org = add_organization(notes)
    ids = add_notes(notes, org, ["jan", "now"])
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (JANUARY, ids[0]))
    warehouse, statements = _open(warehouse_config, org)
    sync_table(source, warehouse, org, NOTES)
    _edit(notes, [ids[0]])
    sync_table(source, warehouse, org, NOTES)
    statements.clear()

    months = sent_months.since(source.control, org.id, "notes", warehouse.destination,
                               datetime.now(timezone.utc) - timedelta(hours=2))
    result = dedup.dedup_table(warehouse, NOTES, since=datetime.now(timezone.utc) - timedelta(minutes=5),
                               months=months)

    assert months is None and _months(statements.sql[0]) == set()
    assert result.deleted == 1


def test_the_in_place_dedup_on_a_glific_created_unpartitioned_table_is_still_restricted(notes, source,
                                                                                          warehouse_config):
    org = add_organization(notes)
    ids = add_notes(notes, org, ["jan", "now"])
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (JANUARY, ids[0]))
    warehouse, statements = _open(warehouse_config, org)
    # The table exists before the first sync, unpartitioned and clustered on other columns (as
    # Glific's older tables are): the sync takes it over as it is.
    client = warehouse.client
    client.create_dataset(warehouse.dataset_ref, exists_ok=True)
    table = bigquery.Table(f"{warehouse.dataset_ref}.notes", schema=[
        bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("organization_id", "INT64"),
        bigquery.SchemaField("body", "STRING"), bigquery.SchemaField("inserted_at", "DATETIME")])
    table.clustering_fields = ["organization_id"]
    client.create_table(table)
    sync_table(source, warehouse, org, NOTES)
    _edit(notes, ids)
    sync_table(source, warehouse, org, NOTES)
    assert client.get_table(table.reference).time_partitioning is None
    statements.clear()

    result = dedup.dedup_table(warehouse, NOTES, since=datetime.now(timezone.utc) - timedelta(minutes=5),
                               months=[date(2026, 1, 1)])

    assert all(_months(s) == {"2026-01"} for s in statements.sql)  # no pruning there, but fewer rows compared
    assert result.deleted == 1  # January's duplicate; this month's waits for its own month's record
    assert len(warehouse_rows(warehouse, "notes")) == 3


# -- a refresh that dies ---------------------------------------------------------------------------


def _changed_world(notes, source, config):
    """A history-mode tenant, refreshed once, then with new versions of two ids and a new id."""
    org = add_organization(notes)
    ids = add_notes(notes, org, ["a", "b", "c"])
    notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (JANUARY, ids[0]))
    warehouse, statements = _open(config, org)
    sync_table(source, warehouse, org, NOTES)
    _as_if_sent_earlier(notes, warehouse, "notes_history")
    first = _hours_ago(3)
    _refresh(source, warehouse, now=first)
    _edit(notes, ids[:2])
    add_notes(notes, org, ["d"])
    sync_table(source, warehouse, org, NOTES)
    return org, warehouse, statements, first


def test_a_refresh_killed_at_any_statement_leaves_the_clean_table_whole_and_the_next_completes_it(
        notes, source, history_config):
    org, warehouse, statements, first = _changed_world(notes, source, history_config)
    before = _clean_rows(warehouse)
    statements.clear()
    _refresh(source, warehouse, now=_hours_ago(0))
    steps = len(statements.sql)
    refreshed = _clean_rows(warehouse)
    assert steps == 2 and refreshed != before
    # Undo: the same world again, for each place a refresh can die.
    for kill in [("at", i) for i in range(steps)] + [("after", i) for i in range(steps)]:
        notes.execute("DELETE FROM notes")
        org, warehouse, statements, first = _changed_world(notes, source, history_config)
        before = _clean_rows(warehouse)
        statements.clear()
        setattr(statements, f"kill_{kill[0]}", kill[1])
        with pytest.raises(Killed):
            clean.refresh_table(source.control, warehouse, NOTES, now=_hours_ago(0))
        left = _clean_rows(warehouse)
        fully = {r["id"]: r["body"] for r in left} == _source_notes(notes) and len(left) == 4
        assert left == before or fully, kill  # as it was, or fully refreshed
        assert clean.mark(source.control, org.id, "notes", warehouse.destination) == first  # not moved
        statements.kill_at = statements.kill_after = None
        _refresh(source, warehouse, now=_hours_ago(0))
        assert {r["id"]: r["body"] for r in _clean_rows(warehouse)} == _source_notes(notes), kill
        assert len(_clean_rows(warehouse)) == 4


def test_taking_over_a_table_of_versions_copies_them_to_the_history_once_even_when_killed(
        notes, source, warehouse_config, history_config):
    """A dataset synced in place (duplicates between dedup passes, rows without bq_uuid as Glific
    wrote them) switched to history mode: the first refresh keeps every row it held in the history,
    exactly once, whichever statement it died at, and leaves one row per id."""
    for kill in [None, *range(8)]:
        notes.execute("DELETE FROM notes")
        org = add_organization(notes)
        ids = add_notes(notes, org, ["a", "b"])
        in_place, _ = _open(warehouse_config, org)
        sync_table(source, in_place, org, NOTES)
        _edit(notes, ids[:1])
        sync_table(source, in_place, org, NOTES)  # 3 rows: a, b, a+
        table = f"`{in_place.dataset_ref}.notes`"
        in_place.query(f"INSERT INTO {table} SELECT * REPLACE (CAST(NULL AS STRING) AS bq_uuid, "
                       f"TIMESTAMP_SUB(bq_inserted_at, INTERVAL 1 DAY) AS bq_inserted_at, 'by Glific' AS body) "
                       f"FROM {table} WHERE id = @id AND body = 'b'", id=ids[1])
        held = warehouse_rows(in_place, "notes")
        _edit(notes, ids[1:])
        switched, statements = _open(history_config, org)  # the same dataset, now in history mode
        sync_table(source, switched, org, NOTES)  # the first history-mode sync: to the history only
        assert len(warehouse_rows(switched, "notes")) == 4 and len(warehouse_rows(switched, "notes_history")) == 1
        statements.clear()
        statements.kill_at = kill
        if kill is not None:
            try:
                clean.refresh_table(source.control, switched, NOTES)
            except Killed:
                pass
            else:
                continue  # fewer statements than that: nothing left to kill
            statements.kill_at = None
        result = _refresh(source, switched)

        history = warehouse_rows(switched, "notes_history")
        assert len(history) == len(held) + 1, kill  # every row held, once, and the new version
        assert sorted(r["body"] for r in history) == sorted([r["body"] for r in held] + ["b+"])
        assert {r["id"]: r["body"] for r in _clean_rows(switched)} == _source_notes(notes), kill
        assert result.taken_over or kill is not None


# -- deletes ---------------------------------------------------------------------------------------


def test_an_id_deleted_at_the_source_leaves_the_clean_table_and_the_history(notes, source, history_config):
    spec = TableSpec("notes", deletes=DeletePolicy.PROPAGATE)
    org = add_organization(notes)
    ids = add_notes(notes, org, [str(i) for i in range(12)])
    warehouse, _ = _open(history_config, org)
    sync_table(source, warehouse, org, spec)
    notes.execute("DELETE FROM notes WHERE id = %s", (ids[0],))

    (first, *_) = upkeep.dedup_tenants(source, lambda o: warehouse, [org], [spec])

    assert first.error is None and first.metadata["rows_deleted_at_source_removed"] == 1
    assert ids[0] not in {r["id"] for r in _clean_rows(warehouse)}
    assert ids[0] not in {r["id"] for r in warehouse_rows(warehouse, "notes_history")}
    assert len(_clean_rows(warehouse)) == 11


# -- dashboards: the same answers in both modes ------------------------------------------------------

GLIFIC = {name: registry.table(name, registry.GLIFIC_TABLES) for name in ("messages", "contacts", "flows",
                                                                          "flow_results")}
#: Queries dashboards and dbt models run: docs/looker-studio.md's and the reference's downstream
#: ones (glific-bigquery-layout.md §3: consumers dedupe with ROW_NUMBER by bq_inserted_at, read
#: contact fields by UNNEST, flow answers by JSON path), over ``{d}`` (the dataset).
DASHBOARD_QUERIES = {
    # docs/looker-studio.md's "Messages per flow", its join in a subquery (the emulator cannot
    # group a join by aliases).
    "messages per flow": """SELECT flow_name, direction, COUNT(*) AS messages FROM (
        SELECT f.name AS flow_name, m.flow AS direction
        FROM `{d}.messages_latest` AS m JOIN `{d}.flows_latest` AS f ON f.id = m.flow_id)
        GROUP BY flow_name, direction ORDER BY messages DESC, flow_name""",
    "messages dedup by consumers": """SELECT id, body, status, bsp_status, contact_phone, flow_name FROM `{d}.messages`
        QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY bq_inserted_at DESC) = 1 ORDER BY id""",
    "messages as is": "SELECT id, body, status, inserted_at FROM `{d}.messages` ORDER BY id, status",
    "contacts fields": """SELECT c.id, c.name, f.label, f.value FROM `{d}.contacts` AS c, UNNEST(c.fields) AS f
        ORDER BY c.id, f.label""",
    "flow answers": """SELECT contact_phone, JSON_EXTRACT_SCALAR(results, '$.age.input') AS age
        FROM `{d}.flow_results_latest` ORDER BY contact_phone""",
    "daily counts": "SELECT * FROM `{d}.daily_message_counts` ORDER BY 1, 2, 3, 4",
    "contacts_messages": "SELECT * FROM `{d}.contacts_messages` ORDER BY id",
    "delivery failures": "SELECT * EXCEPT (inserted_at) FROM `{d}.message_delivery_failures` ORDER BY 1",
    "flow_results_answers": "SELECT * EXCEPT (inserted_at) FROM `{d}.flow_results_answers` ORDER BY 1, 2, 3",
}


def test_dashboards_queries_answer_the_same_in_both_modes(db, source, glific_warehouse_config):
    at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=3)
    org_id = gw.organization(db, "Org", f"o{next(_phones)}", f"9180000{next(_phones):05d}", timezone="Asia/Kolkata", at=at)
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org_id,)).fetchone()[0]
    asha = gw.contact(db, org_id, "919811111111", name="Asha", at=at,
                      fields=gw.contact_fields({"city": "Pune"}, at=at))
    ben = gw.contact(db, org_id, "919833333333", name="Ben", at=at)
    flow = gw.flow(db, org_id, "Registration", at=at)
    gw.publish_revision(db, flow, at=at)
    old = gw.message(db, org_id, asha, bot, inbound=True, body="hi", flow_id=flow, at=datetime(2026, 1, 10, 8))
    failing = gw.message(db, org_id, ben, bot, inbound=False, body="welcome", is_hsm=True, at=at)
    (flow_uuid,) = db.execute("SELECT uuid FROM flows WHERE id = %s", (flow,)).fetchone()
    gw.insert_one(db, "flow_results", at=at, organization_id=org_id, contact_id=asha, flow_id=flow,
                  flow_uuid=flow_uuid, flow_version=1, results={"age": {"input": "31", "category": "Age"}})
    org = get_organization(db, org_id)
    modes = {mode: Warehouse(replace(glific_warehouse_config, versions=mode,
                                     dataset_template=f"{glific_warehouse_config.dataset_template}_{mode.value}"), org)
             for mode in Versions}

    def sync_all():
        for warehouse in modes.values():
            for spec in GLIFIC.values():
                assert sync_table(source, warehouse, org, spec).status == "synced"

    sync_all()
    later = at + timedelta(hours=1)
    gw.update(db, "messages", failing, at=later, status="error", bsp_status="error",
              errors={"message": "failed", "payload": {"payload": {"code": 1002, "reason": "Number does not exist"}}})
    gw.update(db, "messages", old, at=later, body="hi again")  # an old row re-sent, into January
    gw.update(db, "contacts", ben, at=later, name="Ben Renamed")
    sync_all()
    for warehouse in modes.values():
        results = upkeep.dedup_tenants(source, lambda o, w=warehouse: w, [org], list(GLIFIC.values()))
        assert all(r.error is None for r in results), results
        views.create_views(warehouse, tables=list(GLIFIC))

    answers = {mode: {name: [tuple(r.values()) for r in w.query(q.format(d=w.dataset_ref))]
                      for name, q in DASHBOARD_QUERIES.items()} for mode, w in modes.items()}
    assert answers[Versions.HISTORY] == answers[Versions.IN_PLACE]
    assert ("hi again" in str(answers[Versions.HISTORY]["messages as is"])
            and len(answers[Versions.HISTORY]["messages as is"]) == 2)
    history = modes[Versions.HISTORY]
    assert len(history.query(f"SELECT id FROM `{history.dataset_ref}.messages_history`")) == 4  # every version
