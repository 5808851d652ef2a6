"""A tenant's failure is always recorded (for backoff and alerts) and redacted, even when the
failure broke the connection it would be recorded with; the tick never aborts because of it."""

from __future__ import annotations

import psycopg

from glific_bq import tick, watermarks
from glific_bq.registry import TableSpec
from glific_bq.source import Source
from glific_bq.sync import record_failure, sync_tenant
from glific_bq.tick import TickOptions
from glific_bq.warehouse import Warehouse

from .helpers import add_notes, add_organization, destination_of, warehouse_rows

NOTES = TableSpec("notes")


def _kill(conn: psycopg.Connection, database_url: str) -> None:
    """Terminate ``conn``'s backend from another session, as a failover or a DBA would."""
    pid = conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_failure_that_broke_the_control_connection_is_still_recorded(notes, database_url, warehouse_config):
    org = add_organization(notes)
    destination = destination_of(warehouse_config, org)
    with Source(database_url) as source:
        _kill(source.control, database_url)

        result = record_failure(source, org.id, NOTES, destination, "BrokenPipe: the server closed the connection")

    assert result.status == "failed"
    assert watermarks.get(notes, org.id, "notes", destination).failures == 1


def test_a_tenant_after_a_broken_connection_syncs_and_the_loop_goes_on(notes, database_url, warehouse_for):
    second = add_organization(notes)
    ids = add_notes(notes, second, ["after the break"])
    with Source(database_url) as source:
        _kill(source.control, database_url)  # left broken by the tenant before, say
        (result,) = sync_tenant(source, warehouse_for, second.id, [NOTES])
    assert result.status == "synced"
    assert [r["id"] for r in warehouse_rows(warehouse_for(second), "notes")] == ids


def test_no_database_to_record_with_is_logged_not_raised(notes, warehouse_config, caplog):
    org = add_organization(notes)
    source = Source.__new__(Source)  # a source whose database has gone away entirely
    source.url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    source.control = psycopg.connect(notes.info.dsn, autocommit=True)
    source.control.close()

    result = record_failure(source, org.id, NOTES, destination_of(warehouse_config, org), "boom")

    assert result.status == "failed" and "could not be recorded" in caplog.text


def test_a_tenant_without_a_connection_fails_alone_recorded_and_redacted(notes, database_url, warehouse_config,
                                                                         monkeypatch):
    """The tick's own failure path (no source connection for a tenant): its error is redacted,
    recorded under the tenant's destination (backoff, alerts), and the other tenants sync."""
    from contextlib import contextmanager

    from glific_bq.roster import select_tenants

    good, bad = add_organization(notes), add_organization(notes)
    for org in (good, bad):
        add_notes(notes, org, ["x"])
    real = tick.SourcePool.source

    @contextmanager
    def flaky(pool):
        if flaky.calls == 0:
            flaky.calls += 1
            raise psycopg.OperationalError("connection failed: FATAL password=hunter2-secret too many clients")
        with real(pool) as source:
            yield source

    flaky.calls = 0
    monkeypatch.setattr(tick.SourcePool, "source", flaky)
    roster = select_tenants(notes, warehouse_config)
    work = {good.id: [NOTES], bad.id: [NOTES]}

    results = tick.sync_tenants(database_url, lambda o: Warehouse(warehouse_config, o), work, TickOptions(workers=2),
                                roster=roster)

    by_status = {r.status: r for r in results}
    assert set(by_status) == {"synced", "failed"}
    failed = by_status["failed"]
    assert "hunter2" not in failed.message and "too many clients" in failed.message
    stored = watermarks.get(notes, failed.organization_id, "notes", roster.tenant(failed.organization_id).destination)
    assert stored.failures == 1 and "hunter2" not in stored.last_error
