"""What Glific writes: rows inserted and updated the way Glific's application (Ecto) does.

The one home for Glific's write SQL in the local stack (sample data, traffic simulator, soak
test, test set-up). What the application does, and the database does not:

- ``inserted_at``/``updated_at`` come from the application's clock, naive UTC: truncated to
  the second for ``timestamp(0)`` columns (Ecto ``:utc_datetime``), with microseconds for
  ``timestamp`` columns (``:utc_datetime_usec``). Every ``timestamp(0)`` value is truncated, as
  Ecto does (PostgreSQL would round it).
- NOT NULL columns without a database default are filled; a ``uuid`` column gets a new UUID;
  JSON values are sent as ``jsonb`` (``jsonb[]`` as arrays of them); enums as their values.
- The rest is the database's: message numbers, profiles, sessions, ``updated_at`` bumps on
  tagging… are done by Glific's triggers (``glific_schema.sql``).

Every function takes ``at``, the application's clock for that write (default: now). A write given
an explicit ``at`` is history (the sample data writing a past month): the triggers then run at
that time too (``glific_bq.clock``), so what they stamp agrees with the rows.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from glific_bq.cloak import DEFAULT_TAG, Vault

__all__ = [
    "add_to_group", "contact", "contact_fields", "delete", "flow", "insert", "insert_one", "iso",
    "language", "message", "message_row", "organization", "provider", "publish_revision",
    "remove_from_group", "revision", "saas", "tag_contact", "tag_message", "trial_user", "untag_contact",
    "untag_message", "update", "user", "utc_now",
]

_dumps = partial(json.dumps, ensure_ascii=False)
_SECONDS = "timestamp(0) without time zone"
_CATALOG: weakref.WeakKeyDictionary[psycopg.Connection, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


def utc_now() -> datetime:
    """The application's clock: naive UTC with microseconds (Elixir ``DateTime.utc_now``)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(at: datetime) -> str:
    """A timestamp as Glific writes one into JSON (``DateTime.to_iso8601`` of a UTC value)."""
    return at.isoformat(timespec="microseconds") + "Z"


def _columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """``{column: type}`` of ``table`` (``schema.table`` for ``global``), read once per connection."""
    tables = _CATALOG.setdefault(conn, {})
    if table not in tables:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
        if not rows:
            raise LookupError(f"no table {table!r}: create Glific's schema first (glific_schema.create_glific_schema)")
        tables[table] = dict(rows)
    return tables[table]


def _identifier(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


def _value(type_name: str, value: Any) -> Any:
    """``value`` as the application would send it into a column of ``type_name``."""
    if value is None or isinstance(value, Jsonb):
        return value
    if type_name == "jsonb":
        return Jsonb(value, _dumps)
    if type_name == "jsonb[]":
        return [Jsonb(item, _dumps) for item in value]
    if type_name == _SECONDS and isinstance(value, datetime):
        return value.replace(microsecond=0)
    return value


def _row(columns: Mapping[str, str], row: Mapping[str, Any], at: datetime, *, new: bool = True) -> dict[str, Any]:
    full = dict(row)
    if new:
        at = full.get("inserted_at", at)  # Ecto stamps both with one time
    for stamp in ("inserted_at", "updated_at") if new else ("updated_at",):
        if stamp in columns:
            full.setdefault(stamp, at)
    if new and "uuid" in columns and "uuid" not in full:
        full["uuid"] = uuid.uuid4()
    unknown = full.keys() - columns.keys()
    if unknown:
        raise KeyError(f"no column {', '.join(sorted(unknown))}")
    return {name: _value(columns[name], value) for name, value in full.items()}


def insert(
    conn: psycopg.Connection, table: str, rows: Iterable[Mapping[str, Any]], *, at: datetime | None = None
) -> list[int]:
    """Insert ``rows`` (dicts of column values) into ``table`` as the application does; returns
    their ids, in order.

    With an explicit ``at`` (or rows carrying their own ``inserted_at``) the triggers run at each
    row's ``inserted_at``. Rows go in one pipelined ``executemany``.
    """
    columns = _columns(conn, table)
    rows = list(rows)
    if not rows:
        return []
    # History (an explicit ``at``, or rows with their own inserted_at): the triggers run at each
    # row's inserted_at (or ``at``), pinned by the statement itself before its row goes in.
    history = at is not None or any("inserted_at" in row for row in rows)
    now = at or utc_now()
    prepared = [_row(columns, row, now) for row in rows]
    names = list(prepared[0])
    if any(row.keys() != prepared[0].keys() for row in prepared):  # one statement per run of equal keys
        cut = next(i for i, row in enumerate(prepared) if row.keys() != prepared[0].keys())
        return insert(conn, table, rows[:cut], at=at) + insert(conn, table, rows[cut:], at=at)
    values = sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(columns[name])) for name in names)
    if history:
        clock = sql.SQL("(SELECT set_config('glific_bq.clock', %s::text, true)) AS clock, ")
        source = sql.SQL("SELECT v.* FROM {}(VALUES ({})) AS v").format(clock, values)
        params = [(row.get("inserted_at", now), *(row[name] for name in names)) for row in prepared]
    else:
        source = sql.SQL("VALUES ({})").format(values)
        params = [tuple(row[name] for name in names) for row in prepared]
    statement = sql.SQL("INSERT INTO {} ({}) {} RETURNING id").format(
        _identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)), source
    )
    ids: list[int] = []
    with conn.cursor() as cur:
        cur.executemany(statement, params, returning=True)
        while True:
            ids.append(cur.fetchone()[0])
            if not cur.nextset():
                break
        if history:
            cur.execute("SELECT set_config('glific_bq.clock', '', true)")
    return ids


def insert_one(conn: psycopg.Connection, table: str, *, at: datetime | None = None, **columns: Any) -> int:
    """Insert one row; its id."""
    return insert(conn, table, [columns], at=at)[0]


@contextmanager
def _clock(conn: psycopg.Connection, at: datetime | None) -> Iterator[datetime]:
    """The application's time for one statement; pins the triggers' clock to it if given (in a
    transaction, or a savepoint of the caller's: the setting is transaction-local)."""
    if at is None:
        yield utc_now()
        return
    with conn.transaction():
        conn.execute("SELECT set_config('glific_bq.clock', %s::text, true)", (at,))
        yield at
        conn.execute("SELECT set_config('glific_bq.clock', '', true)")


def update(
    conn: psycopg.Connection, table: str, ids: int | Sequence[int], *, at: datetime | None = None, **changes: Any
) -> int:
    """Change rows as ``Repo.update``/``update_all`` does: ``updated_at`` set to ``at`` with the
    changes, one ``updated_at`` for all of ``ids`` (a bulk update). Returns the rows changed."""
    columns = _columns(conn, table)
    with _clock(conn, at) as now:
        values = _row(columns, changes, now, new=False)
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s::{}").format(sql.Identifier(name), sql.SQL(columns[name])) for name in values
        )
        statement = sql.SQL("UPDATE {} SET {} WHERE id = ANY(%s)").format(_identifier(table), assignments)
        return conn.execute(statement, (*values.values(), [ids] if isinstance(ids, int) else list(ids))).rowcount


def delete(conn: psycopg.Connection, table: str, *, at: datetime | None = None, **where: Any) -> int:
    """Delete the rows matching ``where`` (column = value); the rows deleted."""
    condition = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in where)
    with _clock(conn, at):
        return conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(_identifier(table), condition), tuple(where.values())
        ).rowcount


# ---------------------------------------------------------------------------------------------
# Global rows and organizations
# ---------------------------------------------------------------------------------------------


def _get_or_insert(conn: psycopg.Connection, table: str, key: Mapping[str, Any], at: datetime | None,
                   **columns: Any) -> int:
    condition = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in key)
    found = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE {}").format(_identifier(table), condition), tuple(key.values())
    ).fetchone()
    return found[0] if found else insert_one(conn, table, at=at, **key, **columns)


def language(conn: psycopg.Connection, label: str = "English", locale: str = "en", *, label_locale: str | None = None,
             at: datetime | None = None) -> int:
    """The id of a ``global.languages`` row, created if missing."""
    return _get_or_insert(conn, "global.languages", {"label": label, "locale": locale}, at,
                          label_locale=label_locale or label)


def provider(conn: psycopg.Connection, name: str = "Gupshup", shortcode: str = "gupshup", *,
             at: datetime | None = None) -> int:
    """The id of a ``global.providers`` row (a BSP), created if missing."""
    return _get_or_insert(conn, "global.providers", {"shortcode": shortcode}, at, name=name, group="bsp")


def organization(conn: psycopg.Connection, name: str, shortcode: str, phone: str, *, timezone: str | None = "UTC",
                 language_id: int | None = None, at: datetime | None = None, **columns: Any) -> int:
    """An organization as Glific onboards one: its BSP and default language, then its own WhatsApp
    number as a contact (``organizations.contact_id``; Glific names the BigQuery dataset after
    that phone). Returns the organization's id."""
    language_id = language_id or language(conn, at=at)
    columns = {"email": f"admin@{shortcode}.example.org", "status": "active", "is_approved": True,
               "active_language_ids": [language_id], "fields": {}, **columns}
    organization_id = insert_one(conn, "organizations", at=at, name=name, shortcode=shortcode, timezone=timezone,
                                 bsp_id=provider(conn, at=at), default_language_id=language_id, **columns)
    bot = contact(conn, organization_id, phone, name=name, language_id=language_id, at=at,
                  bsp_status="session_and_hsm", optin_status=True, optin_method="BSP")
    update(conn, "organizations", organization_id, at=at, contact_id=bot)
    return organization_id


def saas(conn: psycopg.Connection, organization_id: int, *, name: str = "Tides", phone: str = "919999999999",
         at: datetime | None = None) -> int:
    """The ``saas`` row naming the organization that runs the platform (Glific's seeds write one,
    named ``Tides``, for the first organization): its BigQuery dataset also gets the platform's
    cross-organization tables. Returns the row's id."""
    return insert_one(conn, "saas", at=at, name=name, organization_id=organization_id, phone=phone,
                      email=f"platform@{name.lower()}.example.org")


def trial_user(conn: psycopg.Connection, username: str, email: str, phone: str, organization_name: str, *,
               otp_entered: bool = False, at: datetime | None = None) -> int:
    """Someone who signed up for a trial account on Glific's website (``trial_users``, no
    organization of their own yet). Returns the row's id."""
    return insert_one(conn, "trial_users", at=at, username=username, email=email, phone=phone,
                      organization_name=organization_name, otp_entered=otp_entered)


def bigquery_credential(conn: psycopg.Connection, organization_id: int, service_account: Mapping[str, Any] | str,
                        vault: Vault, *, active: bool = True, tag: str = DEFAULT_TAG,
                        at: datetime | None = None) -> int:
    """What Glific's settings page saves when an NGO turns BigQuery on: its ``credentials`` row of
    the ``bigquery`` provider, the service-account key as a JSON string inside the map Cloak
    encrypts (``secrets``). Saving again replaces the key and moves ``updated_at``, as Glific does."""
    provider_id = _get_or_insert(conn, "global.providers", {"shortcode": "bigquery"}, at, name="BigQuery",
                                 group="bigquery", keys={}, secrets={"service_account": {"type": "string"}})
    key = service_account if isinstance(service_account, str) else json.dumps(service_account)
    secrets = vault.encrypt_map({"service_account": key}, tag)
    found = conn.execute("SELECT id FROM credentials WHERE organization_id = %s AND provider_id = %s",
                         (organization_id, provider_id)).fetchone()
    if found:
        update(conn, "credentials", found[0], at=at, secrets=secrets, is_active=active)
        return found[0]
    return insert_one(conn, "credentials", at=at, organization_id=organization_id, provider_id=provider_id,
                      keys={}, secrets=secrets, is_active=active, is_valid=True)


def service_account_key(project_id: str, *, email: str | None = None) -> dict[str, str]:
    """A service-account key of ``project_id`` shaped as Google issues them (a real RSA key, so
    that Google's own parser accepts it; it opens no account anywhere)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": project_id, "private_key_id": uuid.uuid4().hex,
            "private_key": pem, "client_email": email or f"glific-bq@{project_id}.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}


def _default_language(conn: psycopg.Connection, organization_id: int) -> int:
    return conn.execute("SELECT default_language_id FROM organizations WHERE id = %s", (organization_id,)).fetchone()[0]


def contact_fields(values: Mapping[str, Any], at: datetime | None = None, **labels: str) -> dict[str, dict[str, Any]]:
    """``contacts.fields`` as Glific stores it: ``{key: {label, value, type, inserted_at}}``."""
    stamp = iso(at or utc_now())
    return {
        key: {"label": labels.get(key, key.replace("_", " ").title()), "value": value, "type": "string",
              "inserted_at": stamp}
        for key, value in values.items()
    }


def contact(conn: psycopg.Connection, organization_id: int, phone: str, *, at: datetime | None = None,
            **columns: Any) -> int:
    """A contact (``language_id`` defaults to the organization's language)."""
    columns.setdefault("language_id", _default_language(conn, organization_id))
    return insert_one(conn, "contacts", at=at, organization_id=organization_id, phone=phone, **columns)


def user(conn: psycopg.Connection, organization_id: int, phone: str, name: str, *, roles: Sequence[str] = ("staff",),
         at: datetime | None = None, **columns: Any) -> int:
    """A staff user, with the contact Glific creates for every user."""
    contact_id = contact(conn, organization_id, phone, name=name, at=at)
    return insert_one(conn, "users", at=at, organization_id=organization_id, phone=phone, name=name, roles=list(roles),
                      contact_id=contact_id, password_hash="$pbkdf2-sha512$160000$local$not-a-real-hash", **columns)


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


def message_row(organization_id: int, contact_id: int, bot_contact_id: int, *, inbound: bool,
                **columns: Any) -> dict[str, Any]:
    """A message as Glific's ``Messages.create_message`` fills one: an inbound message goes from the
    contact to the organization's own contact, an outbound one the other way."""
    return {
        "type": "text",
        "status": "received" if inbound else "enqueued",
        "bsp_status": "delivered" if inbound else "enqueued",
        "flow": "inbound" if inbound else "outbound",
        "sender_id": contact_id if inbound else bot_contact_id,
        "receiver_id": bot_contact_id if inbound else contact_id,
        "contact_id": contact_id,
        "organization_id": organization_id,
        **columns,
    }


def message(conn: psycopg.Connection, organization_id: int, contact_id: int, bot_contact_id: int, *, inbound: bool,
            at: datetime | None = None, **columns: Any) -> int:
    """Insert one message (see ``message_row``); its id. Media, flow, template, user, group… are
    columns (``media_id=``, ``flow_id=``, ``template_id=``, ``user_id=``, ``group_id=``)."""
    return insert(conn, "messages", [message_row(organization_id, contact_id, bot_contact_id, inbound=inbound,
                                                 **columns)], at=at)[0]


# ---------------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------------


def flow(conn: psycopg.Connection, organization_id: int, name: str, *, definition: Mapping[str, Any] | None = None,
         user_id: int | None = None, at: datetime | None = None, **columns: Any) -> int:
    """A flow with its first (draft) revision, as the flow editor creates one; the flow's id."""
    flow_id = insert_one(conn, "flows", at=at, organization_id=organization_id, name=name, **columns)
    revision(conn, flow_id, definition or {"name": name, "nodes": []}, user_id=user_id, at=at)
    return flow_id


def revision(conn: psycopg.Connection, flow_id: int, definition: Mapping[str, Any], *, user_id: int | None = None,
             at: datetime | None = None) -> int:
    """A new draft revision of a flow (the trigger renumbers the older ones); its id."""
    (organization_id,) = conn.execute("SELECT organization_id FROM flows WHERE id = %s", (flow_id,)).fetchone()
    return insert_one(conn, "flow_revisions", at=at, flow_id=flow_id, organization_id=organization_id,
                      definition=definition, user_id=user_id)


def publish_revision(conn: psycopg.Connection, flow_id: int, *, user_id: int | None = None,
                     at: datetime | None = None) -> int:
    """Publish a flow's newest revision as ``Flows.publish_flow`` does: the published one is
    archived, the newest becomes ``published`` with the next version. Returns its id."""
    published = conn.execute(
        "SELECT id, version FROM flow_revisions WHERE flow_id = %s AND status = 'published'", (flow_id,)
    ).fetchone()
    if published:
        update(conn, "flow_revisions", published[0], at=at, status="archived", user_id=user_id)
    (newest,) = conn.execute(
        "SELECT id FROM flow_revisions WHERE flow_id = %s AND revision_number = 0", (flow_id,)
    ).fetchone()
    update(conn, "flow_revisions", newest, at=at, status="published",
           version=(published[1] if published else 0) + 1, user_id=user_id)
    return newest


# ---------------------------------------------------------------------------------------------
# Tags and collections: join rows whose triggers move the tagged row's updated_at
# ---------------------------------------------------------------------------------------------


def _link(table: str, owner: str):
    def link(conn: psycopg.Connection, organization_id: int, owner_id: int, other_id: int, *,
             at: datetime | None = None, **columns: Any) -> int:
        other = "group_id" if table == "contacts_groups" else "tag_id"
        return insert_one(conn, table, at=at, organization_id=organization_id, **{owner: owner_id, other: other_id},
                          **columns)

    def unlink(conn: psycopg.Connection, owner_id: int, other_id: int, *, at: datetime | None = None) -> int:
        other = "group_id" if table == "contacts_groups" else "tag_id"
        return delete(conn, table, at=at, **{owner: owner_id, other: other_id})

    link.__doc__ = f"Add a ``{table}`` row; its id. The trigger moves the {owner[:-3]}'s updated_at."
    unlink.__doc__ = f"Remove a ``{table}`` row. The trigger moves the {owner[:-3]}'s updated_at."
    return link, unlink


tag_contact, untag_contact = _link("contacts_tags", "contact_id")
tag_message, untag_message = _link("messages_tags", "message_id")
add_to_group, remove_from_group = _link("contacts_groups", "contact_id")
