"""The Glific-like schema, its sample data and the traffic simulator, on a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from glific_bq.local import sample_data, traffic

NOW = datetime(2025, 3, 1, 12, 0, 0)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def _pg_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded PostgreSQL server for this module."""
    import pgserver

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    srv = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield srv.get_uri()
    srv.cleanup()


@pytest.fixture(scope="module")
def new_database(_pg_uri: str) -> Callable[[], str]:
    """Create an empty database on the module's server and return its conninfo."""

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_pg_uri, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return psycopg.conninfo.make_conninfo(_pg_uri, dbname=name)

    return create


@pytest.fixture(scope="module")
def seeded(new_database: Callable[[], str]) -> tuple[str, dict[str, int]]:
    """A database with the schema and the default sample data; tests must not modify it."""
    conninfo = new_database()
    with psycopg.connect(conninfo) as conn:
        sample_data.create_schema(conn)
        counts = sample_data.seed(conn, now=NOW)
    return conninfo, counts


@pytest.fixture
def seeded_conn(seeded: tuple[str, dict[str, int]]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(seeded[0]) as conn:
        yield conn


@pytest.fixture(scope="module")
def small_seeded(new_database: Callable[[], str]) -> str:
    """A small seeded database for tests that write (the traffic simulator)."""
    conninfo = new_database()
    with psycopg.connect(conninfo) as conn:
        sample_data.create_schema(conn)
        sample_data.seed(conn, messages_per_org=200, contacts_per_org=30)
    return conninfo


def _catalog(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        """
        SELECT 'column', table_name, column_name || ' ' || data_type || ' ' || is_nullable
        FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL SELECT 'index', tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL SELECT 'constraint', conrelid::regclass::text, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL SELECT 'enum', t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        ORDER BY 1, 2, 3
        """
    ).fetchall()


def _column_type(conn: psycopg.Connection, table: str, column: str) -> str:
    return conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = %s",
        (table, column),
    ).fetchone()[0]


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


def test_create_schema_is_idempotent(new_database: Callable[[], str]) -> None:
    with psycopg.connect(new_database()) as conn:
        sample_data.create_schema(conn)
        first = _catalog(conn)
        sample_data.create_schema(conn)
        assert _catalog(conn) == first
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == set(sample_data.TABLES)
    assert "bigquery_jobs" not in tables


def test_every_tenant_table_has_a_cascading_not_null_organization_id(seeded_conn: psycopg.Connection) -> None:
    for table in sample_data.TENANT_TABLES:
        nullable, data_type = seeded_conn.execute(
            "SELECT is_nullable, data_type FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = 'organization_id'",
            (table,),
        ).fetchone()
        assert (nullable, data_type) == ("NO", "bigint"), table
        on_delete = seeded_conn.execute(
            "SELECT confdeltype FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f' "
            "AND confrelid = 'organizations'::regclass",
            (table,),
        ).fetchone()[0]
        assert on_delete == "c", table


def test_every_tenant_table_is_indexed_for_id_and_updated_at_scans(seeded_conn: psycopg.Connection) -> None:
    for table in sample_data.TENANT_TABLES:
        definitions = [
            row[0] for row in seeded_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
        ]
        assert any(d.endswith("(organization_id, id)") for d in definitions), table
        assert any(d.endswith("(organization_id, updated_at, id)") for d in definitions), table


def test_schema_has_the_column_types_glific_has(seeded_conn: psycopg.Connection) -> None:
    expected = {
        ("messages", "type"): "message_type_enum",
        ("messages", "status"): "message_status_enum",
        ("messages", "uuid"): "uuid",
        ("messages", "errors"): "jsonb",
        ("messages", "inserted_at"): "timestamp(0) without time zone",
        ("contacts", "updated_at"): "timestamp without time zone",
        ("contacts", "group_ids"): "integer[]",
        ("flows", "keywords"): "text[]",
        ("flow_counts", "recent_messages"): "jsonb[]",
        ("flow_results", "results"): "jsonb",
    }
    actual = {key: _column_type(seeded_conn, *key) for key in expected}
    assert actual == expected


# ---------------------------------------------------------------------------------------------
# Seed
# ---------------------------------------------------------------------------------------------


def test_seed_returns_the_row_counts_it_inserted(
    seeded: tuple[str, dict[str, int]], seeded_conn: psycopg.Connection
) -> None:
    counts = seeded[1]
    assert counts["organizations"] == 3
    assert counts["contacts"] == 3 * 300
    assert counts["messages"] == 3 * 3000
    assert counts["flow_results"] == counts["flow_contexts"] == 3 * 300
    assert all(counts[table] > 0 for table in sample_data.TABLES)
    for table, count in counts.items():
        actual = seeded_conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        assert actual == count, table
    per_org = seeded_conn.execute("SELECT count(*) FROM messages GROUP BY organization_id").fetchall()
    assert sorted(per_org) == [(3000,)] * 3


def test_seed_interleaves_ids_across_organizations(seeded_conn: psycopg.Connection) -> None:
    for table in sample_data.TENANT_TABLES:
        owners = [row[0] for row in seeded_conn.execute(
            sql.SQL("SELECT organization_id FROM {} ORDER BY id LIMIT 9").format(sql.Identifier(table))
        )]
        assert owners == [1, 2, 3] * 3, table


def test_seed_gives_each_organization_its_own_timezone_and_whatsapp_contact(seeded_conn: psycopg.Connection) -> None:
    rows = seeded_conn.execute(
        "SELECT o.timezone, c.organization_id = o.id FROM organizations o "
        "JOIN contacts c ON c.id = o.contact_id ORDER BY o.id"
    ).fetchall()
    assert rows == [("Asia/Kolkata", True), ("Africa/Nairobi", True), ("America/Sao_Paulo", True)]


def test_seed_references_stay_within_one_organization(seeded_conn: psycopg.Connection) -> None:
    leaks = seeded_conn.execute(
        """
        SELECT
          (SELECT count(*) FROM messages m JOIN contacts c ON c.id IN (m.contact_id, m.sender_id, m.receiver_id)
            WHERE c.organization_id <> m.organization_id)
        + (SELECT count(*) FROM messages m JOIN messages_media mm ON mm.id = m.media_id
            WHERE mm.organization_id <> m.organization_id)
        + (SELECT count(*) FROM flow_results r JOIN flows f ON f.id = r.flow_id
            WHERE f.organization_id <> r.organization_id)
        + (SELECT count(*) FROM flow_results r JOIN contacts c ON c.id = r.contact_id
            WHERE c.organization_id <> r.organization_id)
        + (SELECT count(*) FROM flow_results r JOIN flow_contexts x ON x.id = r.flow_context_id
            WHERE x.organization_id <> r.organization_id OR x.results <> r.results)
        + (SELECT count(*) FROM contact_histories h JOIN contacts c ON c.id = h.contact_id
            WHERE c.organization_id <> h.organization_id)
        """
    ).fetchone()[0]
    assert leaks == 0


def test_seed_shares_one_phone_number_across_organizations(seeded_conn: psycopg.Connection) -> None:
    shared = seeded_conn.execute(
        "SELECT count(*) FROM (SELECT phone FROM contacts GROUP BY phone HAVING count(*) = 3) s"
    ).fetchone()[0]
    assert shared >= 1


def test_seed_content_has_unicode_quotes_backslashes_nulls_and_long_bodies(seeded_conn: psycopg.Connection) -> None:
    def count(where: str) -> int:
        return seeded_conn.execute(f"SELECT count(*) FROM messages WHERE {where}").fetchone()[0]

    assert count("body ~ '[\u0900-\u097F]'") > 0  # Devanagari
    assert count("body LIKE '%Habari%'") > 0
    assert count("body LIKE '%ção%' OR body LIKE '%Olá%'") > 0
    assert count("body LIKE '%😀%'") > 0 and count("body LIKE '%🙏%'") > 0
    assert count("strpos(body, '\"') > 0") > 0
    assert count("strpos(body, '\\') > 0") > 0
    assert count("strpos(body, E'\\n') > 0") > 0
    assert count("body IS NULL") > 0 and count("body = ''") > 0
    assert count("length(body) BETWEEN 4500 AND 5500") >= 3
    assert count("interactive_content ? 'options'") > 0
    assert seeded_conn.execute("SELECT count(*) FROM contacts WHERE name IS NULL").fetchone()[0] > 0
    assert seeded_conn.execute("SELECT count(*) FROM contacts WHERE group_ids IS NULL").fetchone()[0] > 0
    nested = seeded_conn.execute(
        "SELECT count(*) FROM flow_results WHERE results -> 'age' ->> 'input' IS NOT NULL"
    ).fetchone()[0]
    assert nested > 0


def test_seed_timestamps_are_naive_utc_in_the_last_30_days(seeded_conn: psycopg.Connection) -> None:
    for table in sample_data.TABLES:
        low, high, backwards = seeded_conn.execute(
            sql.SQL(
                "SELECT min(inserted_at), max(updated_at), "
                "count(*) FILTER (WHERE updated_at < inserted_at) FROM {}"
            ).format(sql.Identifier(table))
        ).fetchone()
        assert low.tzinfo is None and high.tzinfo is None, table
        assert NOW - timedelta(days=32) <= low and high <= NOW, table
        assert backwards == 0, table


def test_seed_includes_updated_at_ties_and_late_commits(seeded_conn: psycopg.Connection) -> None:
    largest_tie = seeded_conn.execute(
        "SELECT count(*) FROM contacts GROUP BY organization_id, updated_at ORDER BY 1 DESC LIMIT 1"
    ).fetchone()[0]
    assert largest_tie >= 50
    late = seeded_conn.execute(
        "SELECT count(*) FROM (SELECT inserted_at < max(inserted_at) OVER (PARTITION BY organization_id ORDER BY id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - interval '30 minutes' AS late FROM messages) s WHERE late"
    ).fetchone()[0]
    assert late > 0


def test_seed_is_deterministic_for_a_seed_and_time(new_database: Callable[[], str]) -> None:
    snapshots = []
    for _ in range(2):
        with psycopg.connect(new_database()) as conn:
            sample_data.create_schema(conn)
            sample_data.seed(conn, organizations=2, messages_per_org=50, contacts_per_org=10, seed=7, now=NOW)
            snapshots.append(conn.execute(
                "SELECT id, organization_id, uuid, body, contact_id, inserted_at, updated_at FROM messages ORDER BY id"
            ).fetchall())
    assert snapshots[0] == snapshots[1]


def test_seed_does_nothing_when_organizations_exist(
    seeded: tuple[str, dict[str, int]], seeded_conn: psycopg.Connection
) -> None:
    assert sample_data.seed(seeded_conn, organizations=5) == seeded[1]


# ---------------------------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------------------------


def _high_water_marks(conninfo: str) -> dict[str, tuple[int, datetime]]:
    with psycopg.connect(conninfo) as conn:
        return {
            table: conn.execute(
                sql.SQL("SELECT max(id), max(updated_at) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            for table in ("messages", "contacts")
        }


def _start_traffic(conninfo: str, stop: threading.Event, seed: int) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(traffic.run(conninfo, stop=stop, rate_per_second=100, seed=seed))
    )
    thread.start()
    return thread, result


def test_traffic_inserts_and_updates_rows_until_stopped(small_seeded: str) -> None:
    before = _high_water_marks(small_seeded)
    stop = threading.Event()
    thread, steps = _start_traffic(small_seeded, stop, seed=1)
    time.sleep(2)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert steps["inbound_message"] > 0 and steps["advance_statuses"] > 0

    with psycopg.connect(small_seeded) as conn:
        new_messages, moved_messages = conn.execute(
            "SELECT count(*) FILTER (WHERE id > %s), "
            "count(*) FILTER (WHERE id <= %s AND updated_at > %s) FROM messages",
            (before["messages"][0], before["messages"][0], before["messages"][1]),
        ).fetchone()
        moved_contacts = conn.execute(
            "SELECT count(*) FROM contacts WHERE id <= %s AND updated_at > %s", before["contacts"]
        ).fetchone()[0]
        advanced = conn.execute(
            "SELECT count(*) FROM messages WHERE id > %s AND flow = 'outbound' AND status <> 'enqueued'",
            (before["messages"][0],),
        ).fetchone()[0]
    assert new_messages > 0
    assert moved_messages > 0
    assert moved_contacts > 0
    assert advanced > 0


def test_traffic_reconnects_after_its_connection_is_killed(small_seeded: str) -> None:
    stop = threading.Event()
    thread, _ = _start_traffic(small_seeded, stop, seed=2)
    try:
        time.sleep(0.5)
        with psycopg.connect(small_seeded, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s) s",
                (traffic.APPLICATION_NAME,),
            ).fetchone()[0]
        assert killed == 1
        after_kill = _high_water_marks(small_seeded)["messages"][0]
        time.sleep(2)
        assert _high_water_marks(small_seeded)["messages"][0] > after_kill
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_traffic_command_stops_cleanly_on_sigterm(small_seeded: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "glific_bq.local.traffic", "--database-url", small_seeded, "--rate", "20"],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "traffic stopped" in stderr
