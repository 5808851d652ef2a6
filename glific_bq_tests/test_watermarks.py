"""Watermarks: glific_bq's own table, one row per (organization, table, destination), moving only
forward; Glific's bigquery_jobs kept in its exact shape, taken over and moved as Glific would."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from glific_bq import watermarks

from .helpers import add_organization

GLIFIC_BIGQUERY_JOBS = """
CREATE TABLE bigquery_jobs (
    id bigserial PRIMARY KEY,
    "table" varchar(255),
    table_id integer,
    organization_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    last_updated_at timestamp(6) NOT NULL DEFAULT now(),
    inserted_at timestamp(0) NOT NULL DEFAULT now(),
    updated_at timestamp(0) NOT NULL DEFAULT now()
);
CREATE INDEX bigquery_jobs_organization_id_table_index ON bigquery_jobs (organization_id, "table");
"""


@pytest.fixture
def glific_db(database_url):
    """Glific's schema with Glific's own bigquery_jobs, before glific_bq ever ran."""
    from glific_bq.local.sample_data import create_schema

    with psycopg.connect(database_url, autocommit=True) as conn:
        create_schema(conn)
        conn.execute("DROP TABLE bigquery_jobs")  # Glific's schema has it: this test's version of it
        conn.execute(GLIFIC_BIGQUERY_JOBS)
        yield conn


GLIFIC = "glific:ngo-project.919800000001"  # an organization's Glific dataset
RAW = "raw:ngo-project.glific_1"  # the same organization, another destination

#: Glific's bigquery_jobs as glific_bq versions before glific_bq_watermarks left it.
LEGACY_COLUMNS = """
ALTER TABLE bigquery_jobs ALTER COLUMN table_id TYPE bigint;
ALTER TABLE bigquery_jobs ADD COLUMN last_updated_id bigint NOT NULL DEFAULT 0;
ALTER TABLE bigquery_jobs ADD COLUMN advanced_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE bigquery_jobs ADD COLUMN last_error text;
ALTER TABLE bigquery_jobs ADD COLUMN last_failed_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN deduped_at timestamptz;
ALTER TABLE bigquery_jobs ADD COLUMN loads_on date;
ALTER TABLE bigquery_jobs ADD COLUMN loads integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX bigquery_jobs_organization_id_table_uniq ON bigquery_jobs (organization_id, "table");
"""


def _shape(conn, table: str) -> tuple[list, list]:
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
    indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname",
                           (table,)).fetchall()
    return columns, indexes


def _glific_jobs(conn, org_id: int) -> list[tuple]:
    return conn.execute('SELECT "table", table_id, last_updated_at FROM bigquery_jobs WHERE organization_id = %s '
                        'ORDER BY "table", id', (org_id,)).fetchall()


def test_glifics_bigquery_jobs_keeps_exactly_its_shape(glific_db):
    before = _shape(glific_db, "bigquery_jobs")

    watermarks.ensure_table(glific_db)
    org = add_organization(glific_db)
    watermarks.create(glific_db, org.id, "messages", GLIFIC)
    watermarks.advance(glific_db, org.id, "messages", GLIFIC, table_id=9, cursor=(datetime(2026, 5, 1), 3))
    watermarks.record_failure(glific_db, org.id, "messages", GLIFIC, "boom")

    assert _shape(glific_db, "bigquery_jobs") == before  # columns, types, defaults, indexes
    assert glific_db.execute("SELECT to_regclass('glific_bq_watermarks') IS NOT NULL").fetchone()[0]


def test_glifics_watermarks_are_taken_over_conservatively(glific_db):
    org = add_organization(glific_db)
    glific_db.execute(
        'INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at) VALUES '
        "('messages', 500, %(o)s, '2026-01-02'), ('messages', 300, %(o)s, '2026-01-03'), "
        "('contacts', 40, %(o)s, '2026-01-01')",
        {"o": org.id},
    )
    watermarks.ensure_table(glific_db)
    watermarks.ensure_table(glific_db)  # idempotent

    for table in ("messages", "contacts", "tickets"):
        watermarks.create(glific_db, org.id, table, GLIFIC)
        watermarks.create(glific_db, org.id, table, RAW)

    messages = watermarks.get(glific_db, org.id, "messages", GLIFIC)  # Glific's duplicates: the lowest
    assert (messages.table_id, messages.last_updated_at) == (300, datetime(2026, 1, 2))
    assert watermarks.get(glific_db, org.id, "contacts", GLIFIC).table_id == 40
    assert watermarks.get(glific_db, org.id, "tickets", GLIFIC).table_id == 0  # Glific never synced it
    assert watermarks.get(glific_db, org.id, "messages", RAW).table_id == 0  # another destination: from scratch
    assert len(_glific_jobs(glific_db, org.id)) == 3  # no row of Glific's added or removed


def test_advancing_moves_glifics_watermarks_as_glifics_sync_would(glific_db):
    org = add_organization(glific_db)
    glific_db.execute('INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at) VALUES '
                      "('messages', 10, %s, '2026-01-01')", (org.id,))
    watermarks.ensure_table(glific_db)
    watermarks.create(glific_db, org.id, "messages", GLIFIC)

    watermarks.advance(glific_db, org.id, "messages", GLIFIC, table_id=25, cursor=(datetime(2026, 5, 1, 12), 7))

    # Glific reads updated_at > last_updated_at: just before our cursor, rows tied there are re-sent.
    assert _glific_jobs(glific_db, org.id) == [("messages", 25, datetime(2026, 5, 1, 11, 59, 59, 999999))]
    watermarks.create(glific_db, org.id, "messages", RAW)
    watermarks.advance(glific_db, org.id, "messages", RAW, table_id=99, cursor=(datetime(2026, 6, 1), 1))
    assert _glific_jobs(glific_db, org.id)[0][1] == 25  # only the Glific layout's destination mirrors


def test_glifics_sync_running_in_between_is_taken_over_where_it_stopped(glific_db):
    """Switching back to Glific's sync and then to glific_bq again sends nothing twice."""
    org = add_organization(glific_db)
    glific_db.execute('INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at) VALUES '
                      "('messages', 0, %s, '2026-01-01')", (org.id,))
    watermarks.ensure_table(glific_db)
    watermarks.create(glific_db, org.id, "messages", GLIFIC)
    watermarks.advance(glific_db, org.id, "messages", GLIFIC, table_id=25, cursor=(datetime(2026, 5, 1), 7))

    glific_db.execute("UPDATE bigquery_jobs SET table_id = 40, last_updated_at = '2026-05-02'")  # Glific's sync ran
    watermarks.create(glific_db, org.id, "messages", GLIFIC)  # where the next sync starts

    after = watermarks.get(glific_db, org.id, "messages", GLIFIC)
    assert (after.table_id, after.cursor) == (40, (datetime(2026, 5, 2), 0))
    glific_db.execute("UPDATE bigquery_jobs SET table_id = 0")  # a row Glific re-created: never moves ours back
    watermarks.create(glific_db, org.id, "messages", GLIFIC)
    assert watermarks.get(glific_db, org.id, "messages", GLIFIC).table_id == 40


def test_where_a_sync_starts_is_the_row_create_leaves_in_one_statement(glific_db):
    """``ensure`` (where a sync starts) returns exactly the row ``create`` then ``get`` give: a new
    one taken over from Glific's ``bigquery_jobs``, an existing one untouched, one moved up to
    where Glific's sync ran past it, and a new one of another destination."""
    org = add_organization(glific_db)
    glific_db.execute('INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at) VALUES '
                      "('messages', 10, %s, '2026-01-01')", (org.id,))
    watermarks.ensure_table(glific_db)

    def started(destination=GLIFIC):
        watermark = watermarks.ensure(glific_db, org.id, "messages", destination)
        assert watermark == watermarks.get(glific_db, org.id, "messages", destination)
        return watermark.table_id, watermark.cursor

    taken_over = started()
    watermarks.advance(glific_db, org.id, "messages", GLIFIC, table_id=25, cursor=(datetime(2026, 5, 1), 7))
    untouched = started()
    glific_db.execute("UPDATE bigquery_jobs SET table_id = 40, last_updated_at = '2026-05-02'")  # Glific's sync ran
    moved = started()

    assert taken_over == (10, (datetime(2026, 1, 1), 0))
    assert untouched == (25, (datetime(2026, 5, 1), 7))
    assert moved == (40, (datetime(2026, 5, 2), 0))
    assert started(RAW) == (0, (watermarks.BEGINNING, 0))


def test_state_in_an_old_bigquery_jobs_moves_to_glific_bq_watermarks(glific_db):
    glific_db.execute(LEGACY_COLUMNS)
    org = add_organization(glific_db)
    glific_db.execute(
        'INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at, last_updated_id, failures, '
        "last_error, loads, loads_on) VALUES ('messages', 500, %s, '2026-01-02', 42, 3, 'boom', 2, current_date)",
        (org.id,))

    watermarks.ensure_table(glific_db)

    columns, indexes = _shape(glific_db, "bigquery_jobs")
    assert [c[0] for c in columns] == ["id", "table", "table_id", "organization_id", "last_updated_at",
                                       "inserted_at", "updated_at"]
    assert dict((c[0], c[1]) for c in columns)["table_id"] == "integer"
    assert [i[0] for i in indexes] == ["bigquery_jobs_organization_id_table_index", "bigquery_jobs_pkey"]
    watermarks.create(glific_db, org.id, "messages", GLIFIC)  # the first destination claims the state
    moved = watermarks.get(glific_db, org.id, "messages", GLIFIC)
    assert (moved.table_id, moved.cursor, moved.failures, moved.last_error) == (
        500, (datetime(2026, 1, 2), 42), 3, "boom")
    assert watermarks.loads_today(glific_db, org.id, "messages", GLIFIC) == 2
    assert watermarks.get(glific_db, org.id, "messages") == moved  # claimed, not copied


def test_a_new_watermark_starts_before_every_row(db):
    org = add_organization(db)
    fresh = watermarks.get(db, org.id, "messages", GLIFIC)
    assert (fresh.table_id, fresh.cursor, fresh.failures) == (0, (watermarks.BEGINNING, 0), 0)


def test_reading_a_watermark_never_writes(db):
    org = add_organization(db)

    fresh = watermarks.get(db, org.id, "messages", GLIFIC)

    assert (fresh.table_id, fresh.cursor) == (0, (watermarks.BEGINNING, 0))
    assert db.execute("SELECT count(*) FROM glific_bq_watermarks").fetchone()[0] == 0


def test_a_watermark_is_created_once_at_the_beginning(db):
    org = add_organization(db)
    watermarks.create(db, org.id, "messages", RAW)
    watermarks.advance(db, org.id, "messages", RAW, table_id=5)

    watermarks.create(db, org.id, "messages", RAW)

    assert db.execute("SELECT count(*) FROM glific_bq_watermarks").fetchone()[0] == 1
    assert watermarks.get(db, org.id, "messages", RAW).table_id == 5


def test_watermarks_only_move_forward(db):
    org = add_organization(db)
    watermarks.create(db, org.id, "messages", RAW)
    watermarks.advance(db, org.id, "messages", RAW, table_id=100, cursor=(datetime(2026, 5, 1), 7))

    after = watermarks.advance(db, org.id, "messages", RAW, table_id=50, cursor=(datetime(2026, 5, 1), 3))

    assert (after.table_id, after.cursor) == (100, (datetime(2026, 5, 1), 7))
    later = watermarks.advance(db, org.id, "messages", RAW, cursor=(datetime(2026, 5, 1), 9))
    assert (later.table_id, later.cursor) == (100, (datetime(2026, 5, 1), 9))


def test_each_destination_has_its_own_watermark(db):
    org = add_organization(db)
    for destination in (GLIFIC, RAW):
        watermarks.create(db, org.id, "messages", destination)
    watermarks.advance(db, org.id, "messages", RAW, table_id=100)

    assert watermarks.get(db, org.id, "messages", GLIFIC).table_id == 0
    with pytest.raises(LookupError, match="2 destinations"):
        watermarks.get(db, org.id, "messages")


def test_failures_are_counted_and_cleared_by_a_success(db):
    org = add_organization(db)
    watermarks.record_failure(db, org.id, "messages", RAW, "boom")
    watermarks.record_failure(db, org.id, "messages", RAW, "boom again")
    failing = watermarks.get(db, org.id, "messages", RAW)
    assert (failing.failures, failing.last_error) == (2, "boom again")

    watermarks.record_success(db, org.id, "messages", RAW)
    assert watermarks.get(db, org.id, "messages", RAW).failures == 0


def test_the_sync_lock_is_exclusive_per_tenant_table(db, database_url):
    org = add_organization(db)
    with psycopg.connect(database_url, autocommit=True) as other:
        with watermarks.exclusive(db, org.id, "messages") as first:
            with watermarks.exclusive(other, org.id, "messages") as second, \
                    watermarks.exclusive(other, org.id, "contacts") as third:
                assert (first, second, third) == (True, False, True)
        with watermarks.exclusive(other, org.id, "messages") as after_release:
            assert after_release
