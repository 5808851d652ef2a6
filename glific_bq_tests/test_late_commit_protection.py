"""Late commits: a row committed after a later one was sent is still sent, in insert-only tables
too (their ``inserted_at`` cursor). The protection needs to see other roles' open transactions
(``pg_read_all_stats``): without it only the clock margin protects, and the sync says so loudly
instead of silently losing rows."""

from __future__ import annotations

import uuid

import dagster as dg
import psycopg

from glific_bq import horizon
from glific_bq.catalog import SyncMode
from glific_bq.defs.alerting import stalled_watermarks
from glific_bq.defs.resources import GlificPostgres
from glific_bq.registry import TableSpec
from glific_bq.source import Source
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.warehouse import Warehouse

from .helpers import add_organization, bigquery_resource


def _limited_role(db, database_url) -> tuple[str, str]:
    """A login role like the one an operator creates for glific_bq, without pg_read_all_stats."""
    role = f"glific_bq_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    db.execute(f"GRANT USAGE ON SCHEMA global TO {role}")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA global TO {role}")
    return role, psycopg.conninfo.make_conninfo(database_url, user=role)


def test_a_role_without_pg_read_all_stats_is_told_what_to_grant(db, database_url):
    role, url = _limited_role(db, database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        warning = horizon.late_commit_warning(conn)
    assert warning and "late-commit protection is OFF" in warning and f"GRANT pg_read_all_stats TO {role}" in warning

    db.execute(f"GRANT pg_read_all_stats TO {role}")
    with psycopg.connect(url, autocommit=True) as conn:
        assert horizon.late_commit_warning(conn) is None
    assert horizon.late_commit_warning(db) is None  # the tests' superuser sees everything


def test_the_stalled_watermark_sensor_says_protection_is_off(db, database_url, warehouse_config):
    role, url = _limited_role(db, database_url)
    resources = {"postgres": GlificPostgres(database_url=url), "bigquery": bigquery_resource(warehouse_config)}
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = stalled_watermarks(context)
    assert isinstance(result, dg.SkipReason) and "late-commit protection OFF" in result.skip_message


# -- late commits, end to end ---------------------------------------------------------------------------

#: An insert-only table of our own whose ``inserted_at`` is stamped by the database in microseconds
#: (``now()``: the writing transaction's start), so that the protection can be tested with no
#: margin and without waiting for a clock: a row committed late is the only thing that can pass.
EVENTS_DDL = """
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES organizations (id),
    body text,
    inserted_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
)
"""
EVENTS = TableSpec("events", SyncMode.INSERT_ONLY)


def _sent_ids(warehouse: Warehouse) -> list[int]:
    return [r["id"] for r in warehouse.query(f"SELECT id FROM `{warehouse.dataset_ref}.events` ORDER BY id")]


def _late_commit(db, database_url, url: str, warehouse_config, options: SyncOptions,
                 later: SyncOptions | None = None) -> tuple[list[int], list[int]]:
    """A row of ``events`` written by a transaction (of the tests' superuser, as Glific's own role)
    that stays open while a later row commits and a sync (connected as ``url``, with ``options``)
    sends it; then the transaction commits and the next sync runs (with ``later``, default
    ``options``). The ids BigQuery holds, and the source's."""
    org = add_organization(db)
    with psycopg.connect(database_url) as slow, Source(url) as source, Warehouse(warehouse_config, org) as warehouse:
        slow.execute("INSERT INTO events (organization_id, body) VALUES (%s, 'committed late')", (org.id,))
        db.execute("INSERT INTO events (organization_id, body) VALUES (%s, 'committed first')", (org.id,))
        first = sync_table(source, warehouse, org, EVENTS, options)
        slow.commit()
        second = sync_table(source, warehouse, org, EVENTS, later or options)
        assert (first.inserted, first.caught_up, second.caught_up) == (1, True, True)
        sent = _sent_ids(warehouse)
    return sent, [i for (i,) in db.execute("SELECT id FROM events ORDER BY id")]


def test_a_late_commit_in_an_insert_only_table_is_sent(db, database_url, warehouse_config):
    """The late row's id is below the id watermark once the later row is sent: only the
    ``inserted_at`` cursor can find it, and only because the horizon waited for its transaction
    (no clock margin here: ``horizon_seconds=0``)."""
    db.execute(EVENTS_DDL)
    sent, source_ids = _late_commit(db, database_url, database_url, warehouse_config, SyncOptions(horizon_seconds=0))
    assert sorted(set(sent)) == source_ids and len(source_ids) == 2  # rows sent while it was held back come again: dedup keeps one


def test_without_pg_read_all_stats_the_horizon_cannot_wait_for_other_roles_transactions(db, database_url):
    """What ``horizon`` does when the role cannot see other sessions' transactions: it goes to the
    clock minus the margin, past a writing transaction it cannot see (hence the warning)."""
    _, url = _limited_role(db, database_url)
    db.execute(EVENTS_DDL)
    org = add_organization(db)
    with psycopg.connect(database_url) as slow, Source(database_url) as superuser, Source(url) as limited:
        (started,) = slow.execute("INSERT INTO events (organization_id) VALUES (%s) "
                                  "RETURNING inserted_at", (org.id,)).fetchone()
        (clock,) = db.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'").fetchone()
        assert horizon.horizon(superuser.reader, 0) <= started  # the superuser sees the writer, and waits for it
        assert horizon.horizon(limited.reader, 0) > clock  # the limited role does not
        slow.rollback()


def test_without_pg_read_all_stats_the_margin_still_catches_a_commit_within_it(db, database_url, warehouse_config):
    """Connected as a role with the grants of docs/deploy.md but not ``pg_read_all_stats``, a
    transaction that commits within the margin (five minutes for the first sync, so that no
    machine is too slow for the test) still reaches BigQuery: the clock margin is then the only
    protection. The next sync stands for one after the margin has passed (``horizon_seconds=0``)."""
    db.execute(EVENTS_DDL)
    _, url = _limited_role(db, database_url)
    sent, source_ids = _late_commit(db, database_url, url, warehouse_config, SyncOptions(horizon_seconds=300),
                                    later=SyncOptions(horizon_seconds=0))
    assert sorted(set(sent)) == source_ids and len(source_ids) == 2  # rows sent while it was held back come again: dedup keeps one
