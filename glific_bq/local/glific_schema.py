"""Glific's PostgreSQL schema (``glific_schema.sql``) for the local stack and the tests.

The tables, enums, foreign keys, indexes and triggers of Glific's own database, so that the sync
is developed against what production has: see the header of ``glific_schema.sql`` for the few
deliberate differences. Rows go in through :mod:`glific_bq.local.glific_writes`.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

__all__ = ["SCHEMA_SQL", "TENANT_TABLES", "create_glific_schema"]

SCHEMA_SQL = Path(__file__).with_name("glific_schema.sql")

TENANT_TABLES: tuple[str, ...] = (
    "contacts", "profiles", "users", "groups", "tags", "flows", "flow_revisions", "messages_media",
    "session_templates", "interactive_templates", "message_broadcasts", "messages", "messages_tags",
    "messages_conversations", "message_broadcast_contacts", "flow_contexts", "flow_results", "flow_counts",
    "flow_labels", "contact_histories", "tickets", "contacts_groups", "contacts_tags", "contacts_fields",
    "locations", "stats", "trackers", "saved_searches",
)
"""Tables that belong to one organization (``organization_id``), in foreign-key order."""

# Any constant: serializes concurrent callers on one database.
_LOCK_KEY = 0x6C1F1C


def create_glific_schema(conn: psycopg.Connection) -> bool:
    """Create Glific's schema unless ``organizations`` exists already; True if it was created.

    Meant for an empty database (a test's, the demo's): a database that already has
    ``organizations`` is left as it is. Runs in one transaction under an advisory lock, so
    concurrent callers create it once.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if conn.execute("SELECT to_regclass('public.organizations') IS NOT NULL").fetchone()[0]:
            return False
        conn.execute(SCHEMA_SQL.read_text())
    return True
