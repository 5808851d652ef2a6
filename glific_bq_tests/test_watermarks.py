"""The watermark table: created or adopted from Glific, one row per (organization, table),
moving only forward."""

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


def test_glifics_table_is_adopted_with_its_watermarks_and_duplicates_merged_conservatively(glific_db):
    org = add_organization(glific_db)
    glific_db.execute(
        'INSERT INTO bigquery_jobs ("table", table_id, organization_id, last_updated_at) VALUES '
        "('messages', 500, %(o)s, '2026-01-02'), ('messages', 300, %(o)s, '2026-01-03'), "
        "('contacts', 40, %(o)s, '2026-01-01')",
        {"o": org.id},
    )

    watermarks.ensure_table(glific_db)
    watermarks.ensure_table(glific_db)  # idempotent

    messages = watermarks.get(glific_db, org.id, "messages")
    assert (messages.table_id, messages.last_updated_at) == (300, datetime(2026, 1, 2))
    assert watermarks.get(glific_db, org.id, "contacts").table_id == 40
    assert glific_db.execute("SELECT count(*) FROM bigquery_jobs").fetchone()[0] == 2
    with pytest.raises(psycopg.errors.UniqueViolation):
        glific_db.execute('INSERT INTO bigquery_jobs ("table", table_id, organization_id) VALUES (\'contacts\', 1, %s)', (org.id,))


def test_a_new_watermark_starts_before_every_row(db):
    org = add_organization(db)
    fresh = watermarks.get(db, org.id, "messages")
    assert (fresh.table_id, fresh.cursor, fresh.failures) == (0, (watermarks.BEGINNING, 0), 0)


def test_reading_a_watermark_never_writes(db):
    org = add_organization(db)

    fresh = watermarks.get(db, org.id, "messages")

    assert (fresh.table_id, fresh.cursor) == (0, (watermarks.BEGINNING, 0))
    assert db.execute("SELECT count(*) FROM bigquery_jobs").fetchone()[0] == 0


def test_a_watermark_is_created_once_at_the_beginning(db):
    org = add_organization(db)
    watermarks.create(db, org.id, "messages")
    watermarks.advance(db, org.id, "messages", table_id=5)

    watermarks.create(db, org.id, "messages")

    assert db.execute("SELECT count(*) FROM bigquery_jobs").fetchone()[0] == 1
    assert watermarks.get(db, org.id, "messages").table_id == 5


def test_watermarks_only_move_forward(db):
    org = add_organization(db)
    watermarks.create(db, org.id, "messages")
    watermarks.advance(db, org.id, "messages", table_id=100, cursor=(datetime(2026, 5, 1), 7))

    after = watermarks.advance(db, org.id, "messages", table_id=50, cursor=(datetime(2026, 5, 1), 3))

    assert (after.table_id, after.cursor) == (100, (datetime(2026, 5, 1), 7))
    later = watermarks.advance(db, org.id, "messages", cursor=(datetime(2026, 5, 1), 9))
    assert (later.table_id, later.cursor) == (100, (datetime(2026, 5, 1), 9))


def test_failures_are_counted_and_cleared_by_a_success(db):
    org = add_organization(db)
    watermarks.record_failure(db, org.id, "messages", "boom")
    watermarks.record_failure(db, org.id, "messages", "boom again")
    failing = watermarks.get(db, org.id, "messages")
    assert (failing.failures, failing.last_error) == (2, "boom again")

    watermarks.record_success(db, org.id, "messages")
    assert watermarks.get(db, org.id, "messages").failures == 0


def test_the_sync_lock_is_exclusive_per_tenant_table(db, database_url):
    org = add_organization(db)
    with psycopg.connect(database_url, autocommit=True) as other:
        with watermarks.exclusive(db, org.id, "messages") as first:
            with watermarks.exclusive(other, org.id, "messages") as second, \
                    watermarks.exclusive(other, org.id, "contacts") as third:
                assert (first, second, third) == (True, False, True)
        with watermarks.exclusive(other, org.id, "messages") as after_release:
            assert after_release
