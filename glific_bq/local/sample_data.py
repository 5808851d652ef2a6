"""A Glific-like PostgreSQL schema and deterministic sample data for the local stack and tests.

The schema follows Glific's own (glific/glific, Ecto migrations) for the tables we sync: the
same enums, ``bigint`` ids and foreign keys, ``jsonb``, ``jsonb[]``, ``text[]``, ``uuid``,
``timestamp(0)`` (Ecto ``:utc_datetime``) and ``timestamp`` (``:utc_datetime_usec``) columns,
all naive UTC. Every tenant table carries ``organization_id bigint NOT NULL`` with
``ON DELETE CASCADE`` and the two indexes the sync's queries need.

Deliberate deviations, kept small:

- Referenced tables that we do not sync (``languages``, ``users``, ``groups``, templates) are
  not created; their ids are plain ``bigint`` columns.
- ``contacts.group_ids integer[]`` stands in for Glific's ``contacts_groups`` join table, so
  that an ``integer[]`` column (nullable, to exercise NULL versus empty arrays) is present in a
  tenant table. ``organizations.active_language_ids integer[]`` is Glific's own.
- ``bigquery_jobs`` (the watermark table) is owned by another module and not created here.

The data is built to break careless sync code: ids interleave across organizations, the same
phone number exists in every organization, texts mix Hindi, Swahili, Portuguese, emoji,
quotes, backslashes, control characters, NULLs, empty strings and ~5,000-character bodies, a
third of the contacts share one ``updated_at`` (a bulk update), and a few messages carry an
``inserted_at`` older than their neighbours' (late commits).
"""

from __future__ import annotations

import json
import random
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from functools import partial
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

__all__ = ["TABLES", "TENANT_TABLES", "create_schema", "seed"]

TENANT_TABLES: tuple[str, ...] = (
    "contacts",
    "flows",
    "messages_media",
    "messages",
    "flow_contexts",
    "flow_results",
    "flow_counts",
    "profiles",
    "tickets",
    "contact_histories",
)
"""Tables that belong to one organization, in foreign-key order."""

TABLES: tuple[str, ...] = ("organizations", *TENANT_TABLES)
"""Every table :func:`create_schema` creates."""

# Glific's enum values, in Glific's order (lib/glific/enums/constants.ex).
_ENUMS: dict[str, tuple[str, ...]] = {
    "contact_status_enum": ("blocked", "failed", "invalid", "processing", "valid"),
    "contact_provider_status_enum": ("none", "session", "session_and_hsm", "hsm"),
    "message_flow_enum": ("inbound", "outbound"),
    "message_status_enum": (
        "sent", "delivered", "enqueued", "error", "read", "received",
        "contact_opt_out", "reached", "seen", "played", "deleted",
    ),
    "message_type_enum": (
        "audio", "contact", "document", "hsm", "image", "location", "list", "quick_reply",
        "text", "video", "sticker", "location_request_message", "poll",
    ),
}

_ORG_FK = "organization_id bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE"
_TS0 = """inserted_at timestamp(0) without time zone NOT NULL,
    updated_at timestamp(0) without time zone NOT NULL"""
_TS6 = """inserted_at timestamp without time zone NOT NULL,
    updated_at timestamp without time zone NOT NULL"""

_TABLE_DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS organizations (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL UNIQUE,
    shortcode varchar(255) NOT NULL UNIQUE,
    email varchar(255) NOT NULL,
    timezone varchar(255) NOT NULL DEFAULT 'Asia/Kolkata',
    default_language_id bigint NOT NULL DEFAULT 1,
    active_language_ids integer[] NOT NULL DEFAULT '{{}}',
    is_active boolean NOT NULL DEFAULT true,
    is_approved boolean NOT NULL DEFAULT false,
    status varchar(255) NOT NULL DEFAULT 'active',
    contact_id bigint,
    setting jsonb NOT NULL DEFAULT '{{}}',
    last_communication_at timestamp(0) without time zone,
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS contacts (
    id bigserial PRIMARY KEY,
    name varchar(255),
    phone varchar(255) NOT NULL,
    status contact_status_enum NOT NULL DEFAULT 'valid',
    bsp_status contact_provider_status_enum NOT NULL DEFAULT 'none',
    language_id bigint NOT NULL DEFAULT 1,
    is_org_read boolean NOT NULL DEFAULT true,
    is_org_replied boolean NOT NULL DEFAULT true,
    is_contact_replied boolean NOT NULL DEFAULT true,
    last_message_number integer NOT NULL DEFAULT 0,
    optin_time timestamp(0) without time zone,
    optin_status boolean NOT NULL DEFAULT false,
    optin_method varchar(255),
    optin_message_id varchar(255),
    optout_time timestamp(0) without time zone,
    optout_method varchar(255),
    last_message_at timestamp(0) without time zone,
    last_communication_at timestamp(0) without time zone,
    group_ids integer[] DEFAULT '{{}}',
    fields jsonb NOT NULL DEFAULT '{{}}',
    settings jsonb NOT NULL DEFAULT '{{}}',
    {_ORG_FK},
    {_TS6},
    UNIQUE (phone, organization_id)
)""",
    f"""CREATE TABLE IF NOT EXISTS flows (
    id bigserial PRIMARY KEY,
    name varchar(255) NOT NULL,
    uuid uuid NOT NULL UNIQUE,
    version_number varchar(255) NOT NULL DEFAULT '13.2.0',
    flow_type varchar(255) NOT NULL DEFAULT 'message',
    keywords text[] NOT NULL DEFAULT '{{}}',
    ignore_keywords boolean NOT NULL DEFAULT false,
    is_active boolean NOT NULL DEFAULT true,
    is_background boolean NOT NULL DEFAULT false,
    is_pinned boolean NOT NULL DEFAULT false,
    respond_other boolean NOT NULL DEFAULT false,
    respond_no_response boolean NOT NULL DEFAULT false,
    description text,
    tag_id bigint,
    {_ORG_FK},
    {_TS6},
    UNIQUE (name, organization_id)
)""",
    f"""CREATE TABLE IF NOT EXISTS messages_media (
    id bigserial PRIMARY KEY,
    url text NOT NULL,
    source_url text NOT NULL,
    thumbnail text,
    caption text,
    provider_media_id varchar(255),
    gcs_url text,
    content_type varchar(255),
    is_template_media boolean NOT NULL DEFAULT false,
    flow message_flow_enum,
    {_ORG_FK},
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS messages (
    id bigserial PRIMARY KEY,
    uuid uuid,
    body text,
    type message_type_enum,
    flow message_flow_enum,
    status message_status_enum NOT NULL DEFAULT 'enqueued',
    bsp_message_id varchar(255),
    bsp_status message_status_enum,
    errors jsonb DEFAULT '{{}}',
    message_number bigint NOT NULL DEFAULT 0,
    sender_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    receiver_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    user_id bigint,
    flow_id bigint REFERENCES flows (id) ON DELETE SET NULL,
    media_id bigint REFERENCES messages_media (id) ON DELETE SET NULL,
    is_hsm boolean NOT NULL DEFAULT false,
    template_id bigint,
    interactive_template_id bigint,
    interactive_content jsonb DEFAULT '{{}}',
    send_at timestamp(0) without time zone,
    sent_at timestamp(0) without time zone,
    context_id varchar(255),
    context_message_id bigint REFERENCES messages (id) ON DELETE SET NULL,
    group_id bigint,
    flow_label varchar(255),
    is_read boolean NOT NULL DEFAULT false,
    {_ORG_FK},
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS flow_contexts (
    id bigserial PRIMARY KEY,
    node_uuid uuid,
    flow_uuid uuid NOT NULL,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    parent_id bigint REFERENCES flow_contexts (id) ON DELETE SET NULL,
    results jsonb NOT NULL DEFAULT '{{}}',
    status varchar(255) NOT NULL DEFAULT 'published',
    wakeup_at timestamp(0) without time zone,
    completed_at timestamp(0) without time zone,
    is_background_flow boolean NOT NULL DEFAULT false,
    is_await_result boolean NOT NULL DEFAULT false,
    is_killed boolean NOT NULL DEFAULT false,
    recent_inbound jsonb[] NOT NULL DEFAULT '{{}}',
    recent_outbound jsonb[] NOT NULL DEFAULT '{{}}',
    profile_id bigint,
    {_ORG_FK},
    {_TS0}
)""",
    # flow_context_id is deliberately not a foreign key: Glific purges old contexts.
    f"""CREATE TABLE IF NOT EXISTS flow_results (
    id bigserial PRIMARY KEY,
    results jsonb NOT NULL DEFAULT '{{}}',
    flow_uuid uuid NOT NULL,
    flow_version integer NOT NULL,
    flow_context_id bigint,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    profile_id bigint,
    {_ORG_FK},
    {_TS6}
)""",
    f"""CREATE TABLE IF NOT EXISTS flow_counts (
    id bigserial PRIMARY KEY,
    uuid uuid NOT NULL,
    destination_uuid uuid,
    flow_uuid uuid NOT NULL,
    flow_id bigint NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    type varchar(255) NOT NULL,
    count integer NOT NULL DEFAULT 1,
    recent_messages jsonb[] NOT NULL DEFAULT '{{}}',
    {_ORG_FK},
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS profiles (
    id bigserial PRIMARY KEY,
    name varchar(255),
    type varchar(255),
    fields jsonb NOT NULL DEFAULT '{{}}',
    language_id bigint NOT NULL,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    is_active boolean NOT NULL DEFAULT true,
    is_default boolean NOT NULL DEFAULT false,
    {_ORG_FK},
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS tickets (
    id bigserial PRIMARY KEY,
    body text,
    topic varchar(255),
    status varchar(255) NOT NULL DEFAULT 'open',
    remarks text,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    user_id bigint,
    message_number bigint,
    flow_id bigint REFERENCES flows (id) ON DELETE SET NULL,
    {_ORG_FK},
    {_TS0}
)""",
    f"""CREATE TABLE IF NOT EXISTS contact_histories (
    id bigserial PRIMARY KEY,
    event_type varchar(255),
    event_label text,
    event_meta jsonb NOT NULL DEFAULT '{{}}',
    event_datetime timestamp(0) without time zone,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    profile_id bigint,
    {_ORG_FK},
    {_TS6}
)""",
    # The organization's own WhatsApp number is a contact (Glific names the BigQuery dataset
    # after its phone). Added after contacts exists; duplicate_object makes it idempotent.
    """DO $$ BEGIN
    ALTER TABLE organizations ADD CONSTRAINT organizations_contact_id_fkey
        FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE SET NULL;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$""",
)

_FOREIGN_KEY_INDEXES: tuple[tuple[str, str], ...] = (
    ("messages", "contact_id"),
    ("messages", "flow_id"),
    ("messages", "media_id"),
    ("flow_contexts", "contact_id"),
    ("flow_results", "contact_id"),
    ("flow_results", "flow_id"),
    ("flow_counts", "flow_id"),
    ("profiles", "contact_id"),
    ("tickets", "contact_id"),
    ("contact_histories", "contact_id"),
)

# Any constant: serializes concurrent create_schema/seed calls on one database.
_LOCK_KEY = 0x6C1F1C


def create_schema(conn: psycopg.Connection) -> None:
    """Create the Glific-like enums, tables and indexes if they do not exist yet.

    Idempotent, so the local stack and every test can call it unconditionally. Runs in one
    transaction (a savepoint if ``conn`` is already inside one), under an advisory lock so that
    concurrent callers do not race on ``CREATE TYPE``.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for name, values in _ENUMS.items():
            cur.execute(
                sql.SQL(
                    "DO $$ BEGIN CREATE TYPE {} AS ENUM ({}); "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                ).format(sql.Identifier(name), sql.SQL(", ").join(map(sql.Literal, values)))
            )
        for statement in _TABLE_DDL:
            cur.execute(statement)
        for table in TENANT_TABLES:
            for columns in (("organization_id", "id"), ("organization_id", "updated_at", "id")):
                _create_index(cur, table, columns)
        for table, column in _FOREIGN_KEY_INDEXES:
            _create_index(cur, table, (column,))


def _create_index(cur: psycopg.Cursor, table: str, columns: Sequence[str]) -> None:
    cur.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{table}_{'_'.join(columns)}_index"),
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
    )


# ---------------------------------------------------------------------------------------------
# Sample content
# ---------------------------------------------------------------------------------------------

# Ids in Glific's global languages table (not created here).
_LANGUAGE_IDS = {"en": 1, "hi": 2, "sw": 3, "pt": 4}

_TIMEZONES = (
    "Asia/Kolkata", "Africa/Nairobi", "America/Sao_Paulo", "Asia/Kathmandu", "Europe/London",
    "America/New_York", "Asia/Dhaka", "Africa/Lagos", "UTC", "Australia/Adelaide",
)
_ORG_NAMES = (
    ("Saathi Shiksha Trust", "saathi", "hi", "91"),
    ("Jamii Afya Network", "jamii", "sw", "254"),
    ("Aprender Juntos", "aprender", "pt", "55"),
    ("Open Learning Lab", "openlab", "en", "1"),
)

_TEXT: dict[str, dict[str, tuple[str, ...]]] = {
    "hi": {
        "inbound": (
            "नमस्ते 🙏", "मुझे रजिस्टर करना है", "मेरी उम्र 23 साल है", "धन्यवाद! 😀",
            "क्या आप मेरी मदद कर सकते हैं?", "हाँ", "नहीं", "पुणे", "मुझे \"सर्टिफिकेट\" कब मिलेगा?",
            "कक्षा ७ का होमवर्क", "ठीक है 👍🏽",
        ),
        "outbound": (
            "नमस्ते! सास्थी में आपका स्वागत है 🙏", "कृपया अपनी उम्र बताएं",
            "धन्यवाद, आपका पंजीकरण पूरा हुआ ✅", "आज का सवाल: 5 + 7 = ?",
            "अपनी पसंद चुनें: 1️⃣ हाँ 2️⃣ नहीं", "आपका दिन शुभ हो 🌞",
        ),
        "first": ("राहुल", "प्रिया", "अनीता", "सुरेश", "Pooja", "Amit", "सुनीता", "Ravi"),
        "last": ("शर्मा", "पटेल", "Kumar", "सिंह", "Yadav", "गुप्ता"),
        "places": ("पुणे", "Pune", "लखनऊ", "Jaipur", "दिल्ली"),
        "yes": ("हाँ", "Yes", "1"),
    },
    "sw": {
        "inbound": (
            "Habari yako? 😀", "Nahitaji msaada", "Asante sana 🙏", "Ndiyo", "Hapana",
            "Ninataka kujiandikisha", "Nina miaka 19", "Mombasa", "Sijaelewa swali",
            "Mtoto wangu ana homa 🤒",
        ),
        "outbound": (
            "Karibu Jamii Afya! 😀", "Tafadhali andika umri wako", "Asante, umesajiliwa ✅",
            "Kumbuka kliniki kesho saa 3 asubuhi", "Chagua: 1. Ndiyo 2. Hapana",
        ),
        "first": ("Amina", "Juma", "Wanjiru", "Otieno", "Fatuma", "Baraka", "Neema"),
        "last": ("Mwangi", "Odhiambo", "Wanjiku", "Kamau", "Achieng", "Said"),
        "places": ("Nairobi", "Mombasa", "Kisumu", "Nakuru", "Malindi"),
        "yes": ("Ndiyo", "Yes", "1"),
    },
    "pt": {
        "inbound": (
            "Olá! Como posso me inscrever? 😀", "Obrigado pela ajuda 🙏", "Sim", "Não",
            "Não entendi a pergunta", "Tenho 15 anos", "São Paulo", "Quero o certificado",
            "Ação, atenção, coração — ç ã õ é", "Bom dia ☀️",
        ),
        "outbound": (
            "Bem-vindo ao Aprender Juntos! 😀", "Qual é a sua idade?", "Inscrição concluída ✅",
            "Lembrete: aula amanhã às 10h", "Escolha: 1. Sim 2. Não",
        ),
        "first": ("João", "Maria", "Conceição", "Luís", "Ana", "Thiago", "Bárbara"),
        "last": ("da Silva", "Souza", "Gonçalves", "Araújo", "Pereira", "Lima"),
        "places": ("São Paulo", "Belém", "Recife", "Porto Alegre", "Florianópolis"),
        "yes": ("Sim", "Yes", "1"),
    },
    "en": {
        "inbound": (
            "Hi", "I need help with the quiz", "Yes", "No", "Thanks!", "What's my score?",
            "STOP", "help", "I'm 17", "ok 👍",
        ),
        "outbound": (
            "Welcome! 😀", "Please tell us your age", "You are registered ✅",
            "Reply 1 for Yes, 2 for No", "Here is today's tip 💡",
        ),
        "first": ("Sam", "Alex", "Grace", "Peter", "Lucy", "John"),
        "last": ("Smith", "O'Brien", "Johnson", "Okafor", "Brown"),
        "places": ("Springfield", "Lagos", "Accra", "London"),
        "yes": ("Yes", "Y", "1"),
    },
}

# Texts chosen to break quoting, escaping, CSV and JSON handling.
_EDGE_TEXTS = (
    'He said "yes" and then \'no\'',
    "Path: C:\\Users\\glific\\new folder\\file.txt",
    "Ends with a backslash \\",
    "Tab\tseparated\tvalues",
    "Line one\nLine two\r\nLine three",
    '{"looks": "like json", "but": "is text"}',
    "Comma, semicolon; pipe | caret ^ dollar $1 percent %s",
    "😀🙏👍🏽👨‍👩‍👧🇮🇳🇰🇪🇧🇷",
    "   leading and trailing spaces   ",
    "Mixed: नमस्ते, Habari, Olá 😀",
    "'; DROP TABLE messages; --",
    "Non-breaking\u00a0space and zero\u200bwidth space",
    "Right to left: مرحبا بك",
    "\\N is not NULL",
)
_EDGE_NAMES = ('Bob "The Builder" O\'Neil', "Back\\slash Name", "😀 Emoji Name 🙏", "  ")

_SHARED_PHONE = "919812345678"  # one person registered with every organization

_FLOWS = (
    ("Registration", ("register", "start", "जुड़ें"), ("name", "age", "district")),
    ("Feedback", ("feedback", "maoni"), ("rating", "comments")),
    ("Quiz", ("quiz", "प्रश्न"), ("q1", "q2", "score")),
    ("Help", ("help", "msaada", "ajuda"), ("topic",)),
    ('Parents\' "Check-in" \\ weekly', ("checkin",), ("mood", "child_age")),
)

_MESSAGE_TYPES = ("text", "image", "audio", "video", "document", "location", "quick_reply", "list", "sticker")
_MESSAGE_TYPE_WEIGHTS = (76, 7, 4, 3, 3, 2, 3, 1, 1)
_MEDIA_TYPES = {
    "image": ("image/jpeg", "jpg"), "audio": ("audio/ogg", "ogg"), "video": ("video/mp4", "mp4"),
    "document": ("application/pdf", "pdf"), "sticker": ("image/webp", "webp"),
}

_CONTACT_FIELDS = (("age_group", "Age Group"), ("district", "District"), ("class", "Class"))

_HISTORY_EVENTS = (
    "contact_flow_started", "contact_flow_ended", "contact_language_updated",
    "contact_fields_updated", "contact_groups_updated", "contact_status_updated",
)

_dumps = partial(json.dumps, ensure_ascii=False)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, _dumps)


def _iso(ts: datetime) -> str:
    """Glific's JSON timestamp format (Elixir DateTime.to_iso8601 on a UTC value)."""
    return ts.isoformat(timespec="microseconds") + "Z"


def _sec(ts: datetime) -> datetime:
    """Truncate to whole seconds, as Ecto does for ``:utc_datetime`` (``timestamp(0)``)."""
    return ts.replace(microsecond=0)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------

_WINDOW = timedelta(days=30)


def seed(
    conn: psycopg.Connection,
    organizations: int = 3,
    messages_per_org: int = 3000,
    contacts_per_org: int = 300,
    seed: int = 42,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Fill an empty Glific-like database with realistic data for ``organizations`` tenants.

    Returns ``{table: row count}`` for every table in :data:`TABLES`.

    If ``organizations`` already has rows, nothing is inserted and the existing counts are
    returned: seeding is a one-time setup step, and re-running it must not duplicate tenants.

    Per organization: ``contacts_per_org`` contacts (the first is the organization's own
    WhatsApp number, referenced by ``organizations.contact_id``), exactly ``messages_per_org``
    messages, and proportional flow runs, flow results, profiles, tickets and contact history.
    Organizations get distinct timezones (``Asia/Kolkata``, ``Africa/Nairobi``,
    ``America/Sao_Paulo``, then others) and languages. Rows of every table are inserted
    round-robin across organizations so that ids interleave, as they do in production.

    Timestamps are naive UTC within the 30 days before ``now`` (default: the current time);
    content and ids are deterministic for a given ``seed`` and ``now`` on a fresh database.
    Runs in one transaction and uses ``COPY`` for speed.
    """
    if organizations < 1 or contacts_per_org < 1 or messages_per_org < 0:
        raise ValueError("need at least one organization and one contact per organization")
    if now is None:
        now = datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute("SELECT EXISTS (SELECT FROM organizations)")
        if not cur.fetchone()[0]:
            _Seeder(cur, random.Random(seed), now).run(organizations, messages_per_org, contacts_per_org)
        return _counts(cur)


def _counts(cur: psycopg.Cursor) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        counts[table] = cur.fetchone()[0]
    return counts


class _Seeder:
    """Builds and copies the rows; one instance per :func:`seed` call."""

    def __init__(self, cur: psycopg.Cursor, rng: random.Random, now: datetime) -> None:
        self.cur = cur
        self.rng = rng
        self.end = now - timedelta(minutes=1)  # leaves "now" to live traffic
        self.start = self.end - _WINDOW

    def run(self, n_orgs: int, messages_per_org: int, contacts_per_org: int) -> None:
        orgs = [self._org_spec(o) for o in range(n_orgs)]
        org_ids = self._reserve("organizations", [1] * n_orgs)
        for org, ids in zip(orgs, org_ids):
            org["id"] = ids[0]

        contact_ids = self._reserve("contacts", [contacts_per_org] * n_orgs)
        flow_ids = self._reserve("flows", [len(_FLOWS)] * n_orgs)
        for org, c_ids, f_ids in zip(orgs, contact_ids, flow_ids):
            org["contact_ids"] = c_ids
            org["contact_times"] = [self.start] + sorted(
                self.start + self.rng.uniform(0, 20) * timedelta(days=1) for _ in c_ids[1:]
            )
            org["flows"] = [
                {"id": f_id, "uuid": _uuid(self.rng), "spec": spec} for f_id, spec in zip(f_ids, _FLOWS)
            ]
            org["messages"] = self._plan_messages(org, messages_per_org)

        media_ids = self._reserve("messages_media", [sum(m["media"] for m in org["messages"]) for org in orgs])
        message_ids = self._reserve("messages", [messages_per_org] * n_orgs)
        n_runs = contacts_per_org
        context_ids = self._reserve("flow_contexts", [n_runs] * n_orgs)
        result_ids = self._reserve("flow_results", [n_runs] * n_orgs)
        count_ids = self._reserve("flow_counts", [len(_FLOWS) * 4] * n_orgs)
        profile_ids = self._reserve("profiles", [contacts_per_org // 5] * n_orgs)
        ticket_ids = self._reserve("tickets", [contacts_per_org // 10] * n_orgs)
        history_ids = self._reserve("contact_histories", [contacts_per_org * 2] * n_orgs)

        rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in TABLES}
        for o, org in enumerate(orgs):
            media_rows, message_rows = self._messages(org, message_ids[o], media_ids[o])
            rows["messages_media"] += media_rows
            rows["messages"] += message_rows
            rows["contacts"] += self._contacts(org)
            rows["organizations"].append(self._organization(org))
            rows["flows"] += self._flows(org)
            context_rows, result_rows = self._flow_runs(org, context_ids[o], result_ids[o])
            rows["flow_contexts"] += context_rows
            rows["flow_results"] += result_rows
            rows["flow_counts"] += self._flow_counts(org, count_ids[o])
            rows["profiles"] += self._profiles(org, profile_ids[o])
            rows["tickets"] += self._tickets(org, ticket_ids[o])
            rows["contact_histories"] += self._histories(org, history_ids[o])

        for table in TABLES:
            self._copy(table, rows[table])
        self.cur.execute(
            "UPDATE organizations o SET contact_id = c.id FROM contacts c "
            "WHERE c.organization_id = o.id AND c.id = ANY(%s)",
            ([org["contact_ids"][0] for org in orgs],),
        )

    def _reserve(self, table: str, sizes: Sequence[int]) -> list[list[int]]:
        """Take ids from ``table``'s sequence and deal them out round-robin by organization."""
        order = [o for i in range(max(sizes, default=0)) for o, size in enumerate(sizes) if i < size]
        self.cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (table, len(order)),
        )
        ids = sorted(row[0] for row in self.cur.fetchall())
        per_org: list[list[int]] = [[] for _ in sizes]
        for o, id_ in zip(order, ids):
            per_org[o].append(id_)
        return per_org

    def _copy(self, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """COPY ``rows`` (tuples in :data:`_COLUMNS` order, id first) into ``table`` in id order."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, _COLUMNS[table]))
        )
        with self.cur.copy(statement) as copy:
            for row in sorted(rows, key=itemgetter(0)):
                copy.write_row(row)

    # -- content helpers ------------------------------------------------------------------------

    def _text(self, lang: str, direction: str) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            return rng.choice(_EDGE_TEXTS)
        if roll < 0.03:
            return ""
        pool = _TEXT[lang if rng.random() < 0.8 else "en"][direction]
        text = rng.choice(pool)
        if rng.random() < 0.15:
            text += " " + rng.choice(("😀", "🙏", "❤️", "👍🏽", "🎉"))
        return text

    def _long_text(self, lang: str) -> str:
        parts: list[str] = []
        size = self.rng.randint(4900, 5100)
        while sum(map(len, parts)) < size:
            parts.append(self.rng.choice(_TEXT[lang]["inbound"] + _EDGE_TEXTS))
        return " ".join(parts)[:size]

    def _name(self, lang: str) -> str | None:
        roll = self.rng.random()
        if roll < 0.04:
            return None
        if roll < 0.06:
            return ""
        if roll < 0.09:
            return self.rng.choice(_EDGE_NAMES)
        pools = _TEXT[lang]
        return f"{self.rng.choice(pools['first'])} {self.rng.choice(pools['last'])}"

    def _between(self, low: datetime, high: datetime) -> datetime:
        if high <= low:
            return low
        return low + (high - low) * self.rng.random()

    def _language_id(self, lang: str) -> int:
        return _LANGUAGE_IDS[lang if self.rng.random() < 0.8 else "en"]

    def _contact_at(self, org: dict[str, Any], when: datetime) -> int:
        """Local index of a random end-user contact that already existed at ``when``."""
        existing = bisect_right(org["contact_times"], when) - 1
        if len(org["contact_ids"]) == 1:
            return 0
        return self.rng.randint(1, max(existing, 1))

    # -- organizations ----------------------------------------------------------------------------

    def _org_spec(self, o: int) -> dict[str, Any]:
        name, shortcode, lang, country = _ORG_NAMES[o % len(_ORG_NAMES)]
        if o >= len(_ORG_NAMES):
            name, shortcode = f"{name} {o + 1}", f"{shortcode}{o + 1}"
        return {
            "name": name, "shortcode": shortcode, "lang": lang, "country": country,
            "timezone": _TIMEZONES[o % len(_TIMEZONES)], "phone": f"{country}90000{o:05d}",
        }

    def _organization(self, org: dict[str, Any]) -> tuple[Any, ...]:
        created = _sec(self.start - timedelta(days=1))
        setting = {
            "report_frequency": self.rng.choice(["DAILY", "WEEKLY"]),
            "low_balance_threshold": "10",
            "send_warning_mail": False,
            "run_flow_each_time": self.rng.random() < 0.5,
        }
        last = max((m["at"] for m in org["messages"]), default=None)
        return (
            org["id"], org["name"], org["shortcode"], f"admin@{org['shortcode']}.example.org",
            org["timezone"], _LANGUAGE_IDS[org["lang"]], sorted({1, _LANGUAGE_IDS[org["lang"]]}),
            True, True, "active", _jsonb(setting), last, created, created,
        )

    # -- contacts ---------------------------------------------------------------------------------

    def _contacts(self, org: dict[str, Any]) -> list[tuple[Any, ...]]:
        rng, lang = self.rng, org["lang"]
        # A bulk edit (an import, a field update) gives a third of the contacts one updated_at.
        bulk_update = self.end - timedelta(hours=2, microseconds=123456)
        phones = {org["phone"], _SHARED_PHONE}
        rows = []
        for j, (c_id, created) in enumerate(zip(org["contact_ids"], org["contact_times"])):
            stats = org["contact_stats"].get(j, {"number": 0, "last": None})
            if j == 0:
                name, phone = org["name"], org["phone"]
            else:
                name = self._name(lang)
                if j == 1:
                    phone = _SHARED_PHONE
                else:
                    phone = org["phone"]
                    while phone in phones:
                        phone = f"{org['country']}{rng.randrange(10**9, 10**10)}"
                    phones.add(phone)
            status = rng.choices(("valid", "invalid", "blocked", "failed", "processing"), (92, 3, 2, 1, 2))[0]
            bsp_status = rng.choices(("session_and_hsm", "hsm", "session", "none"), (50, 30, 10, 10))[0]
            opted_in = rng.random() < 0.85
            optin_time = _sec(created + timedelta(seconds=rng.randint(1, 600))) if opted_in else None
            opted_out = opted_in and rng.random() < 0.03
            optout_time = _sec(self._between(created, self.end)) if opted_out else None
            group_ids = None if rng.random() < 0.05 else sorted(rng.sample(range(1, 9), rng.randint(0, 3)))
            last_at = stats["last"]
            updated = max(created, last_at or created, optout_time or created) + timedelta(
                microseconds=rng.randint(0, 999_999)
            )
            if j % 3 == 0 and j > 0:
                updated = max(bulk_update, created)
            rows.append((
                c_id, name, phone, status, bsp_status, self._language_id(lang),
                rng.random() < 0.7, rng.random() < 0.8, rng.random() < 0.8, stats["number"],
                optin_time, opted_in, rng.choice(("BSP", "URL", "WA", "Import")) if opted_in else None,
                f"wamid.{rng.getrandbits(64):x}" if opted_in and rng.random() < 0.5 else None,
                optout_time, "WA" if opted_out else None, last_at, last_at, group_ids,
                _jsonb(self._contact_fields(lang, created)), _jsonb(self._contact_settings()),
                org["id"], created, min(updated, self.end),
            ))
        return rows

    def _contact_fields(self, lang: str, created: datetime) -> dict[str, Any]:
        rng, fields = self.rng, {}
        values = {
            "age_group": ("Below 10", "11 to 18", "19 or above", "१९ से ऊपर"),
            "district": _TEXT[lang]["places"],
            "class": ("7", "८", "Form 2", "9º ano", ""),
        }
        for key, label in _CONTACT_FIELDS:
            if rng.random() < 0.7:
                fields[key] = {
                    "type": "string", "label": label, "value": rng.choice(values[key]),
                    "inserted_at": _iso(created),
                }
        if rng.random() < 0.1:
            fields["notes"] = {
                "type": "string", "label": "Notes", "value": rng.choice(_EDGE_TEXTS), "inserted_at": None,
            }
        return fields

    def _contact_settings(self) -> dict[str, Any]:
        if self.rng.random() < 0.8:
            return {}
        return {"preferences": {"reminders": self.rng.random() < 0.5, "time": "evening"}, "tags": ["vip", "बीटा"]}

    # -- flows --------------------------------------------------------------------------------

    def _flows(self, org: dict[str, Any]) -> list[tuple[Any, ...]]:
        rows = []
        for flow in org["flows"]:
            name, keywords, _ = flow["spec"]
            created = self.start + timedelta(minutes=self.rng.randint(0, 600))
            updated = self._between(created, self.end)
            rows.append((
                flow["id"], name, flow["uuid"], "13.2.0", "message", list(keywords),
                self.rng.random() < 0.2, self.rng.random() < 0.9, name == "Feedback", name == "Registration",
                False, False, None if self.rng.random() < 0.5 else f"{name} — {org['name']} 😀",
                None, org["id"], created, updated,
            ))
        return rows

    # -- messages -------------------------------------------------------------------------------

    def _plan_messages(self, org: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """Decide every message's time, contact, direction and type; ids come later."""
        rng = self.rng
        times = sorted(self._between(self.start + timedelta(hours=1), self.end) for _ in range(count))
        long_positions = set(rng.sample(range(count), min(3, count)))
        plans = []
        for i, when in enumerate(times):
            if rng.random() < 0.005:
                when -= timedelta(hours=rng.uniform(1, 3))  # committed late: old time, new id
            msg_type = "text" if i in long_positions else rng.choices(_MESSAGE_TYPES, _MESSAGE_TYPE_WEIGHTS)[0]
            plans.append({
                "at": _sec(when), "contact": self._contact_at(org, when), "type": msg_type,
                "direction": "inbound" if rng.random() < 0.45 else "outbound",
                "long": i in long_positions, "media": msg_type in _MEDIA_TYPES,
            })
        return plans

    def _messages(
        self, org: dict[str, Any], ids: list[int], media_ids: Iterable[int]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        rng, lang = self.rng, org["lang"]
        media_ids = iter(media_ids)
        bot_id = org["contact_ids"][0]
        stats: dict[int, dict[str, Any]] = {}
        last_outbound: dict[int, tuple[int, str | None]] = {}
        media_rows, rows = [], []
        for m_id, plan in zip(ids, org["messages"]):
            when, j, msg_type, direction = plan["at"], plan["contact"], plan["type"], plan["direction"]
            contact_id = org["contact_ids"][j]
            contact = stats.setdefault(j, {"number": 0, "last": None})
            contact["number"] += 1
            contact["last"] = max(contact["last"] or when, when)
            inbound = direction == "inbound"

            body: str | None = self._long_text(lang) if plan["long"] else self._text(lang, direction)
            media_id = None
            if plan["media"]:
                media_id = next(media_ids)
                media_rows.append(self._media(org, media_id, msg_type, direction, when, body))
                body = rng.choice((None, "", body))

            if inbound:
                status, bsp_status = "received", "delivered"
            elif when < self.end - timedelta(days=1):
                status = rng.choices(("read", "delivered", "error", "sent"), (70, 20, 5, 5))[0]
                bsp_status = status
            else:
                status = rng.choice(("enqueued", "sent", "delivered", "read"))
                bsp_status = status
            delay = {"enqueued": 0, "sent": 2, "delivered": 30, "read": 3600, "error": 5}.get(status, 0)
            updated = min(when + timedelta(seconds=rng.randint(0, delay)), _sec(self.end))

            bsp_message_id = None if status == "enqueued" else (
                f"wamid.HBgM{rng.getrandbits(80):X}" if inbound else str(_uuid(rng))
            )
            errors: dict[str, Any] | None = {}
            if status == "error":
                errors = {
                    "message": "Could not send message to contact 😞",
                    "payload": {"payload": {"code": 1002, "reason": "Number Does Not Exists On WhatsApp",
                                            "type": "message-event"}},
                }
            elif rng.random() < 0.02:
                errors = None

            flow = rng.choice(org["flows"]) if rng.random() < (0.3 if inbound else 0.5) else None
            is_hsm = not inbound and rng.random() < 0.1
            interactive = self._interactive(lang, msg_type) if msg_type in ("quick_reply", "list") else {}
            context_id = context_message_id = None
            if inbound and j in last_outbound and rng.random() < 0.1:
                context_message_id, context_id = last_outbound[j]
            if not inbound:
                last_outbound[j] = (m_id, bsp_message_id)
            send_at = when + timedelta(minutes=rng.randint(1, 120)) if not inbound and rng.random() < 0.05 else None

            rows.append((
                m_id, _uuid(rng), body, msg_type, direction, status, bsp_message_id, bsp_status,
                None if errors is None else _jsonb(errors), contact["number"],
                contact_id if inbound else bot_id, bot_id if inbound else contact_id, contact_id,
                rng.randint(1, 5) if not inbound and rng.random() < 0.15 else None,
                flow["id"] if flow else None, media_id, is_hsm, rng.randint(1, 20) if is_hsm else None,
                rng.randint(1, 10) if interactive and not inbound else None, _jsonb(interactive),
                send_at, None if inbound or status == "enqueued" else when + timedelta(seconds=1),
                context_id, context_message_id,
                rng.randint(1, 8) if not inbound and rng.random() < 0.02 else None,
                rng.choice(("Yes", "No", "Age", "उम्र", "Idade", "Umri")) if inbound and flow else None,
                inbound and rng.random() < 0.8, org["id"], when, max(when, updated),
            ))
        org["contact_stats"] = stats
        return media_rows, rows

    def _media(
        self, org: dict[str, Any], media_id: int, msg_type: str, direction: str, when: datetime, caption: str | None
    ) -> tuple[Any, ...]:
        rng = self.rng
        content_type, ext = _MEDIA_TYPES[msg_type]
        token = f"{rng.getrandbits(64):016x}"
        url = f"https://filemanager.gupshup.io/wa/{token}/{msg_type}.{ext}?download=false&name=ñ%20file"
        return (
            media_id, url, url, None if rng.random() < 0.5 else f"{url}&thumb=1",
            caption if rng.random() < 0.6 else None, token if direction == "inbound" else None,
            f"https://storage.googleapis.com/{org['shortcode']}/outbound/{token}.{ext}" if rng.random() < 0.7 else None,
            content_type, False, direction, org["id"], when, when,
        )

    def _interactive(self, lang: str, msg_type: str) -> dict[str, Any]:
        yes = self.rng.choice(_TEXT[lang]["yes"])
        if msg_type == "quick_reply":
            return {
                "type": "quick_reply",
                "content": {"type": "text", "text": self.rng.choice(_TEXT[lang]["outbound"]), "header": None},
                "options": [{"type": "text", "title": yes}, {"type": "text", "title": "No / ❌"}],
            }
        return {
            "type": "list", "title": "Menu 📋", "body": "Choose a topic",
            "globalButtons": [{"type": "text", "title": "Open"}],
            "items": [{"title": "Section \"A\"", "subtitle": "", "options": [
                {"type": "text", "title": place, "description": f"{place} \\ info"}
                for place in _TEXT[lang]["places"][:3]
            ]}],
        }

    # -- flow runs ------------------------------------------------------------------------------

    def _results(self, org: dict[str, Any], keys: Sequence[str], when: datetime) -> dict[str, Any]:
        rng, lang = self.rng, org["lang"]
        answers = {
            "name": lambda: self._name(lang) or "",
            "age": lambda: rng.choice(("23", "17", "१९", "abc", "")),
            "district": lambda: rng.choice(_TEXT[lang]["places"]),
            "rating": lambda: rng.choice(("5", "4", "⭐⭐⭐", "1")),
            "comments": lambda: self._text(lang, "inbound"),
            "q1": lambda: rng.choice(_TEXT[lang]["yes"]),
            "q2": lambda: rng.choice(("12", "twelve", "बारह")),
            "score": lambda: str(rng.randint(0, 10)),
            "topic": lambda: rng.choice(("Certificate", "Registration", "Outro", "मदद")),
            "mood": lambda: rng.choice(("😀", "😐", "😞")),
            "child_age": lambda: str(rng.randint(1, 12)),
        }
        results: dict[str, Any] = {}
        for key in keys:
            if rng.random() < 0.15:
                continue  # unanswered
            value = answers[key]()
            result: dict[str, Any] = {
                "input": value,
                "category": "Has Number" if value.isdigit() else rng.choice(("All Responses", "Other", "Yes")),
                "inserted_at": _iso(when),
            }
            if rng.random() < 0.2:
                result["interactive"] = {"id": str(rng.randint(1, 3)), "title": value, "postbackText": None}
            if rng.random() < 0.1:
                result["intent"] = None
            results[key] = result
        return results

    def _flow_runs(
        self, org: dict[str, Any], context_ids: list[int], result_ids: list[int]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        rng = self.rng
        contexts, results = [], []
        for k, (ctx_id, res_id) in enumerate(zip(context_ids, result_ids)):
            flow = rng.choice(org["flows"])
            started = self._between(self.start, self.end)
            j = self._contact_at(org, started)
            answers = self._results(org, flow["spec"][2], started)
            completed = _sec(self._between(started, self.end)) if rng.random() < 0.8 else None
            inserted = _sec(started)
            updated = completed or inserted
            recent = [
                _jsonb({
                    "message": self._text(org["lang"], "inbound"), "date": _iso(started),
                    "node_uuid": str(_uuid(rng)),
                })
                for _ in range(rng.randint(0, 3))
            ]
            outbound = [_jsonb({"message": self._text(org["lang"], "outbound"), "date": _iso(started)})]
            contexts.append((
                ctx_id, _uuid(rng), flow["uuid"], flow["id"], org["contact_ids"][j],
                context_ids[rng.randrange(k)] if k and rng.random() < 0.1 else None,
                _jsonb(answers), "draft" if rng.random() < 0.05 else "published",
                None if completed or rng.random() < 0.7 else _sec(started + timedelta(hours=1)), completed,
                flow["spec"][0] == "Feedback", rng.random() < 0.05, rng.random() < 0.03,
                recent, outbound, None, org["id"], inserted, updated,
            ))
            results.append((
                res_id, _jsonb(answers), flow["uuid"], rng.randint(1, 12), ctx_id, org["contact_ids"][j],
                flow["id"], None, org["id"], started, max(started, (completed or started) + timedelta(microseconds=1)),
            ))
        return contexts, results

    def _flow_counts(self, org: dict[str, Any], ids: list[int]) -> list[tuple[Any, ...]]:
        rng, rows = self.rng, []
        ids_iter = iter(ids)
        for flow in org["flows"]:
            nodes = [_uuid(rng) for _ in range(4)]
            for position, node in enumerate(nodes):
                created = _sec(self._between(self.start, self.end))
                messages = [
                    _jsonb({"message": self._text(org["lang"], "inbound"), "date": _iso(created)})
                    for _ in range(rng.randint(0, 5))
                ]
                rows.append((
                    next(ids_iter), node, nodes[position + 1] if position < 3 else None, flow["uuid"],
                    flow["id"], "node" if position < 3 else "exit", rng.randint(1, 500), messages,
                    org["id"], created, _sec(self._between(created, self.end)),
                ))
        return rows

    # -- profiles, tickets, history -------------------------------------------------------------

    def _profiles(self, org: dict[str, Any], ids: list[int]) -> list[tuple[Any, ...]]:
        rng, rows = self.rng, []
        owners = rng.sample(range(1, len(org["contact_ids"])), min(len(ids), len(org["contact_ids"]) - 1))
        for p_id, j in zip(ids, owners):
            created = _sec(self._between(org["contact_times"][j], self.end))
            fields = {"class": {"type": "string", "label": "Class", "value": rng.choice(("5", "७", "Form 1")),
                                "inserted_at": _iso(created)}}
            rows.append((
                p_id, self._name(org["lang"]), rng.choice(("Parent", "Student", "Mzazi", "Aluno", "छात्र")),
                _jsonb(fields), self._language_id(org["lang"]), org["contact_ids"][j], rng.random() < 0.95,
                rng.random() < 0.5, org["id"], created, _sec(self._between(created, self.end)),
            ))
        return rows

    def _tickets(self, org: dict[str, Any], ids: list[int]) -> list[tuple[Any, ...]]:
        rng, rows = self.rng, []
        for t_id in ids:
            created = _sec(self._between(self.start, self.end))
            closed = rng.random() < 0.5
            rows.append((
                t_id, self._text(org["lang"], "inbound"),
                rng.choice(("Certificate", "Registration issue", "Pagamento", "मदद", "Technical \"bug\"")),
                "closed" if closed else "open",
                rng.choice(("Resolved on call ☎️", "Duplicate of #12", "C:\\temp\\log.txt", "")) if closed else None,
                org["contact_ids"][self._contact_at(org, created)], rng.randint(1, 5) if closed else None,
                rng.randint(1, 50), rng.choice(org["flows"])["id"] if rng.random() < 0.3 else None,
                org["id"], created, _sec(self._between(created, self.end)) if closed else created,
            ))
        return rows

    def _histories(self, org: dict[str, Any], ids: list[int]) -> list[tuple[Any, ...]]:
        rng, rows = self.rng, []
        for h_id in ids:
            at = self._between(self.start, self.end)
            event = rng.choice(_HISTORY_EVENTS)
            flow = rng.choice(org["flows"])
            if event.startswith("contact_flow"):
                label = f"Flow {'Started' if event.endswith('started') else 'Ended'}: {flow['spec'][0]}"
                meta = {"flow": {"id": flow["id"], "name": flow["spec"][0], "uuid": str(flow["uuid"])},
                        "context_id": rng.randint(1, 10_000), "source": "Glific"}
            elif event == "contact_language_updated":
                label, meta = "Changed contact language to हिन्दी", {"language": {"old": "English", "new": "हिन्दी"}}
            elif event == "contact_groups_updated":
                label = "Added to collection: \"Beta\" testers"
                meta = {"group": {"id": rng.randint(1, 8), "label": "\"Beta\" testers", "uuid": str(_uuid(rng))}}
            else:
                label = f"{event.replace('_', ' ').capitalize()} 😀"
                meta = {"fields": {"district": {"old": None, "new": "Pune"}}}
            rows.append((
                h_id, event, label, _jsonb(meta), _sec(at), org["contact_ids"][self._contact_at(org, at)],
                None, org["id"], at, at,
            ))
        return rows


_COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": (
        "id", "name", "shortcode", "email", "timezone", "default_language_id", "active_language_ids",
        "is_active", "is_approved", "status", "setting", "last_communication_at", "inserted_at", "updated_at",
    ),
    "contacts": (
        "id", "name", "phone", "status", "bsp_status", "language_id", "is_org_read", "is_org_replied",
        "is_contact_replied", "last_message_number", "optin_time", "optin_status", "optin_method",
        "optin_message_id", "optout_time", "optout_method", "last_message_at", "last_communication_at",
        "group_ids", "fields", "settings", "organization_id", "inserted_at", "updated_at",
    ),
    "flows": (
        "id", "name", "uuid", "version_number", "flow_type", "keywords", "ignore_keywords", "is_active",
        "is_background", "is_pinned", "respond_other", "respond_no_response", "description", "tag_id",
        "organization_id", "inserted_at", "updated_at",
    ),
    "messages_media": (
        "id", "url", "source_url", "thumbnail", "caption", "provider_media_id", "gcs_url", "content_type",
        "is_template_media", "flow", "organization_id", "inserted_at", "updated_at",
    ),
    "messages": (
        "id", "uuid", "body", "type", "flow", "status", "bsp_message_id", "bsp_status", "errors",
        "message_number", "sender_id", "receiver_id", "contact_id", "user_id", "flow_id", "media_id",
        "is_hsm", "template_id", "interactive_template_id", "interactive_content", "send_at", "sent_at",
        "context_id", "context_message_id", "group_id", "flow_label", "is_read", "organization_id",
        "inserted_at", "updated_at",
    ),
    "flow_contexts": (
        "id", "node_uuid", "flow_uuid", "flow_id", "contact_id", "parent_id", "results", "status",
        "wakeup_at", "completed_at", "is_background_flow", "is_await_result", "is_killed",
        "recent_inbound", "recent_outbound", "profile_id", "organization_id", "inserted_at", "updated_at",
    ),
    "flow_results": (
        "id", "results", "flow_uuid", "flow_version", "flow_context_id", "contact_id", "flow_id",
        "profile_id", "organization_id", "inserted_at", "updated_at",
    ),
    "flow_counts": (
        "id", "uuid", "destination_uuid", "flow_uuid", "flow_id", "type", "count", "recent_messages",
        "organization_id", "inserted_at", "updated_at",
    ),
    "profiles": (
        "id", "name", "type", "fields", "language_id", "contact_id", "is_active", "is_default",
        "organization_id", "inserted_at", "updated_at",
    ),
    "tickets": (
        "id", "body", "topic", "status", "remarks", "contact_id", "user_id", "message_number", "flow_id",
        "organization_id", "inserted_at", "updated_at",
    ),
    "contact_histories": (
        "id", "event_type", "event_label", "event_meta", "event_datetime", "contact_id", "profile_id",
        "organization_id", "inserted_at", "updated_at",
    ),
}
"""The columns :class:`_Seeder` writes, in the order its row tuples list them."""
