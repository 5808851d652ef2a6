"""The view definitions: each report's SQL, inputs and documentation in one value
(``ReportView``), the ``_latest`` view's SELECT, and Glific's ``flat_fields`` procedure. The
package docstring (``glific_bq.views``) says what they hold and why."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from glific_bq import dedup, identifiers
from glific_bq.layouts import Layout

_table_name = identifiers.checked_table
_dataset_ref = identifiers.checked_dataset_ref


#: ``<table>_latest``: the newest version of each row of ``<table>``.
LATEST_SUFFIX = "_latest"

#: A ``_latest`` view's SELECT: the newest version of each key by the dedup's own total order
#: (``dedup.NEWEST_FIRST``, ``dedup.IS_NEWEST_VERSION``), so that the views and the dedup pass
#: keep the same version of every id.
LATEST_VIEW = "SELECT * FROM `{table}`\nQUALIFY " + dedup.IS_NEWEST_VERSION

#: An input of a report's SQL: ``{messages}``.
_INPUT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class ViewColumn:
    """One column of a report view, as documented in BigQuery and in the docs page."""

    name: str
    type: str  # the BigQuery type the view returns
    description: str


@dataclass(frozen=True)
class ReportView:
    """A report view: its SQL, what it reads, and its documentation, in one value.

    ``sql`` names its inputs ``{<table>}``: each becomes the quoted id of that table's ``_latest``
    view (other braces are left alone). ``columns`` lists what the SELECT returns, in order: they
    are the view's column list in the DDL, so a mismatch fails at creation.
    """

    name: str
    description: str
    reads: tuple[str, ...]
    columns: tuple[ViewColumn, ...]
    sql: str

    def select(self, dataset_ref: str) -> str:
        """The SELECT over ``dataset_ref``'s ``_latest`` views."""
        ids = {t: f"`{_dataset_ref(dataset_ref)}.{latest_view_name(t)}`" for t in self.reads}
        return _INPUT.sub(lambda m: ids.get(m[1], m[0]), self.sql.strip())


def _columns(*rows: tuple[str, str, str]) -> tuple[ViewColumn, ...]:
    return tuple(ViewColumn(*row) for row in rows)


_LOCAL = "local time of the organization"

#: Error codes and messages inside ``messages.errors``, most specific first. Shapes handled:
#: Glific/Gupshup ``{"message": ..., "payload": {"payload": {"code": 1002, "reason": ...}}}`` and
#: ``{"message": ..., "payload": {"code": 1002}}``; WhatsApp Cloud API ``{"error": {"code": 131026,
#: "message": ..., "error_data": {"details": ...}}}``; flat ``{"code": ..., "message": ...}``;
#: webhook arrays ``[{"code": ..., "title": ..., "message": ...}]``.
_ERROR_CODE_PATHS = ("$.payload.payload.code", "$.payload.code", "$.error.code", "$.code", "$[0].code")
_ERROR_MESSAGE_PATHS = (
    "$.payload.payload.reason", "$.payload.reason", "$.error.error_data.details", "$.error.message",
    "$[0].error_data.details", "$[0].message", "$[0].title", "$.message",
)


def _first_of(json_column: str, paths: Sequence[str]) -> str:
    return "COALESCE(" + ", ".join(f"JSON_VALUE({json_column}, '{p}')" for p in paths) + ")"


_CONTACTS_MESSAGES = ReportView(
    name="contacts_messages",
    description="Every message (latest state) with its contact's name, phone and status: Glific's classic "
    "contacts_messages view. One row per message.",
    reads=("messages", "contacts"),
    columns=_columns(
        ("id", "INT64", "Message id"),
        ("uuid", "STRING", "Message UUID"),
        ("body", "STRING", "Text of the message (caption for media)"),
        ("type", "STRING", "text, image, audio, video, document, location, quick_reply, list, sticker, hsm, …"),
        ("flow", "STRING", "Direction: inbound (from the contact) or outbound (to the contact)"),
        ("status", "STRING", "Glific status: enqueued, sent, delivered, read, received, error, …"),
        ("bsp_status", "STRING", "Status reported by the WhatsApp provider (BSP)"),
        ("errors", "STRING", "Delivery errors as JSON text ({} when none)"),
        ("message_number", "INT64", "Position of the message in the conversation with this contact"),
        ("sender_id", "INT64", "Contact id of the sender"),
        ("receiver_id", "INT64", "Contact id of the receiver"),
        ("contact_id", "INT64", "The end user of the conversation (contacts.id)"),
        ("user_id", "INT64", "Staff user who sent it from the Glific inbox, if any"),
        ("flow_id", "INT64", "Flow that sent or received it, if any"),
        ("media_id", "INT64", "Attached media (messages_media.id), if any"),
        ("is_hsm", "BOOL", "Sent from an approved template (HSM)"),
        ("template_id", "INT64", "Template used, if any"),
        ("context_message_id", "INT64", "Message this one replies to, if any"),
        ("group_id", "INT64", "Collection (group) it was sent to, if any"),
        ("flow_label", "STRING", "Label given by the flow to an inbound answer"),
        ("send_at", "DATETIME", f"Scheduled send time, {_LOCAL}"),
        ("sent_at", "DATETIME", f"When it was sent, {_LOCAL}"),
        ("inserted_at", "DATETIME", f"When it was created, {_LOCAL}"),
        ("updated_at", "DATETIME", f"Last change (status updates included), {_LOCAL}"),
        ("contact_name", "STRING", "Contact's name (NULL if the contact was deleted)"),
        ("contact_phone", "STRING", "Contact's WhatsApp number"),
        ("contact_status", "STRING", "Contact's status: valid, invalid, blocked, failed, processing"),
        ("contact_bsp_status", "STRING", "Whether Glific may message the contact: none, session, session_and_hsm, hsm"),
        ("contact_language_id", "INT64", "Contact's language (Glific language id)"),
        ("contact_optin_status", "BOOL", "Contact has opted in"),
        ("contact_fields", "STRING", "Contact's custom fields as JSON text"),
    ),
    sql="""
SELECT
  m.id, m.uuid, m.body, m.type, m.flow, m.status, m.bsp_status, m.errors, m.message_number,
  m.sender_id, m.receiver_id, m.contact_id, m.user_id, m.flow_id, m.media_id, m.is_hsm,
  m.template_id, m.context_message_id, m.group_id, m.flow_label,
  m.send_at, m.sent_at, m.inserted_at, m.updated_at,
  c.name AS contact_name, c.phone AS contact_phone, c.status AS contact_status,
  c.bsp_status AS contact_bsp_status, c.language_id AS contact_language_id,
  c.optin_status AS contact_optin_status, c.fields AS contact_fields
FROM {messages} AS m
LEFT JOIN {contacts} AS c ON c.id = m.contact_id
""",
)

_DAILY_MESSAGE_COUNTS = ReportView(
    name="daily_message_counts",
    description="Messages per local day, direction, type and status (latest status of each message).",
    reads=("messages",),
    columns=_columns(
        ("day", "DATE", "Day the message was created, in the organization's timezone"),
        ("direction", "STRING", "inbound or outbound (Glific's messages.flow)"),
        ("type", "STRING", "Message type: text, image, quick_reply, …"),
        ("status", "STRING", "Current status of the messages: sent, delivered, read, received, error, …"),
        ("message_count", "INT64", "Number of messages"),
    ),
    sql="""
SELECT DATE(inserted_at) AS day, flow AS direction, type, status, COUNT(*) AS message_count
FROM {messages}
GROUP BY day, direction, type, status
""",
)

#: What both layouts' flow_results_answers share: the answer columns, and the SQL that turns a
#: results JSON into one row per answer. JSON_KEYS escapes keys that are not plain JSONPath names
#: with double quotes ("a.b"); such a key is unescaped (it is a JSON string) before it is used.
_ANSWER_COLUMNS = (
    ("answer_key", "STRING", "Result name in the flow (e.g. age, district)"),
    ("answer_input", "STRING", "What the contact answered (text; NULL if the answer is not a single value)"),
    ("answer_category", "STRING", "Category the flow put the answer in (e.g. Has Number, Other)"),
    ("answer_json", "STRING", "The whole answer as JSON text (input, category, interactive, …)"),
    ("inserted_at", "DATETIME", f"When the flow result was created, {_LOCAL}"),
    ("updated_at", "DATETIME", f"When it last changed (last answer), {_LOCAL}"),
)
_ANSWER_CTES = """answers AS (
  SELECT parsed.*,
    IF(STARTS_WITH(listed_key, '"'), JSON_VALUE(SAFE.PARSE_JSON(listed_key)), listed_key) AS answer_key
  FROM parsed, UNNEST(JSON_KEYS(parsed.results, 1)) AS listed_key
),
answer AS (
  SELECT answers.* EXCEPT (results), answers.results[answers.answer_key] AS answer
  FROM answers
)"""

_FLOW_RESULTS_ANSWERS = ReportView(
    name="flow_results_answers",
    description="Flow results flattened: one row per answer (flow result x result key), with the answer's "
    "input and category, the flow's name and the contact.",
    reads=("flow_results", "flows", "contacts"),
    columns=_columns(
        ("flow_result_id", "INT64", "Flow result id (one flow run of one contact)"),
        ("flow_id", "INT64", "Flow id"),
        ("flow_name", "STRING", "Flow name"),
        ("flow_uuid", "STRING", "Flow UUID"),
        ("flow_version", "INT64", "Version of the flow that ran"),
        ("flow_context_id", "INT64", "Flow context (run) id"),
        ("contact_id", "INT64", "Contact who answered"),
        ("contact_name", "STRING", "Contact's name"),
        ("contact_phone", "STRING", "Contact's WhatsApp number"),
        *_ANSWER_COLUMNS,
    ),
    sql=f"""
WITH parsed AS (
  SELECT id, flow_id, flow_uuid, flow_version, flow_context_id, contact_id, inserted_at, updated_at,
    SAFE.PARSE_JSON(results, wide_number_mode => 'round') AS results
  FROM {{flow_results}}
),
{_ANSWER_CTES}
SELECT
  a.id AS flow_result_id, a.flow_id, f.name AS flow_name, a.flow_uuid, a.flow_version, a.flow_context_id,
  a.contact_id, c.name AS contact_name, c.phone AS contact_phone,
  a.answer_key,
  JSON_VALUE(a.answer, '$.input') AS answer_input,
  JSON_VALUE(a.answer, '$.category') AS answer_category,
  TO_JSON_STRING(a.answer) AS answer_json,
  a.inserted_at, a.updated_at
FROM answer AS a
LEFT JOIN {{flows}} AS f ON f.id = a.flow_id
LEFT JOIN {{contacts}} AS c ON c.id = a.contact_id
""",
)

_CONTACT_GROWTH = ReportView(
    name="contact_growth",
    description="Per local day: contacts created, opt-ins and opt-outs, and the running total of contacts. "
    "From each contact's current opt-in and opt-out times (Glific keeps the latest of each).",
    reads=("contacts",),
    columns=_columns(
        ("day", "DATE", "Day, in the organization's timezone (days without any event are absent)"),
        ("new_contacts", "INT64", "Contacts created that day (contacts deleted since are not counted)"),
        ("opt_ins", "INT64", "Contacts whose latest opt-in was that day"),
        ("opt_outs", "INT64", "Contacts whose latest opt-out was that day"),
        ("total_contacts", "INT64", "Contacts created up to and including that day"),
    ),
    # The casts change nothing on BigQuery (COUNTIF and SUM of INT64 are INT64); the emulator
    # would type these columns NUMERIC.
    sql="""
SELECT
  event.day,
  CAST(COUNTIF(event.kind = 'new') AS INT64) AS new_contacts,
  CAST(COUNTIF(event.kind = 'opt_in') AS INT64) AS opt_ins,
  CAST(COUNTIF(event.kind = 'opt_out') AS INT64) AS opt_outs,
  CAST(SUM(COUNTIF(event.kind = 'new')) OVER (ORDER BY event.day) AS INT64) AS total_contacts
FROM {contacts},
  UNNEST([
    STRUCT('new' AS kind, DATE(inserted_at) AS day),
    STRUCT('opt_in' AS kind, DATE(optin_time) AS day),
    STRUCT('opt_out' AS kind, DATE(optout_time) AS day)
  ]) AS event
WHERE event.day IS NOT NULL
GROUP BY event.day
""",
)

#: Messages that failed, with their errors JSON parsed: status or provider status error, or a
#: non-empty errors JSON (anything but NULL, '', {}, [] or null, whitespace allowed).
_FAILED_MESSAGES = r"""WITH parsed AS (
  SELECT *, SAFE.PARSE_JSON(errors, wide_number_mode => 'round') AS error_json
  FROM {messages}
  WHERE status = 'error' OR bsp_status = 'error'
    OR NOT REGEXP_CONTAINS(IFNULL(errors, ''), r'^\s*(\{\s*\}|\[\s*\]|null)?\s*$')
)"""

def _delivery_failures(description: str, reads: tuple[str, ...], middle: tuple[tuple[str, str, str], ...],
                       select_middle: str, joins: str = "") -> ReportView:
    """``message_delivery_failures``: the columns and parsing both layouts share, around the
    columns each layout has of its own (``middle``, selected by ``select_middle``)."""
    return ReportView(
        name="message_delivery_failures",
        description=description,
        reads=reads,
        columns=_columns(
            ("id", "INT64", "Message id"),
            ("inserted_at", "DATETIME", f"When the message was created, {_LOCAL}"),
            ("updated_at", "DATETIME", f"When it last changed (usually: when it failed), {_LOCAL}"),
            ("sent_at", "DATETIME", f"When it was sent, {_LOCAL}"),
            ("direction", "STRING", "inbound or outbound (Glific's messages.flow)"),
            ("type", "STRING", "Message type"),
            ("status", "STRING", "Glific status (error for failed sends)"),
            ("bsp_status", "STRING", "Status reported by the WhatsApp provider"),
            *middle,
            ("contact_name", "STRING", "Contact's name"),
            ("contact_phone", "STRING", "Contact's WhatsApp number"),
            ("body", "STRING", "Text of the message"),
            ("error_code", "STRING", "Provider's error code, e.g. 1002 (Gupshup: number not on WhatsApp) or 131026 "
             "(WhatsApp: undeliverable); NULL if the errors JSON has none"),
            ("error_message", "STRING",
             "Most specific error text: the provider's reason or details, else Glific's message"),
            ("errors", "STRING", "The whole errors JSON text"),
        ),
        sql=f"""
{_FAILED_MESSAGES}
SELECT
  m.id, m.inserted_at, m.updated_at, m.sent_at, m.flow AS direction, m.type, m.status, m.bsp_status,
  {select_middle}, m.body,
  {_first_of("m.error_json", _ERROR_CODE_PATHS)} AS error_code,
  {_first_of("m.error_json", _ERROR_MESSAGE_PATHS)} AS error_message,
  m.errors
FROM parsed AS m
{joins}""",
    )


_MESSAGE_DELIVERY_FAILURES = _delivery_failures(
    "Messages that failed: status or provider status error, or a non-empty errors JSON, with the "
    "error code and message parsed from it.",
    ("messages", "contacts"),
    (
        ("bsp_message_id", "STRING", "Provider's message id, to look it up with the provider"),
        ("flow_id", "INT64", "Flow that sent it, if any"),
        ("contact_id", "INT64", "Contact it was sent to"),
    ),
    "m.bsp_message_id, m.flow_id, m.contact_id, c.name AS contact_name, c.phone AS contact_phone",
    "LEFT JOIN {contacts} AS c ON c.id = m.contact_id\n",
)

# -- the Glific layout's reports: over Glific's columns ----------------------------------------

_GLIFIC_CONTACTS_MESSAGES = ReportView(
    name="contacts_messages",
    description="Glific's contacts_messages view, with Glific's SQL and columns, over the latest version of each "
    "message and contact: one row per message (Glific's own view repeats a message once per stored version of "
    "the message and of its contact). Messages of contacts not exported (simulator contacts) are absent, as in "
    "Glific's view.",
    reads=("messages", "contacts"),
    columns=_columns(
        ("id", "INT64", "Message id"),
        ("uuid", "STRING", "Message UUID"),
        ("contact_phone", "STRING", "Contact's WhatsApp number (from the message)"),
        ("phone", "STRING", "Contact's WhatsApp number (from the contact)"),
        ("name", "STRING", "Contact's name"),
        ("optin_time", "DATETIME", f"When the contact opted in, {_LOCAL}"),
        ("language", "STRING", "Contact's language (label)"),
        ("flow_label", "STRING", "Label given by the flow to an inbound answer"),
        ("tags_label", "STRING", "Labels of the message's tags, joined with a comma and a space (empty when none)"),
        ("inserted_at", "DATETIME", f"When the message was created, {_LOCAL}"),
        ("media_url", "STRING", "URL of the attached media, if any"),
    ),
    # Glific's SELECT list and join, unchanged, over _latest views; a phone reused by a newer
    # contact (the old one deleted, not yet removed by the dedup run) counts once.
    sql="""
SELECT messages.id, uuid, contact_phone, phone, name, optin_time, language, flow_label, messages.tags_label,
  messages.inserted_at, media_url
FROM {messages} AS messages
JOIN (
  SELECT * FROM {contacts}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY phone ORDER BY id DESC) = 1
) AS contacts ON messages.contact_phone = contacts.phone
""",
)

_GLIFIC_FLOW_RESULTS_ANSWERS = ReportView(
    name="flow_results_answers",
    description="Flow results flattened: one row per answer (flow result x result key), with the answer's "
    "input and category, the flow's name and the contact, from Glific's flow_results columns.",
    reads=("flow_results",),
    columns=_columns(
        ("flow_result_id", "INT64", "Flow result id (one flow run of one contact)"),
        ("flow_name", "STRING", "Flow name (flow_results.name)"),
        ("flow_uuid", "STRING", "Flow UUID (flow_results.uuid)"),
        ("flow_version", "INT64", "Version of the flow that ran"),
        ("flow_context_id", "INT64", "Flow context (run) id"),
        ("contact_name", "STRING", "Contact's name"),
        ("contact_phone", "STRING", "Contact's WhatsApp number"),
        *_ANSWER_COLUMNS,
    ),
    sql=f"""
WITH parsed AS (
  SELECT id, name, uuid, flow_version, flow_context_id, contact_name, contact_phone, inserted_at, updated_at,
    SAFE.PARSE_JSON(results, wide_number_mode => 'round') AS results
  FROM {{flow_results}}
),
{_ANSWER_CTES}
SELECT
  a.id AS flow_result_id, a.name AS flow_name, a.uuid AS flow_uuid, SAFE_CAST(a.flow_version AS INT64) AS flow_version,
  a.flow_context_id, a.contact_name, a.contact_phone, a.answer_key,
  JSON_VALUE(a.answer, '$.input') AS answer_input,
  JSON_VALUE(a.answer, '$.category') AS answer_category,
  TO_JSON_STRING(a.answer) AS answer_json,
  a.inserted_at, a.updated_at
FROM answer AS a
""",
)

_GLIFIC_MESSAGE_DELIVERY_FAILURES = _delivery_failures(
    "Messages that failed: status or provider status (bsp_status) error, or a non-empty errors JSON, "
    "with the error code and message parsed from it (what Glific's HSM delivery dashboard reads), from Glific's "
    "messages columns.",
    ("messages",),
    (
        ("is_hsm", "BOOL", "Sent from an approved template (HSM)"),
        ("template_uuid", "STRING", "Template used, if any"),
        ("flow_name", "STRING", "Flow that sent it, if any"),
    ),
    "m.is_hsm, m.template_uuid, m.flow_name, m.contact_name, m.contact_phone",
)

#: The report views of each layout, in creation order (daily_message_counts and contact_growth
#: read columns both layouts share).
RAW_REPORTS: tuple[ReportView, ...] = (
    _CONTACTS_MESSAGES, _DAILY_MESSAGE_COUNTS, _FLOW_RESULTS_ANSWERS, _CONTACT_GROWTH, _MESSAGE_DELIVERY_FAILURES,
)
GLIFIC_REPORTS: tuple[ReportView, ...] = (
    _GLIFIC_CONTACTS_MESSAGES, _DAILY_MESSAGE_COUNTS, _GLIFIC_FLOW_RESULTS_ANSWERS, _CONTACT_GROWTH,
    _GLIFIC_MESSAGE_DELIVERY_FAILURES,
)


def reports_for(layout: Layout) -> tuple[ReportView, ...]:
    """The report views of ``layout``."""
    return GLIFIC_REPORTS if layout is Layout.GLIFIC else RAW_REPORTS


#: The report views of the layout configured by ``GLIFIC_BQ_LAYOUT`` (what the Dagster definitions show).
REPORTS: tuple[ReportView, ...] = reports_for(Layout.from_env())

#: Glific's ``flat_fields`` procedure (Glific layout): its ``CALL`` (re)builds the view
#: ``flat_fields``, one row per contact and one column per contact-field label. Glific's SQL,
#: corrected: its rows are ``contacts_latest``'s (one row per contact, where Glific's view has one per
#: stored version; the labels are read from the table, as Glific reads them), quotes each label as a string literal (Glific splices it in: a label with a quote
#: breaks the view), makes a column name by replacing anything but ASCII letters, digits and ``_``
#: with ``_`` (Glific replaces spaces only: ``Age (years)`` broke its view), keeps one label per
#: column name (BigQuery's names ignore case) and works while no contact has fields.
FLAT_FIELDS = "flat_fields"
FLAT_FIELDS_PROCEDURE = """CREATE OR REPLACE PROCEDURE `{routine}`()
BEGIN
  EXECUTE IMMEDIATE
  '''CREATE OR REPLACE VIEW `{view}` AS SELECT id, (SELECT STRING_AGG(DISTINCT g.label) FROM UNNEST(`groups`) AS g) AS group_category, '''
  || IFNULL((
    SELECT STRING_AGG('(SELECT f.value FROM UNNEST(fields) AS f WHERE f.label = ' || TO_JSON_STRING(label) || ') AS `' || name || '`', ', ')
    FROM (
      SELECT label, name FROM (
        SELECT DISTINCT f.label AS label,
          REGEXP_REPLACE(IF(REGEXP_CONTAINS(f.label, r'^[0-9]'), CONCAT('_', f.label), f.label), r'[^A-Za-z0-9_]', '_') AS name
        FROM `{contacts}`, UNNEST(fields) AS f
        WHERE f.label IS NOT NULL AND f.label != ''
      )
      WHERE LOWER(name) NOT IN ('id', 'group_category', 'inserted_at', 'last_updated_at')
      QUALIFY ROW_NUMBER() OVER (PARTITION BY LOWER(name) ORDER BY label) = 1
    )
  ) || ', ', '')
  || '''(SELECT MIN(f.inserted_at) FROM UNNEST(fields) AS f) AS inserted_at,
  (SELECT MAX(f.inserted_at) FROM UNNEST(fields) AS f) AS last_updated_at
  FROM `{contacts_latest}`''';
END"""


# -- SQL ---------------------------------------------------------------------------------------


def latest_view_name(table: str) -> str:
    return f"{_table_name(table)}{LATEST_SUFFIX}"


def latest_description(table: str) -> str:
    return (f"Exactly one row per id of {table}: its newest version (latest send, ties broken by bq_uuid, as "
            "the dedup decides), even between dedup runs. Use it for exports and reports.")


def clean_latest_sql(dataset_ref: str, table: str) -> str:
    """The SELECT of ``<table>_latest`` over a clean table (history mode, ``glific_bq.clean``):
    the table itself, which holds one row per key; no window over it at every dashboard load."""
    return f"SELECT * FROM `{_dataset_ref(dataset_ref)}.{_table_name(table)}`"


def latest_sql(dataset_ref: str, table: str, *, key: Sequence[str] = ("id",), newest_first: str = dedup.NEWEST_FIRST) -> str:
    """The SELECT of ``<table>_latest``: one row per ``key``, the first by ``newest_first``
    (the dedup's ``version_key`` and ``newest_first`` of the table)."""
    return LATEST_VIEW.format(table=f"{_dataset_ref(dataset_ref)}.{_table_name(table)}",
                         key=", ".join(_table_name(c) for c in key), newest_first=newest_first)




def code_version(*parts: str) -> str:
    """A short, stable fingerprint of view definitions (Dagster code versions)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def latest_code_version() -> str:
    return code_version(LATEST_VIEW, dedup.NEWEST_FIRST)


def report_code_version(view: ReportView) -> str:
    return code_version(latest_code_version(), view.sql, view.description,
                        *(f"{c.name} {c.type} {c.description}" for c in view.columns))

