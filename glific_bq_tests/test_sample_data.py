"""Glific's schema and triggers, the sample data and the traffic simulator, on a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from glific_bq import watermarks
from glific_bq.local import glific_writes as gw
from glific_bq.local import sample_data, traffic
from glific_bq_tests.helpers import add_organization

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
    assert tables == {*sample_data.TABLES, "bigquery_jobs", "credentials", "notifications", "saas", "trial_users"}


def test_every_tenant_table_has_a_cascading_not_null_organization_id(seeded_conn: psycopg.Connection) -> None:
    for table in set(sample_data.TENANT_TABLES) - {"interactive_templates"}:  # nullable in Glific
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
        if table not in ("messages_tags", "contacts_tags"):  # no timestamps in Glific
            assert any(d.endswith("(organization_id, updated_at, id)") for d in definitions), table


def test_schema_has_the_column_types_glific_has(seeded_conn: psycopg.Connection) -> None:
    expected = {
        ("messages", "type"): "message_type_enum",
        ("messages", "status"): "message_status_enum",
        ("messages", "uuid"): "uuid",
        ("messages", "errors"): "jsonb",
        ("messages", "inserted_at"): "timestamp without time zone",
        ("messages_media", "inserted_at"): "timestamp(0) without time zone",
        ("contacts", "updated_at"): "timestamp without time zone",
        ("organizations", "active_language_ids"): "integer[]",
        ("organizations", "signature_phrase"): "bytea",
        ("organizations", "status"): "organization_status_enum",
        ("users", "roles"): "user_roles_enum[]",
        ("flows", "keywords"): "character varying(255)[]",
        ("flows", "flow_type"): "flow_type_enum",
        ("tags", "ancestors"): "bigint[]",
        ("flow_counts", "recent_messages"): "jsonb[]",
        ("flow_results", "results"): "jsonb",
        ("bigquery_jobs", "table_id"): "integer",
        ("bigquery_jobs", "last_updated_at"): "timestamp without time zone",
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
    assert counts["flow_results"] == counts["flow_contexts"] == 3 * 297  # one run per end user
    assert all(counts[table] > 0 for table in sample_data.TABLES), counts
    for table, count in counts.items():
        actual = seeded_conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        assert actual == count, table
    per_org = seeded_conn.execute("SELECT count(*) FROM messages GROUP BY organization_id").fetchall()
    assert sorted(per_org) == [(3000,)] * 3


def test_seed_interleaves_ids_across_organizations(seeded_conn: psycopg.Connection) -> None:
    for table in ("messages", "messages_media", "flow_contexts", "flow_results", "flow_counts", "profiles",
                  "tickets", "contact_histories", "stats"):
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
    assert seeded_conn.execute("SELECT count(*) FROM contacts_groups").fetchone()[0] > 0
    nested = seeded_conn.execute(
        "SELECT count(*) FROM flow_results WHERE results -> 'age' ->> 'input' IS NOT NULL"
    ).fetchone()[0]
    assert nested > 0


def test_seed_timestamps_are_naive_utc_in_the_last_30_days(seeded_conn: psycopg.Connection) -> None:
    for table in set(sample_data.TABLES) - {"messages_tags", "contacts_tags"}:  # no timestamps in Glific
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


def test_seed_triggers_ran_at_the_seeds_own_times(seeded_conn: psycopg.Connection) -> None:
    """Message numbers, sessions and contacts' last messages come from Glific's triggers, at the
    times the seed wrote, not at the time it ran."""
    numbers_ok, sessions, last_at = seeded_conn.execute(
        "SELECT bool_and(c.last_message_number = (SELECT count(*) FROM messages m WHERE m.contact_id = c.id)), "
        "(SELECT count(*) FROM messages WHERE flow = 'inbound' AND session_uuid IS NULL), max(c.last_message_at) "
        "FROM contacts c"
    ).fetchone()
    assert numbers_ok and sessions == 0
    assert NOW - timedelta(days=1) < last_at <= NOW


# ---------------------------------------------------------------------------------------------
# Glific's triggers (on the conftest's ``db``: Glific's schema and bigquery_jobs)
# ---------------------------------------------------------------------------------------------


def _tenant(db: psycopg.Connection) -> tuple[int, int, int]:
    """(organization, its bot contact, a contact)."""
    organization = add_organization(db, "Asia/Kolkata")
    (bot,) = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (organization.id,)).fetchone()
    return organization.id, bot, gw.contact(db, organization.id, "919811111111", name="Asha")


def _row(db: psycopg.Connection, table: str, row_id: int, columns: str) -> tuple:
    return db.execute(sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.SQL(columns), sql.Identifier(table)),
                      (row_id,)).fetchone()


def test_tagging_a_message_moves_its_updated_at(db: psycopg.Connection) -> None:
    org, bot, contact = _tenant(db)
    message = gw.message(db, org, contact, bot, inbound=True, body="hi", at=datetime(2025, 1, 1, 10, 0))
    tag = gw.insert_one(db, "tags", organization_id=org, label="Important", shortcode="important", language_id=gw.language(db))
    gw.tag_message(db, org, message, tag)
    tagged = _row(db, "messages", message, "updated_at")[0]
    assert tagged > datetime(2025, 1, 2)
    gw.untag_message(db, message, tag, at=datetime(2030, 1, 1))
    assert _row(db, "messages", message, "updated_at")[0] == datetime(2030, 1, 1)


def test_inbound_message_gets_a_session_and_a_number_without_moving_its_updated_at(db: psycopg.Connection) -> None:
    org, bot, contact = _tenant(db)
    at = datetime(2025, 1, 1, 10, 0, 0, 123456)
    first = gw.message(db, org, contact, bot, inbound=True, body="hi", at=at)
    second = gw.message(db, org, contact, bot, inbound=True, body="again", at=at + timedelta(minutes=5))
    reply = gw.message(db, org, contact, bot, inbound=False, body="hello", at=at + timedelta(minutes=6))
    rows = [_row(db, "messages", m, "session_uuid, message_number, updated_at") for m in (first, second, reply)]
    assert rows[0][0] is not None and rows[1][0] == rows[0][0] and rows[2][0] is None  # one session, inbound only
    assert [r[1] for r in rows] == [1, 2, 3]
    assert rows[0][2] == at  # the trigger's UPDATE left the application's stamp alone
    assert _row(db, "organizations", org, "last_communication_at")[0] == datetime(2025, 1, 1, 10, 6)


def test_message_moves_its_contacts_last_message_at_and_updated_at(db: psycopg.Connection) -> None:
    """Glific's trigger (structure.sql, message_before_insert_callback) sets the contact's
    last_message_at/last_communication_at and also its updated_at, to the database clock."""
    org, bot, contact = _tenant(db)
    gw.update(db, "contacts", contact, at=datetime(2025, 1, 1), name="Asha K")
    gw.message(db, org, contact, bot, inbound=True, body="hi", at=datetime(2025, 1, 2, 9, 30))
    assert _row(db, "contacts", contact, "last_message_at, last_communication_at, updated_at, is_org_read") == (
        datetime(2025, 1, 2, 9, 30), datetime(2025, 1, 2, 9, 30), datetime(2025, 1, 2, 9, 30), False)


def test_collections_and_tags_move_the_contacts_updated_at(db: psycopg.Connection) -> None:
    org, _, contact = _tenant(db)
    group = gw.insert_one(db, "groups", organization_id=org, label="Beta")
    tag = gw.insert_one(db, "tags", organization_id=org, label="VIP", shortcode="vip", language_id=gw.language(db))
    for change, when in ((lambda at: gw.add_to_group(db, org, contact, group, at=at), datetime(2031, 1, 1)),
                         (lambda at: gw.tag_contact(db, org, contact, tag, at=at), datetime(2032, 1, 1)),
                         (lambda at: gw.remove_from_group(db, contact, group, at=at), datetime(2033, 1, 1))):
        change(when)
        assert _row(db, "contacts", contact, "updated_at")[0] == when


def test_flow_runs_take_the_contacts_active_profile(db: psycopg.Connection) -> None:
    org, _, contact = _tenant(db)
    profile = gw.insert_one(db, "profiles", organization_id=org, contact_id=contact, name="Child", type="Student",
                            language_id=gw.language(db))
    gw.update(db, "contacts", contact, active_profile_id=profile)
    flow = gw.flow(db, org, "Registration")
    flow_uuid = _row(db, "flows", flow, "uuid")[0]
    run = {"organization_id": org, "contact_id": contact, "flow_id": flow, "flow_uuid": flow_uuid}
    context = gw.insert_one(db, "flow_contexts", **run)
    result = gw.insert_one(db, "flow_results", flow_context_id=context, **run)
    history = gw.insert_one(db, "contact_histories", organization_id=org, contact_id=contact, event_type="x")
    assert {_row(db, t, i, "profile_id")[0] for t, i in
            (("flow_contexts", context), ("flow_results", result), ("contact_histories", history))} == {profile}


def test_contact_history_keeps_25_rows_per_contact(db: psycopg.Connection) -> None:
    org, _, contact = _tenant(db)
    gw.insert(db, "contact_histories", [{"organization_id": org, "contact_id": contact, "event_type": str(n),
                                          "inserted_at": datetime(2025, 1, 1) + timedelta(minutes=n)} for n in range(30)])
    assert db.execute("SELECT count(*) FROM contact_histories").fetchone()[0] == 25


def test_publishing_numbers_and_archives_revisions(db: psycopg.Connection) -> None:
    org, _, _ = _tenant(db)
    flow = gw.flow(db, org, "Quiz")
    gw.publish_revision(db, flow)
    gw.revision(db, flow, {"name": "Quiz", "nodes": [1]})
    newest = gw.publish_revision(db, flow)
    rows = db.execute("SELECT id, revision_number, status, version FROM flow_revisions ORDER BY id").fetchall()
    assert [r[1:] for r in rows] == [(1, "archived", 1), (0, "published", 2)] and rows[1][0] == newest


def test_tags_keep_their_ancestors(db: psycopg.Connection) -> None:
    org, _, _ = _tenant(db)
    english = gw.language(db)
    root = gw.insert_one(db, "tags", organization_id=org, label="Root", shortcode="root", language_id=english)
    child = gw.insert_one(db, "tags", organization_id=org, label="Child", shortcode="child", language_id=english,
                          parent_id=root)
    leaf = gw.insert_one(db, "tags", organization_id=org, label="Leaf", shortcode="leaf", language_id=english,
                         parent_id=child)
    assert [_row(db, "tags", t, "ancestors")[0] for t in (root, child, leaf)] == [[], [root], [root, child]]


def test_glific_bq_never_adds_rows_to_glifics_bigquery_jobs(db: psycopg.Connection) -> None:
    """Glific creates its rows when BigQuery is enabled (its NOT NULL timestamps have no database
    default); glific_bq's own state goes to its own table."""
    org, _, _ = _tenant(db)
    watermarks.create(db, org, "messages", "glific:p.d")
    watermarks.record_failure(db, org, "messages", "glific:p.d", "boom")
    assert db.execute("SELECT count(*) FROM bigquery_jobs").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM glific_bq_watermarks").fetchone()[0] == 1
    assert _column_type(db, "bigquery_jobs", "inserted_at") == "timestamp(0) without time zone"


def test_writes_truncate_timestamp0_columns_and_keep_microseconds_elsewhere(db: psycopg.Connection) -> None:
    org, _, contact = _tenant(db)
    at = datetime(2025, 1, 1, 10, 0, 0, 999999)
    ticket = gw.insert_one(db, "tickets", organization_id=org, contact_id=contact, body="b", at=at)
    gw.update(db, "contacts", contact, at=at, optin_time=at)
    assert _row(db, "tickets", ticket, "inserted_at")[0] == datetime(2025, 1, 1, 10, 0, 0)  # truncated, not rounded
    assert _row(db, "contacts", contact, "updated_at, optin_time") == (at, datetime(2025, 1, 1, 10, 0, 0))


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


def _until(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    """Wait until ``condition()`` holds: the database shows what the traffic did, however fast
    or slow this machine runs it (no fixed sleep). ``seconds`` only bounds a traffic that stopped."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        threading.Event().wait(0.05)
    pytest.fail(f"never saw {what} within {seconds:.0f} s")


def _traffic_connections(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (traffic.APPLICATION_NAME,)).fetchone()[0]


def test_traffic_inserts_and_updates_rows_until_stopped(small_seeded: str) -> None:
    before = _high_water_marks(small_seeded)
    stop = threading.Event()
    seen: dict[str, int] = {}

    def changes() -> dict[str, int]:
        with psycopg.connect(small_seeded) as conn:
            new_messages, moved_messages, advanced = conn.execute(
                "SELECT count(*) FILTER (WHERE id > %(id)s), "
                "count(*) FILTER (WHERE id <= %(id)s AND updated_at > %(at)s), "
                "count(*) FILTER (WHERE id > %(id)s AND flow = 'outbound' AND status <> 'enqueued') FROM messages",
                {"id": before["messages"][0], "at": before["messages"][1]},
            ).fetchone()
            moved_contacts = conn.execute(
                "SELECT count(*) FROM contacts WHERE id <= %s AND updated_at > %s", before["contacts"]
            ).fetchone()[0]
        seen.update(new_messages=new_messages, moved_messages=moved_messages, advanced=advanced,
                    moved_contacts=moved_contacts)
        return all(seen.values())

    thread, steps = _start_traffic(small_seeded, stop, seed=1)
    try:
        _until(changes, "new, updated and advanced messages and updated contacts")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert steps["inbound_message"] > 0 and steps["advance_statuses"] > 0
    assert all(seen.values()), seen


def test_traffic_reconnects_after_its_connection_is_killed(small_seeded: str) -> None:
    stop = threading.Event()
    thread, _ = _start_traffic(small_seeded, stop, seed=2)
    try:
        _until(lambda: _traffic_connections(small_seeded) == 1, "the traffic's connection")
        with psycopg.connect(small_seeded, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s) s",
                (traffic.APPLICATION_NAME,),
            ).fetchone()[0]
        assert killed == 1
        after_kill = _high_water_marks(small_seeded)["messages"][0]
        _until(lambda: _high_water_marks(small_seeded)["messages"][0] > after_kill, "a message inserted after the kill")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_traffic_command_stops_cleanly_on_sigterm(small_seeded: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "glific_bq.local.traffic", "--database-url", small_seeded, "--rate", "20"],
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(lambda: _traffic_connections(small_seeded) == 1, "the command connected")  # its handler is set by then
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "traffic stopped" in stderr