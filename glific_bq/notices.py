"""Telling the NGO, where it already looks: rows in Glific's ``notifications`` (the bell in
Glific's UI), one when its BigQuery sync stops for a reason only the NGO can fix, one when it
works again.

Which failures: the key the NGO saved in Glific cannot be used (undecryptable, not a service
account, refused by Google), the key lacks a permission (PERMISSION_DENIED), or its project or
dataset is gone. Not: outages, quotas, our own bugs (the operator's webhook alerts cover those,
``glific_bq.alerts``), nor organizations that never turned BigQuery on.

One notice per incident, not per tick or table: the open incident is kept in our own table
``glific_bq_notices`` (one row per organization), and the notice is written in the same
statement that opens it; the recovery notice in the same statement that closes it. The message
is ours, fixed per kind: no key material, no error text from elsewhere, nothing of another
organization.

Glific itself also switches the credential off after such a failure. glific_bq does not: it only
reads Glific's control plane (its backoff already stops the crash loop of glific#5570, and
Glific's weekly job switches credentials back on anyway, glific#5322); the NGO's saved settings
stay as the NGO left them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg

from glific_bq.source import ensure_state_tables

# Kinds of incident, and what the NGO reads for each.
KEY_UNUSABLE = "key_unusable"
PERMISSION_DENIED = "permission_denied"
GONE = "project_or_dataset_gone"

MESSAGES = {
    KEY_UNUSABLE: "BigQuery sync has stopped: the service-account key saved in Glific's BigQuery settings cannot be "
                  "used. Save a valid key (a service-account JSON key of your Google Cloud project) to resume.",
    PERMISSION_DENIED: "BigQuery sync has stopped: Google Cloud refused the service account saved in Glific's BigQuery "
                       "settings a permission it needs (BigQuery Data Editor and BigQuery Job User on the project).",
    GONE: "BigQuery sync has stopped: the Google Cloud project or BigQuery dataset of the key saved in Glific's "
          "BigQuery settings cannot be found. Check that the project exists and billing is enabled.",
}
RECOVERED = "BigQuery sync works again: your data is being copied to BigQuery, from where it stopped."

#: Glific's own values for these notices (its credential notices use them, with an entity naming
#: the provider: ``{"id": <provider id>, "shortcode": "bigquery"}``).
CATEGORY = "Partner"
_ENTITY = "jsonb_build_object('id', (SELECT p.id FROM global.providers p WHERE p.shortcode = 'bigquery'), " \
          "'shortcode', 'bigquery')"

_DDL = """
CREATE TABLE IF NOT EXISTS glific_bq_notices (
    organization_id bigint PRIMARY KEY,  -- no foreign key into Glific's tables: its role may not grant it
    kind text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now()
)
"""

# Glific's timestamps are naive UTC, seconds, set by the application (no database default).
_NOW = "date_trunc('second', now() AT TIME ZONE 'UTC')"

_OPEN = f"""
WITH opened AS (
    INSERT INTO glific_bq_notices (organization_id, kind) VALUES (%(org)s, %(kind)s)
    ON CONFLICT (organization_id) DO NOTHING RETURNING organization_id
)
INSERT INTO notifications (organization_id, category, entity, message, severity, is_read, inserted_at, updated_at)
SELECT organization_id, %(category)s, {_ENTITY}, %(message)s, 'Critical', false, {_NOW}, {_NOW} FROM opened
RETURNING id
"""

_CLOSE = f"""
WITH closed AS (
    DELETE FROM glific_bq_notices WHERE organization_id = ANY(%(orgs)s) RETURNING organization_id
)
INSERT INTO notifications (organization_id, category, entity, message, severity, is_read, inserted_at, updated_at)
SELECT organization_id, %(category)s, {_ENTITY}, %(message)s, 'Information', false, {_NOW}, {_NOW} FROM closed
RETURNING organization_id
"""


def kind_of(error: str | None) -> str | None:
    """The incident an error (as stored: ``"Type: message"``, ``redact.describe``) is for the
    NGO, or None when it is not the NGO's to fix."""
    if not error:
        return None
    kind, _, message = error.partition(":")
    if kind == "CredentialsError" or "invalid_grant" in message or "RefreshError" in kind:
        return KEY_UNUSABLE
    if kind in ("Forbidden", "PermissionDenied") or "PERMISSION_DENIED" in message:
        return PERMISSION_DENIED
    if kind == "NotFound" and ("Project" in message or "Dataset" in message):
        return GONE
    return None


def _has_notifications(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('public.notifications') IS NOT NULL").fetchone()[0]


def report(conn: psycopg.Connection, failed: Mapping[int, str], working: Iterable[int]) -> tuple[list[int], list[int]]:
    """Open an incident (and notify) for each organization in ``failed`` (id -> incident kind)
    that has none open; close it (and notify) for each organization in ``working`` that has one.
    Returns (notified of a failure, notified of a recovery).

    One query in steady state (the open incidents), plus one statement per organization whose
    state changed; nothing on a database without Glific's ``notifications``."""
    if not _has_notifications(conn):
        return [], []
    ensure_state_tables(conn, "notices", _DDL)
    open_now = {row[0] for row in conn.execute("SELECT organization_id FROM glific_bq_notices")}
    opened = []
    for organization_id, kind in sorted(failed.items()):
        if organization_id in open_now:
            continue
        row = conn.execute(_OPEN, {"org": organization_id, "kind": kind, "category": CATEGORY,
                                   "message": MESSAGES[kind]}).fetchone()
        if row:
            opened.append(organization_id)
    recovered = sorted((set(working) - set(failed)) & open_now)
    closed = []
    if recovered:
        closed = sorted(row[0] for row in conn.execute(_CLOSE, {"orgs": recovered, "category": CATEGORY,
                                                                "message": RECOVERED}))
    return opened, closed
