"""Deterministic sample data for the local stack and the tests, on Glific's real schema.

Every row goes in through :mod:`glific_bq.local.glific_writes`, as Glific's application writes it,
and Glific's triggers do the rest (message numbers, sessions, profiles, ``updated_at`` bumps).
The seed writes the past 30 days: each write carries its own time, and the triggers run at it.

The data is built to break careless sync code: ids interleave across organizations (rows of
every table are inserted round-robin), the same phone number exists in every organization,
texts mix Hindi, Swahili, Portuguese, emoji, quotes, backslashes, control characters, NULLs,
empty strings and ~5,000-character bodies, a bulk update gives a third of the contacts one
``updated_at``, a few messages carry an ``inserted_at`` older than their neighbours' (late
commits), and the organizations live in different timezones.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import chain, zip_longest
from typing import Any

import psycopg
from psycopg import sql

from glific_bq.cloak import Vault
from glific_bq.local import glific_writes as gw
from glific_bq.local.glific_schema import TENANT_TABLES, create_glific_schema

__all__ = ["TABLES", "TENANT_TABLES", "create_schema", "seed"]

TABLES: tuple[str, ...] = ("organizations", *TENANT_TABLES)
"""Every table the seed fills (``global.languages`` and ``global.providers`` aside)."""

create_schema = create_glific_schema
"""Glific's schema (see :mod:`glific_bq.local.glific_schema`)."""

# Glific's global languages: (label, label_locale, locale).
_LANGUAGES = {"en": ("English", "English", "en"), "hi": ("Hindi", "हिंदी", "hi"),
              "sw": ("Swahili", "Kiswahili", "sw"), "pt": ("Portuguese", "Português", "pt")}

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


_WINDOW = timedelta(days=30)
_STATUS_DELAY = {"enqueued": 0, "sent": 2, "delivered": 30, "read": 3600, "error": 5}
_ERROR = {"message": "Could not send message to contact 😞", "payload": {"payload": {
    "code": 1002, "reason": "Number Does Not Exists On WhatsApp", "type": "message-event"}}}
_LOCK_KEY = 0x6C1F1D


def seed(
    conn: psycopg.Connection,
    organizations: int = 3,
    messages_per_org: int = 3000,
    contacts_per_org: int = 300,
    seed: int = 42,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Fill an empty Glific database with realistic data for ``organizations`` tenants; returns
    ``{table: row count}`` for every table in :data:`TABLES`.

    If ``organizations`` already has rows, nothing is inserted and the existing counts are
    returned: seeding is a one-time setup step. Per organization: ``contacts_per_org`` contacts
    (the first is the organization's own WhatsApp number, ``organizations.contact_id``; two more
    belong to its staff users), exactly ``messages_per_org`` messages, and proportional flow
    runs, profiles, tickets, tags, collections, history… Organizations get distinct timezones
    (``Asia/Kolkata``, ``Africa/Nairobi``, ``America/Sao_Paulo``, then others) and languages.

    Timestamps are naive UTC within the 30 days before ``now`` (default: the current time);
    content and ids are deterministic for a given ``seed`` and ``now`` on a fresh database.
    Runs in one transaction.
    """
    if organizations < 1 or contacts_per_org < 3 or messages_per_org < 0:
        raise ValueError("need at least one organization and three contacts per organization")
    now = (now or datetime.now(UTC))
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if not conn.execute("SELECT EXISTS (SELECT FROM organizations)").fetchone()[0]:
            _Seeder(conn, random.Random(seed), now).run(organizations, messages_per_org, contacts_per_org)
        return {table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                for table in TABLES}


#: The demo's stand-in for Glific's ``CIPHER_KEY`` (base64 of 32 bytes). Public, for local data only.
DEMO_CIPHER_KEY = "Z2xpZmljX2JxIGRlbW8ga2V5LCBub3QgYSBzZWNyZXQ="


def enable_bigquery(conn: psycopg.Connection, cipher_key: str = DEMO_CIPHER_KEY) -> dict[int, str]:
    """Glific's BigQuery settings for the seeded organizations, as NGOs leave them: the first
    two turned BigQuery on, each with a service-account key of its own project (encrypted as
    Glific does, with ``cipher_key`` as ``CIPHER_KEY``); the third turned it on and then off
    again; any others never did. Returns ``{organization id: its project}`` of the first two.
    Only into a database without credentials: like ``seed``, a one-time step."""
    if conn.execute("SELECT EXISTS (SELECT FROM credentials)").fetchone()[0]:
        return {}
    vault = Vault.from_env({"CIPHER_KEY": cipher_key})
    organizations = conn.execute("SELECT id, shortcode FROM organizations ORDER BY id LIMIT 3").fetchall()
    projects = {}
    for n, (organization_id, shortcode) in enumerate(organizations):
        project = f"{shortcode}-analytics"
        gw.bigquery_credential(conn, organization_id, gw.service_account_key(project), vault, active=n < 2)
        if n < 2:
            projects[organization_id] = project
    return projects


def _sec(ts: datetime) -> datetime:
    return ts.replace(microsecond=0)


def _interleaved(per_org: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of every organization, round-robin: ids interleave as they do in production."""
    return [row for row in chain.from_iterable(zip_longest(*per_org)) if row is not None]


class _Seeder:
    """Builds and inserts the rows; one instance per :func:`seed` call."""

    def __init__(self, conn: psycopg.Connection, rng: random.Random, now: datetime) -> None:
        self.conn, self.rng = conn, rng
        self.end = now - timedelta(minutes=1)  # leaves "now" to live traffic
        self.start = self.end - _WINDOW

    def insert(self, table: str, build: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
        """Build each organization's rows of ``table``, insert them interleaved, and keep each
        organization's ids (in its rows' order) in ``org[table]``."""
        per_org = [[{"organization_id": org["id"], **row} for row in build(org)] for org in self.orgs]
        for row, id_ in zip(_interleaved(per_org), gw.insert(self.conn, table, _interleaved(per_org))):
            row["id"] = id_
        for org, rows in zip(self.orgs, per_org):
            org[table] = [row["id"] for row in rows]

    def run(self, n_orgs: int, messages_per_org: int, contacts_per_org: int) -> None:
        rng, created = self.rng, self.start - timedelta(days=1)
        languages = {code: gw.language(self.conn, label, locale, label_locale=local, at=created)
                     for code, (label, local, locale) in _LANGUAGES.items()}
        self.languages = languages
        self.orgs = [self._organization(o, languages, created) for o in range(n_orgs)]
        for org in self.orgs:
            org["users"] = [
                gw.user(self.conn, org["id"], f"{org['country']}80000{org['n']:03d}{u}", name, roles=roles, at=created)
                for u, (name, roles) in enumerate((("Asha Admin", ["admin"]), ("Sam Staff 😀", ["staff", "manager"])))]
            org["contact_times"] = [created, created, created] + sorted(
                self.start + rng.uniform(0, 20) * timedelta(days=1) for _ in range(contacts_per_org - 3))
            org["plans"] = self._plan_messages(org, messages_per_org)
        self.insert("contacts", self._contacts)
        for org in self.orgs:
            # the bot and the users' contacts first, then the end users
            bot, staff = org["bot"], self.conn.execute(
                "SELECT contact_id FROM users WHERE organization_id = %s ORDER BY id", (org["id"],)).fetchall()
            org["contacts"] = [bot, *(c for (c,) in staff), *org["contacts"]]
        for table, build in (
            ("groups", self._groups), ("tags", self._tags), ("contacts_fields", self._contacts_fields),
            ("flow_labels", self._flow_labels), ("saved_searches", self._saved_searches),
            ("interactive_templates", self._interactive_templates), ("session_templates", self._session_templates),
            ("profiles", self._profiles),
        ):
            self.insert(table, build)
        self._flows()
        self._activate_profiles()
        self.insert("messages_media", self._media)
        self.insert("messages", self._messages)
        for table, build in (
            ("locations", self._locations), ("messages_conversations", self._conversations),
            ("flow_contexts", self._flow_contexts), ("flow_results", self._flow_results),
            ("flow_counts", self._flow_counts), ("tickets", self._tickets), ("contact_histories", self._histories),
            ("message_broadcasts", self._broadcasts), ("message_broadcast_contacts", self._broadcast_contacts),
            ("stats", self._stats), ("trackers", self._trackers),
        ):
            self.insert(table, build)
        self._tagging_and_collections()
        self._bulk_update()

    # -- content helpers ------------------------------------------------------------------------

    def _text(self, lang: str, direction: str) -> str:
        rng, roll = self.rng, self.rng.random()
        if roll < 0.02:
            return rng.choice(_EDGE_TEXTS)
        if roll < 0.03:
            return ""
        text = rng.choice(_TEXT[lang if rng.random() < 0.8 else "en"][direction])
        return text + " " + rng.choice(("😀", "🙏", "❤️", "👍🏽", "🎉")) if rng.random() < 0.15 else text

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
        return f"{self.rng.choice(_TEXT[lang]['first'])} {self.rng.choice(_TEXT[lang]['last'])}"

    def _between(self, low: datetime, high: datetime) -> datetime:
        return low if high <= low else low + (high - low) * self.rng.random()

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _language_id(self, lang: str) -> int:
        return self.languages[lang if self.rng.random() < 0.8 else "en"]

    def _contact_at(self, org: dict[str, Any], when: datetime) -> int:
        """Index (in ``org["contacts"]``) of a random end-user contact that existed at ``when``."""
        existing = bisect_right(org["contact_times"], when) - 1
        return self.rng.randint(3, max(existing, 3)) if len(org["contact_times"]) > 3 else 0

    # -- organizations and contacts ---------------------------------------------------------------

    def _organization(self, o: int, languages: dict[str, int], created: datetime) -> dict[str, Any]:
        name, shortcode, lang, country = _ORG_NAMES[o % len(_ORG_NAMES)]
        if o >= len(_ORG_NAMES):
            name, shortcode = f"{name} {o + 1}", f"{shortcode}{o + 1}"
        org = {"n": o, "name": name, "shortcode": shortcode, "lang": lang, "country": country}
        org["id"] = gw.organization(
            self.conn, name, shortcode, f"{country}90000{o:05d}", timezone=_TIMEZONES[o % len(_TIMEZONES)],
            language_id=languages[lang], at=created, active_language_ids=sorted({languages["en"], languages[lang]}),
            signature_phrase=f"{shortcode} ✍️".encode(), out_of_office={"enabled": o % 2 == 0, "start_time": "18:00"},
            fields={"org_name": {"type": "string", "label": "Org Name", "value": name, "inserted_at": gw.iso(created)}},
        )
        org["bot"] = self.conn.execute("SELECT contact_id FROM organizations WHERE id = %s", (org["id"],)).fetchone()[0]
        return org

    def _contacts(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, lang, rows = self.rng, org["lang"], []
        phones: set[str] = set()
        values = {"age_group": ("Below 10", "11 to 18", "19 or above", "१९ से ऊपर"), "district": _TEXT[lang]["places"],
                  "class": ("7", "८", "Form 2", "9º ano", "")}
        for j, created in enumerate(org["contact_times"][3:], start=3):
            phone = _SHARED_PHONE if j == 3 else None
            while phone is None or phone in phones:
                phone = f"{org['country']}{rng.randrange(10**9, 10**10)}"
            phones.add(phone)
            opted_in = rng.random() < 0.85
            fields = gw.contact_fields({k: rng.choice(v) for k, v in values.items() if rng.random() < 0.7}, created)
            if rng.random() < 0.1:
                fields["notes"] = {"type": "string", "label": "Notes", "value": rng.choice(_EDGE_TEXTS), "inserted_at": None}
            rows.append({
                "name": self._name(lang), "phone": phone, "language_id": self._language_id(lang),
                "status": rng.choices(("valid", "invalid", "blocked", "failed", "processing"), (92, 3, 2, 1, 2))[0],
                "bsp_status": rng.choices(("session_and_hsm", "hsm", "session", "none"), (50, 30, 10, 10))[0],
                "optin_time": created + timedelta(seconds=rng.randint(1, 600)) if opted_in else None,
                "optin_status": opted_in, "optin_method": rng.choice(("BSP", "URL", "WA", "Import")) if opted_in else None,
                "optin_message_id": f"wamid.{rng.getrandbits(64):x}" if opted_in and rng.random() < 0.5 else None,
                "optout_time": None, "optout_method": None,
                "fields": fields, "settings": {} if rng.random() < 0.8 else {
                    "preferences": {"reminders": rng.random() < 0.5, "time": "evening"}, "tags": ["vip", "बीटा"]},
                "inserted_at": created, "updated_at": created,
            })
        return rows

    def _profiles(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, contacts = self.rng, org["contacts"]
        owners = rng.sample(range(3, len(contacts)), len(contacts[3:]) // 5)
        org["profile_owners"] = owners
        return [{"name": self._name(org["lang"]), "type": rng.choice(("Parent", "Student", "Mzazi", "Aluno", "छात्र")),
                 "contact_id": contacts[j], "language_id": self._language_id(org["lang"]),
                 "fields": gw.contact_fields({"class": rng.choice(("5", "७", "Form 1"))}, org["contact_times"][j]),
                 "inserted_at": org["contact_times"][j] + timedelta(minutes=5)} for j in owners]

    def _activate_profiles(self) -> None:
        """Glific switches a contact to a profile with an update of the contact."""
        for org in self.orgs:
            for j, profile in zip(org["profile_owners"], org["profiles"]):
                if self.rng.random() < 0.7:
                    gw.update(self.conn, "contacts", org["contacts"][j], at=org["contact_times"][j] + timedelta(minutes=6),
                              active_profile_id=profile)

    def _bulk_update(self) -> None:
        """An import at the end of the window: a third of each organization's contacts, one updated_at."""
        for org in self.orgs:
            ids = org["contacts"][3::3]
            gw.update(self.conn, "contacts", ids, at=self.end - timedelta(microseconds=123456),
                      settings={"imported": True, "batch": "2025-Q1 ✅"})
            for contact_id in ids[: len(ids) // 10]:  # some opted out in that import
                gw.update(self.conn, "contacts", contact_id, at=self.end - timedelta(microseconds=123456),
                          optout_time=self.end, optout_method="Import", status="invalid")

    # -- reference rows: groups, tags, fields, templates ------------------------------------------

    def _groups(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"label": label, "description": desc, "is_restricted": restricted, "inserted_at": self.start}
                for label, desc, restricted in (("Beta testers", 'The "early" group', False),
                                                ("Parents / अभिभावक", None, False), ("Staff only", "", True))]

    def _tags(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"label": label, "shortcode": code, "language_id": self.languages["en"], "keywords": keywords,
                 "is_value": code == "age", "inserted_at": self.start}
                for label, code, keywords in (("Contacts", "contacts", None), ("Important ⭐", "important", ["urgent"]),
                                              ("Age", "age", ["umri", "उम्र", "idade"]), ("Unread", "unread", []))]

    def _contacts_fields(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": name, "shortcode": code, "value_type": kind, "scope": scope, "inserted_at": self.start}
                for name, code, kind, scope in (("Age Group", "age_group", "text", "contact"),
                                                ("District", "district", "text", "contact"),
                                                ("Class", "class", "integer", "contact"),
                                                ("Org Name", "org_name", "text", "globals"))]

    def _flow_labels(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"uuid": self._uuid(), "name": name, "type": "flow", "inserted_at": self.start}
                for name in ("Age", "उम्र", "Idade \"q\"")]

    def _saved_searches(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"label": "Unread 📥", "shortcode": "Unread", "is_reserved": True, "inserted_at": self.start,
                 "args": {"filter": {"includeTags": ["unread"]}, "contactOpts": {"limit": 20}, "term": ""}}]

    def _interactive_templates(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"label": f"Menu {org['shortcode']}", "type": "quick_reply", "language_id": self.languages[org["lang"]],
                 "interactive_content": self._interactive(org["lang"], "quick_reply"), "inserted_at": self.start},
                {"label": "Location", "type": "location_request_message", "language_id": self.languages["en"],
                 "interactive_content": {"type": "location_request_message", "body": {"text": "Where are you? 📍"}},
                 "send_with_title": False, "inserted_at": self.start}]

    def _session_templates(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        lang = self.languages[org["lang"]]
        return [{"uuid": self._uuid(), "label": "Weekly report", "shortcode": "weekly_report", "is_hsm": True,
                 "body": "Dear {{1}}, your report is ready 📊", "type": "text", "number_parameters": 1,
                 "language_id": lang, "status": "APPROVED", "category": "UTILITY", "example": "Dear [Asha], …",
                 "has_buttons": True, "button_type": "quick_reply", "buttons": [{"type": "QUICK_REPLY", "text": "OK"}],
                 "translations": {"2": {"body": "प्रिय {{1}}, आपकी रिपोर्ट तैयार है"}}, "inserted_at": self.start},
                {"uuid": self._uuid(), "label": "Welcome", "shortcode": "welcome", "body": self._text(org["lang"], "outbound"),
                 "type": "text", "language_id": lang, "is_reserved": True, "inserted_at": self.start}]

    def _flows(self) -> None:
        """Flows as the editor makes them: a draft revision, published, sometimes edited and published again."""
        for spec in _FLOWS:
            for org in self.orgs:
                name, keywords, _ = spec
                created = self.start + timedelta(minutes=self.rng.randint(0, 600))
                user = org["users"][0]
                definition = {"name": name, "uuid": str(self._uuid()), "nodes": [{"uuid": str(self._uuid()), "actions": []}]}
                flow_id = gw.flow(self.conn, org["id"], name, definition=definition, user_id=user, at=created,
                                  uuid=self._uuid(), keywords=list(keywords), ignore_keywords=self.rng.random() < 0.2,
                                  is_background=name == "Feedback", is_pinned=name == "Registration")
                gw.publish_revision(self.conn, flow_id, user_id=user, at=created + timedelta(minutes=30))
                if self.rng.random() < 0.5:
                    edited = self._between(created + timedelta(hours=1), self.end)
                    gw.revision(self.conn, flow_id, {**definition, "edited": True}, user_id=user, at=edited)
                    gw.publish_revision(self.conn, flow_id, user_id=user, at=edited + timedelta(minutes=5))
                uuid_ = self.conn.execute("SELECT uuid FROM flows WHERE id = %s", (flow_id,)).fetchone()[0]
                org.setdefault("flows", []).append({"id": flow_id, "uuid": uuid_, "spec": spec})

    # -- messages ---------------------------------------------------------------------------------

    def _plan_messages(self, org: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """Every message's time, contact, direction and type, before any id exists."""
        rng = self.rng
        times = sorted(self._between(self.start + timedelta(hours=1), self.end) for _ in range(count))
        long_positions = set(rng.sample(range(count), min(3, count)))
        plans = []
        for i, when in enumerate(times):
            if rng.random() < 0.005:
                when -= timedelta(hours=rng.uniform(1, 3))  # committed late: old time, new id
            msg_type = "text" if i in long_positions else rng.choices(_MESSAGE_TYPES, _MESSAGE_TYPE_WEIGHTS)[0]
            plans.append({"at": when, "contact": self._contact_at(org, when), "type": msg_type,
                          "inbound": rng.random() < 0.45, "long": i in long_positions})
        return plans

    def _media(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for plan in org["plans"]:
            if plan["type"] in _MEDIA_TYPES:
                content_type, ext = _MEDIA_TYPES[plan["type"]]
                token = f"{self.rng.getrandbits(64):016x}"
                url = f"https://filemanager.gupshup.io/wa/{token}/{plan['type']}.{ext}?download=false&name=ñ%20file"
                plan["media"] = len(rows)
                rows.append({"url": url, "source_url": url, "thumbnail": None if self.rng.random() < 0.5 else f"{url}&thumb=1",
                             "caption": self._text(org["lang"], "inbound") if self.rng.random() < 0.6 else None,
                             "provider_media_id": token if plan["inbound"] else None, "content_type": content_type,
                             "gcs_url": f"https://storage.googleapis.com/{org['shortcode']}/{token}.{ext}"
                             if self.rng.random() < 0.7 else None, "inserted_at": plan["at"]})
        return rows

    def _messages(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, lang, rows = self.rng, org["lang"], []
        last_outbound: dict[int, str] = {}
        templates, interactive = org["session_templates"], org["interactive_templates"]
        for plan in org["plans"]:
            when, inbound, msg_type = plan["at"], plan["inbound"], plan["type"]
            body = self._long_text(lang) if plan["long"] else self._text(lang, "inbound" if inbound else "outbound")
            if "media" in plan:
                body = rng.choice((None, "", body))
            if inbound:
                status = "received"
            elif when < self.end - timedelta(days=1):
                status = rng.choices(("read", "delivered", "error", "sent"), (70, 20, 5, 5))[0]
            else:
                status = rng.choice(("enqueued", "sent", "delivered", "read"))
            bsp_id = None if status == "enqueued" else (f"wamid.HBgM{rng.getrandbits(80):X}" if inbound else str(self._uuid()))
            contact = org["contacts"][plan["contact"]]
            flow = rng.choice(org["flows"]) if rng.random() < (0.3 if inbound else 0.5) else None
            is_hsm = not inbound and rng.random() < 0.1
            row = gw.message_row(
                org["id"], contact, org["bot"], inbound=inbound, uuid=self._uuid(), body=body, type=msg_type,
                status=status, bsp_status="delivered" if inbound else status, bsp_message_id=bsp_id,
                errors=_ERROR if status == "error" else ({} if rng.random() < 0.98 else None), is_hsm=is_hsm,
                media_id=org["messages_media"][plan["media"]] if "media" in plan else None,
                flow_id=flow["id"] if flow else None,
                flow_label=rng.choice(("Yes", "No", "Age", "उम्र", "Idade", "Umri")) if inbound and flow else None,
                template_id=templates[0] if is_hsm else None,
                interactive_template_id=interactive[0] if msg_type == "quick_reply" and not inbound else None,
                interactive_content=self._interactive(lang, msg_type) if msg_type in ("quick_reply", "list") else {},
                user_id=rng.choice(org["users"]) if not inbound and rng.random() < 0.15 else None,
                context_id=last_outbound.get(contact) if inbound and rng.random() < 0.1 else None,
                send_at=when + timedelta(minutes=rng.randint(1, 120)) if not inbound and rng.random() < 0.05 else None,
                sent_at=None if inbound or status == "enqueued" else when + timedelta(seconds=1),
                inserted_at=when, updated_at=min(when + timedelta(seconds=rng.randint(0, _STATUS_DELAY.get(status, 0))),
                                                 self.end))
            if not inbound and bsp_id:
                last_outbound[contact] = bsp_id
            rows.append(row)
        return rows

    def _interactive(self, lang: str, msg_type: str) -> dict[str, Any]:
        yes = self.rng.choice(_TEXT[lang]["yes"])
        if msg_type == "quick_reply":
            return {"type": "quick_reply", "options": [{"type": "text", "title": yes}, {"type": "text", "title": "No / ❌"}],
                    "content": {"type": "text", "text": self.rng.choice(_TEXT[lang]["outbound"]), "header": None}}
        return {"type": "list", "title": "Menu 📋", "body": "Choose a topic", "globalButtons": [{"type": "text", "title": "Open"}],
                "items": [{"title": 'Section "A"', "subtitle": "", "options": [
                    {"type": "text", "title": place, "description": f"{place} \\ info"}
                    for place in _TEXT[lang]["places"][:3]]}]}

    def _message_rows(self, org: dict[str, Any], where: Callable[[dict[str, Any]], bool]):
        for plan, message_id in zip(org["plans"], org["messages"]):
            if where(plan):
                yield plan, message_id, org["contacts"][plan["contact"]]

    def _locations(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"contact_id": contact, "message_id": message, "latitude": self.rng.uniform(-30, 30),
                 "longitude": self.rng.uniform(-80, 90), "inserted_at": plan["at"]}
                for plan, message, contact in self._message_rows(org, lambda p: p["type"] == "location")]

    def _conversations(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"conversation_id": f"conv-{self.rng.getrandbits(48):x}", "deduction_type": "UTILITY",
                 "is_billable": self.rng.random() < 0.5, "message_id": message, "payload": {"type": "template"},
                 "inserted_at": plan["at"]}
                for plan, message, _ in self._message_rows(org, lambda p: not p["inbound"] and self.rng.random() < 0.05)]

    # -- flow runs --------------------------------------------------------------------------------

    def _results(self, org: dict[str, Any], keys: Sequence[str], when: datetime) -> dict[str, Any]:
        rng, lang = self.rng, org["lang"]
        answers = {
            "name": lambda: self._name(lang) or "", "age": lambda: rng.choice(("23", "17", "१९", "abc", "")),
            "district": lambda: rng.choice(_TEXT[lang]["places"]), "rating": lambda: rng.choice(("5", "4", "⭐⭐⭐", "1")),
            "comments": lambda: self._text(lang, "inbound"), "q1": lambda: rng.choice(_TEXT[lang]["yes"]),
            "q2": lambda: rng.choice(("12", "twelve", "बारह")), "score": lambda: str(rng.randint(0, 10)),
            "topic": lambda: rng.choice(("Certificate", "Registration", "Outro", "मदद")),
            "mood": lambda: rng.choice(("😀", "😐", "😞")), "child_age": lambda: str(rng.randint(1, 12)),
        }
        results: dict[str, Any] = {}
        for key in keys:
            if rng.random() < 0.15:
                continue  # unanswered
            value = answers[key]()
            results[key] = {"input": value, "inserted_at": gw.iso(when),
                            "category": "Has Number" if value.isdigit() else rng.choice(("All Responses", "Other", "Yes"))}
            if rng.random() < 0.2:
                results[key]["interactive"] = {"id": str(rng.randint(1, 3)), "title": value, "postbackText": None}
        return results

    def _flow_contexts(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, rows, org["runs"] = self.rng, [], []
        for _ in range(len(org["contacts"]) - 3):
            flow, started = rng.choice(org["flows"]), self._between(self.start, self.end)
            completed = self._between(started, self.end) if rng.random() < 0.8 else None
            answers = self._results(org, flow["spec"][2], started)
            org["runs"].append((flow, org["contacts"][self._contact_at(org, started)], answers, started, completed))
            rows.append({
                "node_uuid": self._uuid(), "flow_uuid": flow["uuid"], "flow_id": flow["id"], "contact_id": org["runs"][-1][1],
                "results": answers, "status": "draft" if rng.random() < 0.05 else "published",
                "parent_id": None, "wakeup_at": None if completed or rng.random() < 0.7 else started + timedelta(hours=1),
                "completed_at": completed, "is_background_flow": flow["spec"][0] == "Feedback",
                "is_await_result": rng.random() < 0.05, "is_killed": rng.random() < 0.03,
                "recent_inbound": [{"message": self._text(org["lang"], "inbound"), "date": gw.iso(started),
                                    "node_uuid": str(self._uuid())} for _ in range(rng.randint(0, 3))],
                "recent_outbound": [{"message": self._text(org["lang"], "outbound"), "date": gw.iso(started)}],
                "inserted_at": started, "updated_at": max(_sec(started), _sec(completed or started)),
            })
        return rows

    def _flow_results(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"results": answers, "flow_uuid": flow["uuid"], "flow_version": self.rng.randint(1, 12),
                 "flow_context_id": context, "contact_id": contact, "flow_id": flow["id"], "inserted_at": started,
                 "updated_at": max(started, (completed or started) + timedelta(microseconds=1))}
                for (flow, contact, answers, started, completed), context in zip(org["runs"], org["flow_contexts"])]

    def _flow_counts(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for flow in org["flows"]:
            nodes = [self._uuid() for _ in range(4)]
            for position, node in enumerate(nodes):
                created = self._between(self.start, self.end)
                rows.append({"uuid": node, "destination_uuid": nodes[position + 1] if position < 3 else None,
                             "flow_uuid": flow["uuid"], "flow_id": flow["id"], "type": "node" if position < 3 else "exit",
                             "count": self.rng.randint(1, 500), "inserted_at": created,
                             "updated_at": self._between(created, self.end),
                             "recent_messages": [{"message": self._text(org["lang"], "inbound"), "date": gw.iso(created)}
                                                 for _ in range(self.rng.randint(0, 5))]})
        return rows

    # -- tickets, history, broadcasts, stats -------------------------------------------------------

    def _tickets(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, rows = self.rng, []
        for _ in range(len(org["contacts"]) // 10):
            created, closed = self._between(self.start, self.end), rng.random() < 0.5
            rows.append({
                "body": self._text(org["lang"], "inbound"), "status": "closed" if closed else "open",
                "topic": rng.choice(("Certificate", "Registration issue", "Pagamento", "मदद", 'Technical "bug"')),
                "remarks": rng.choice(("Resolved on call ☎️", "Duplicate of #12", "C:\\temp\\log.txt", "")) if closed else None,
                "contact_id": org["contacts"][self._contact_at(org, created)],
                "user_id": rng.choice(org["users"]) if closed else None,
                "inserted_at": created, "updated_at": self._between(created, self.end) if closed else created})
        return rows

    def _histories(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, rows = self.rng, []
        for _ in range(2 * (len(org["contacts"]) - 3)):
            at, event, flow = self._between(self.start, self.end), rng.choice(_HISTORY_EVENTS), rng.choice(org["flows"])
            if event.startswith("contact_flow"):
                label = f"Flow {'Started' if event.endswith('started') else 'Ended'}: {flow['spec'][0]}"
                meta = {"flow": {"id": flow["id"], "name": flow["spec"][0], "uuid": str(flow["uuid"])},
                        "context_id": rng.randint(1, 10_000), "source": "Glific"}
            elif event == "contact_language_updated":
                label, meta = "Changed contact language to हिन्दी", {"language": {"old": "English", "new": "हिन्दी"}}
            elif event == "contact_groups_updated":
                label, meta = 'Added to collection: "Beta" testers', {"group": {"id": org["groups"][0], "label": '"Beta" testers'}}
            else:
                label, meta = f"{event.replace('_', ' ').capitalize()} 😀", {"fields": {"district": {"old": None, "new": "Pune"}}}
            rows.append({"event_type": event, "event_label": label, "event_meta": meta, "event_datetime": at,
                         "contact_id": org["contacts"][self._contact_at(org, at)], "inserted_at": at})
        return rows

    def _broadcasts(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        started = self._between(self.start, self.end - timedelta(days=1))
        return [{"flow_id": org["flows"][0]["id"], "group_id": org["groups"][0], "user_id": org["users"][0],
                 "type": "flow", "started_at": started, "completed_at": started + timedelta(hours=1),
                 "message_params": None, "default_results": {"source": "broadcast"}, "inserted_at": started,
                 "updated_at": started + timedelta(hours=1)}]

    def _broadcast_contacts(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        started = self.start + timedelta(days=1)
        return [{"message_broadcast_id": org["message_broadcasts"][0], "contact_id": contact,
                 "status": self.rng.choice(("processed", "pending")), "processed_at": started, "inserted_at": started}
                for contact in org["contacts"][3:13]]

    def _stats(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        rng, days = self.rng, (self.end - self.start).days
        return [{"period": "day", "date": (self.start + timedelta(days=d)).date(), "hour": 0,
                 "contacts": rng.randint(0, 300), "active": rng.randint(0, 100), "optin": rng.randint(0, 50),
                 "optout": rng.randint(0, 3), "messages": rng.randint(0, 400), "inbound": rng.randint(0, 200),
                 "outbound": rng.randint(0, 200), "hsm": rng.randint(0, 20), "flows_started": rng.randint(0, 40),
                 "flows_completed": rng.randint(0, 30), "users": 2,
                 "inserted_at": self.start + timedelta(days=d + 1)} for d in range(days)]

    def _trackers(self, org: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"period": "day", "date": date(self.start.year, self.start.month, self.start.day) + timedelta(days=d),
                 "counts": {"messages_inbound": self.rng.randint(0, 99), "flows_started": self.rng.randint(0, 9)},
                 "inserted_at": self.start + timedelta(days=d + 1)} for d in range(3)]

    def _tagging_and_collections(self) -> None:
        """Tags and collections change after the rows they tag: each bumps the tagged row's updated_at."""
        rng = self.rng
        for org in self.orgs:
            for plan, message, _ in self._message_rows(org, lambda p: p["inbound"] and rng.random() < 0.03):
                gw.tag_message(self.conn, org["id"], message, rng.choice(org["tags"]),
                               at=min(plan["at"] + timedelta(minutes=rng.randint(1, 90)), self.end))
            for j, contact in enumerate(org["contacts"][3:], start=3):
                joined = self._between(org["contact_times"][j], self.end)
                if rng.random() < 0.3:
                    gw.add_to_group(self.conn, org["id"], contact, rng.choice(org["groups"]), at=joined)
                if rng.random() < 0.1:
                    gw.tag_contact(self.conn, org["id"], contact, org["tags"][1], at=joined, value=rng.choice((None, "vip")))
