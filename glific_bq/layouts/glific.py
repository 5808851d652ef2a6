"""Glific's own BigQuery layout: the tables, columns, types and modes Glific's sync writes, with
rows built as Glific builds them, so that every Looker Studio template and dbt model that reads
Glific's datasets keeps working.

The columns, types and modes come from ``glific_bigquery_schema.json`` (Glific's
``bigquery_schema.ex`` at commit d93aaee, bundled here). How each column is filled, in order:

1. an expression written for that table below (``_TABLES``), e.g. ``tags_label``;
2. a looked-up value by convention (``_LOOKUPS``): ``contact_phone`` is the phone of
   ``t.contact_id``, ``flow_name`` the name of ``t.flow_id``, ``language`` the label of
   ``t.language_id``… whenever the source row has that key column;
3. the source column of the same name, converted to the BigQuery type (timestamps to the
   organization's local DATETIME, enums, uuids and JSON to text) on the worker
   (``glific_bq.convert``): read as stored, so that the source database does no conversion;
4. NULL: the columns Glific declares but never fills (``messages.flow_id``,
   ``contacts.settings``…), which consumers still select.

Every expression reads the source row as ``t``, joins by id only (no fan-out), and takes the
organization's timezone from the bound setting (``extract.TIMEZONE``). Where Glific has a plain
bug, we do what its documentation says the column means: ``message_broadcasts.flow_id`` holds
the flow id, not the broadcast id; ``flows`` also exports a revision that was still a draft when
a sync ran and was published later.

The platform organization's dataset (Glific's ``saas`` row named ``Tides``) also gets Glific's
cross-organization tables (``registry.PLATFORM_TABLES``, ``glific_bq.platform``): ``organizations``,
``stats_all`` and ``trackers_all`` (``stats`` and ``trackers`` of every organization, with the
organization's id, name and status copied in) and ``trial_users``. Their timestamps are in the
platform organization's timezone, as Glific writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pyarrow as pa
from google.cloud.bigquery import SchemaField
from psycopg import sql

from glific_bq.convert import Conversion, To, on_worker
from glific_bq.extract import TIMEZONE
from glific_bq.joins import Fetch, Join, Rows, key_column, keys_of
from glific_bq.layouts.shape import Shape, Stamp
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID, Column

SIMULATOR_PHONE_PREFIX = "9876543210"


@dataclass(frozen=True)
class Expr:
    """A column's SQL over the source row ``t``; ``{tz}`` is the organization's timezone.
    ``needs``: source columns it reads (the column is NULL, with a warning, when one is missing)."""

    sql: str
    needs: tuple[str, ...] = ()


#: Tables read by joins that belong to no organization: ``global`` ones, and ``organizations``
#: itself (copied only into the platform's cross-organization tables).
_UNBOUND = ("organizations",)


def lookup(table: str, column: str, key: str, schema: str = "public") -> Join:
    """``table.column`` of the row whose id is ``t.<key>``, joined on the worker (``glific_bq.joins``)
    from the same organization's rows (``global`` tables and ``organizations`` have no organization)."""
    bound = () if schema == "global" or table in _UNBOUND else ("x",)
    return Join(Fetch(f"{schema}.{table} x", tenant=bound), f"x.{column}", key)


def _needs(expr: Expr | Join) -> tuple[str, ...]:
    return (expr.key,) if isinstance(expr, Join) else expr.needs


NULL = Expr("NULL")

#: Looked-up columns by convention, used in every table whose source row has the key column.
_LOOKUPS: dict[str, Join] = {
    "contact_phone": lookup("contacts", "phone", "contact_id"),
    "contact_name": lookup("contacts", "name", "contact_id"),
    "phone": lookup("contacts", "phone", "contact_id"),
    "user_phone": lookup("users", "phone", "user_id"),
    "user_name": lookup("users", "name", "user_id"),
    "flow_name": lookup("flows", "name", "flow_id"),
    "flow_uuid": lookup("flows", "uuid::text", "flow_id"),
    "group_name": lookup("groups", "label", "group_id"),
    "language": lookup("languages", "label", "language_id", schema="global"),
    "tag": lookup("tags", "label", "tag_id"),
    "media_url": lookup("messages_media", "url", "media_id"),
    "gcs_url": lookup("messages_media", "gcs_url", "media_id"),
    "wa_group_name": lookup("wa_groups", "label", "wa_group_id"),
    "wa_group_bsp_id": lookup("wa_groups", "bsp_id", "wa_group_id"),
}


def _json_fields(column: str) -> Expr:
    """Glific's ``fields`` RECORD: one element per entry of a jsonb map (the key dropped), by key.
    ``value`` is the string itself, or its JSON text when it is a map or a list; ``inserted_at``
    stays the ISO text here and is converted on the worker (NULL when it does not parse)."""
    return Expr(
        "(SELECT jsonb_agg(jsonb_build_object("
        "'label', e.v->>'label', "
        "'value', CASE WHEN jsonb_typeof(e.v->'value') IN ('object', 'array') THEN (e.v->'value')::text "
        "ELSE e.v->>'value' END, "
        "'type', e.v->>'type', 'inserted_at', e.v->>'inserted_at') ORDER BY e.k) "
        f"FROM jsonb_each(CASE WHEN jsonb_typeof(t.{column}) = 'object' THEN t.{column} END) AS e(k, v) "
        "WHERE jsonb_typeof(e.v) = 'object')::text",
        (column,),
    )


def _contact_user(column: str) -> Join:
    """A column of the staff user whose contact this is (the first one, by id)."""
    return Join(Fetch("public.users x", "x.contact_id", Rows.FIRST), column, "id")


_CONTACT_GROUPS = Fetch("public.contacts_groups x JOIN public.groups g ON g.id = x.group_id", "x.contact_id", Rows.GROUP,
                        tenant=("x", "g"))
_LOCATION = Fetch("public.locations x", "x.message_id", Rows.FIRST)
_NOT_SIMULATOR = f"NOT LIKE '{SIMULATOR_PHONE_PREFIX}%'"


@dataclass(frozen=True)
class GlificTable:
    """How one of Glific's BigQuery tables is filled (see the module docstring)."""

    columns: dict[str, Expr | Join]
    source: str = ""
    where: str | None = None
    update_where: str | None = None


_TABLES: dict[str, GlificTable] = {
    "messages": GlificTable({
        "sender_phone": lookup("contacts", "phone", "sender_id"),
        "receiver_phone": lookup("contacts", "phone", "receiver_id"),
        "tags_label": Join(Fetch("public.messages_tags x JOIN public.tags tg ON tg.id = x.tag_id", "x.message_id",
                                 Rows.GROUP, tenant=("x", "tg")), "COALESCE(string_agg(tg.label, ', ' ORDER BY x.id), '')", "id", ""),
        "flow_id": NULL,
        "group_message_id": NULL,
        "flow_broadcast_id": NULL,
        "longitude": Join(_LOCATION, "x.longitude::text", "id"),
        "latitude": Join(_LOCATION, "x.latitude::text", "id"),
        "template_uuid": lookup("session_templates", "uuid::text", "template_id"),
    }),
    "contacts": GlificTable(
        {
            "provider_status": Expr("t.bsp_status::text", ("bsp_status",)),
            "contact_optin_method": Expr("t.optin_method", ("optin_method",)),
            "user_name": _contact_user("x.name"),
            "user_role": _contact_user("array_to_json(x.roles::text[])::text"),
            "last_login_as_staff_at": _contact_user("""to_char(x.last_login_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""),
            "last_login_from_as_staff": _contact_user("x.last_login_from"),
            "is_restricted_user": _contact_user("x.is_restricted"),
            "fields": _json_fields("fields"),
            "settings": NULL,
            "groups": Join(_CONTACT_GROUPS, "jsonb_agg(jsonb_build_object('label', g.label, 'description', "
                           "g.description) ORDER BY x.id)::text", "id"),
            "tags": Join(Fetch("public.contacts_tags x JOIN public.tags tg ON tg.id = x.tag_id", "x.contact_id",
                               Rows.GROUP, tenant=("x", "tg")), "jsonb_agg(jsonb_build_object('label', tg.label) ORDER BY x.id)::text", "id"),
            "raw_fields": Expr("t.fields::text", ("fields",)),
            "group_labels": Join(_CONTACT_GROUPS, "COALESCE(string_agg(g.label, ',' ORDER BY x.id), '')", "id", ""),
        },
        where=f"t.phone {_NOT_SIMULATOR}",
    ),
    "flow_results": GlificTable(
        {
            "name": lookup("flows", "name", "flow_id"),
            "uuid": lookup("flows", "uuid::text", "flow_id"),
            "flow_version": Expr("t.flow_version::text", ("flow_version",)),
        },
        where=f"(SELECT c.phone FROM public.contacts c WHERE c.id = t.contact_id AND c.organization_id = t.organization_id) {_NOT_SIMULATOR}",
    ),
    "flow_contexts": GlificTable({
        "flow_id": Expr("t.flow_id::text", ("flow_id",)),
        "contact_id": Expr("t.contact_id::text", ("contact_id",)),
        "flow_broadcast_id": NULL,
        "wa_group_id": Expr("t.wa_group_id", ("wa_group_id",)),
    }),
    # One row per published (or archived) revision; id is the flow's, not the revision's. A draft
    # published later is caught by the update pass (Glific's insert-only pass skips it for good);
    # later status changes of an exported revision (archived) are not re-sent, so that the newest
    # row per uuid stays the newest published revision.
    "flows": GlificTable(
        {
            "id": Expr("t.flow_id", ("flow_id",)),
            "name": lookup("flows", "name", "flow_id"),
            "uuid": lookup("flows", "uuid::text", "flow_id"),
            "keywords": Join(Fetch("public.flows x"), "array_to_json(COALESCE(x.keywords, '{}')::text[])::text",
                             "flow_id"),
            "revision": Expr("t.definition::text", ("definition",)),
            "tag": Join(Fetch("public.flows x"), "(SELECT tg.label FROM public.tags tg WHERE tg.id = x.tag_id AND tg.organization_id = x.organization_id)",
                        "flow_id"),
        },
        source="flow_revisions",
        where="t.status IN ('published', 'archived')",
        update_where="t.status = 'published'",
    ),
    "flow_counts": GlificTable({"source_uuid": Expr("t.uuid::text", ("uuid",))}),
    "profiles": GlificTable({
        "fields": Expr(
            "(SELECT jsonb_agg(jsonb_build_object('label', e.v->>'label', 'value', e.v->>'value', "
            "'type', e.v->>'type', 'inserted_at', e.v->>'inserted_at') ORDER BY e.k) "
            "FROM jsonb_each(CASE WHEN jsonb_typeof(t.fields) = 'object' THEN t.fields END) AS e(k, v) "
            "WHERE jsonb_typeof(e.v) = 'object')::text",
            ("fields",),
        ),
    }),
    "groups": GlificTable({
        "is_restricted": Expr("COALESCE(t.is_restricted, false)", ("is_restricted",)),
        # Databases from before WhatsApp groups have no group_type: every group was a WABA group.
        "group_type": Expr("'WABA'"),
    }),
    "contacts_groups": GlificTable({
        "name": lookup("contacts", "name", "contact_id"),
        "phone": lookup("contacts", "phone", "contact_id"),
    }),
    "speed_sends": GlificTable(
        {
            "UUID": Expr("t.uuid::text", ("uuid",)),
            "media_id": Expr("t.message_media_id::text", ("message_media_id",)),
            "media_url": lookup("messages_media", "url", "message_media_id"),
            "gcs_url": lookup("messages_media", "gcs_url", "message_media_id"),
        },
        source="session_templates",
        where="NOT COALESCE(t.is_hsm, false)",
    ),
    "message_broadcasts": GlificTable({
        "status": NULL,
        "message_id": NULL,
        "broadcast_type": Expr("t.type", ("type",)),
    }),
    "message_conversations": GlificTable(
        {
            "conversation_id": NULL,
            "conversation_uuid": Expr("t.conversation_id", ("conversation_id",)),
            "phone": Join(Fetch("public.messages x"),
                          "(SELECT c.phone FROM public.contacts c WHERE c.id = x.contact_id AND c.organization_id = x.organization_id)", "message_id"),
        },
        source="messages_conversations",
    ),
    "wa_groups": GlificTable({
        "wa_phone": lookup("wa_managed_phones", "phone", "wa_managed_phone_id"),
        "fields": _json_fields("fields"),
    }),
    "wa_messages": GlificTable({"is_dm": NULL}),
    "wa_groups_collections": GlificTable({
        "group_id": Expr("t.wa_group_id", ("wa_group_id",)),
        "collection_id": Expr("t.group_id", ("group_id",)),
        "group_label": lookup("wa_groups", "label", "wa_group_id"),
        "collection_label": lookup("groups", "label", "group_id"),
    }),
    "contacts_wa_groups": GlificTable({"group_label": lookup("wa_groups", "label", "wa_group_id"),
                                       "group_id": Expr("t.wa_group_id", ("wa_group_id",))}),
    "wa_reactions": GlificTable({}),
    "whatsapp_forms": GlificTable({"id": Expr("t.id::text")}),
    "whatsapp_forms_responses": GlificTable({
        "whatsapp_form_name": lookup("whatsapp_forms", "name", "whatsapp_form_id"),
    }),
    # The platform organization's cross-organization tables (glific_bq.platform): every
    # organization's stats and trackers, named as they were when sent (Glific never re-sends them).
    "stats_all": GlificTable(
        {"organization_name": lookup("organizations", "name", "organization_id"),
         "organization_status": lookup("organizations", "status::text", "organization_id")},
        source="stats",
    ),
    "trackers_all": GlificTable({"organization_name": lookup("organizations", "name", "organization_id")},
                                source="trackers"),
    "issued_certificates": GlificTable({
        "template_label": lookup("certificate_templates", "label", "certificate_template_id"),
        "template_id": Expr("t.certificate_template_id", ("certificate_template_id",)),
    }),
}


@dataclass(frozen=True)
class Copies:
    """What one table's rows copy from one looked-up table (``glific_bq.lookups``): the looked-up
    ``columns`` its values come from, and how a row ``refers`` to the looked-up row: key columns
    of ``t``, or conditions where ``{ids}`` stands for the changed ids. A change of one of these
    columns re-sends the rows that refer to it; a change of any other column re-sends nothing."""

    columns: tuple[str, ...]
    refers: tuple[str, ...]


_CONTACT = ("contact_id",)

#: ``{table: {looked-up table: Copies}}``: every value a table copies from a row that can change
#: after it was sent (the joins and subqueries above; glific_bq_tests/test_lookup_refresh.py
#: holds the two together), except ``NOT_REFRESHED``.
COPIES: dict[str, dict[str, Copies]] = {
    "messages": {"contacts": Copies(("phone", "name"), ("contact_id", "sender_id", "receiver_id")),
                 "users": Copies(("phone", "name"), ("user_id",)),
                 "flows": Copies(("name", "uuid"), ("flow_id",)),
                 "groups": Copies(("label",), ("group_id",))},
    "contacts": {
        "groups": Copies(("label", "description"), (
            "t.id IN (SELECT cg.contact_id FROM public.contacts_groups cg WHERE cg.group_id = ANY({ids}))",)),
        "users": Copies(("name", "roles", "last_login_at", "last_login_from", "is_restricted"), (
            "t.id IN (SELECT u.contact_id FROM public.users u WHERE u.id = ANY({ids}))",)),
    },
    "flow_results": {"contacts": Copies(("phone", "name"), _CONTACT), "flows": Copies(("name", "uuid"), ("flow_id",))},
    "flow_contexts": {"contacts": Copies(("phone",), _CONTACT), "flows": Copies(("name", "uuid"), ("flow_id",))},
    "flow_counts": {"flows": Copies(("name", "uuid"), ("flow_id",))},
    "tickets": {"contacts": Copies(("phone", "name"), _CONTACT), "users": Copies(("phone", "name"), ("user_id",))},
    "contact_histories": {"contacts": Copies(("phone",), _CONTACT)},
    "profiles": {"contacts": Copies(("phone",), _CONTACT)},
    "contacts_groups": {"contacts": Copies(("phone", "name"), _CONTACT), "groups": Copies(("label",), ("group_id",))},
    "message_broadcasts": {"flows": Copies(("name",), ("flow_id",)), "groups": Copies(("label",), ("group_id",)),
                           "users": Copies(("phone",), ("user_id",))},
    "message_broadcast_contacts": {"contacts": Copies(("phone",), _CONTACT)},
    "wa_groups_collections": {"groups": Copies(("label",), ("group_id",))},
}

#: Values copied from rows that can change but deliberately not sent again, and why.
NOT_REFRESHED: dict[str, str] = {
    "flows": "one row per exported revision: sending them all again would make an archived revision the newest",
    "message_conversations": "refers to the contact through messages, with no index to find the rows by; "
                             "a contact's phone is its identity in Glific",
}


def copied_columns() -> dict[str, dict[tuple[str, ...], list[str]]]:
    """``{looked-up table: {columns: [tables copying exactly those]}}``, for ``glific_bq.lookups``:
    one digest per set of columns, so that a change re-sends only the tables copying it."""
    sets: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for table, copies in COPIES.items():
        for parent, copy in copies.items():
            sets.setdefault(parent, {}).setdefault(tuple(sorted(copy.columns)), []).append(table)
    return sets


@cache
def reference_schema() -> dict[str, tuple[SchemaField, ...]]:
    """Glific's BigQuery tables: ``{table: columns}``, as Glific declares them."""
    text = resources.files(__package__).joinpath("glific_bigquery_schema.json").read_text()
    return {name: tuple(SchemaField.from_api_repr(f) for f in fields) for name, fields in json.loads(text)["tables"].items()}


@cache
def reference_facts() -> dict:
    """Glific's table facts beside the columns: insert-only tables, partitioning, clustering, the
    platform organization's own tables and the change logs among them."""
    text = resources.files(__package__).joinpath("glific_bigquery_schema.json").read_text()
    facts = json.loads(text)
    return {k: facts[k] for k in ("insert_only", "partitioned_month_by_inserted_at", "cluster_fields",
                                  "platform_only", "change_logs")}


def source_table(table: str) -> str:
    """The PostgreSQL table whose rows fill Glific's BigQuery ``table``."""
    spec = _TABLES.get(table)
    return (spec.source if spec else "") or table


def exported_ids(table: str) -> tuple[str, str | None, bool]:
    """``(id, where, own)`` for comparing ids: the SQL of Glific's BigQuery ``id`` over the source
    row ``t`` of ``source_table(table)`` (``t.flow_id`` for flows), as a bigint; the filter of the
    source rows it exports (None: all of the organization's rows); whether that id is the source
    row's own ``t.id`` (so that a watermark on source ids bounds it too)."""
    spec = _TABLES.get(table, GlificTable({}))
    expr = spec.columns.get("id")
    own = expr is None or expr.needs == () and expr.sql.startswith("t.id")
    return (f"({expr.sql})::bigint" if expr else "t.id"), spec.where, own


def shape(table: str, columns: list[Column], cursor: sql.Composable | None) -> Shape:
    """Glific's ``table``, filled from the source table's reflected ``columns``."""
    if table not in reference_schema():
        raise ValueError(f"{table} is not one of Glific's BigQuery tables; sync it in the raw layout")
    schema = reference_schema()[table]
    spec = _TABLES.get(table, GlificTable({}))
    by_name = {c.name: c for c in columns}
    select, warnings, records, conversions, joins, added = [], [], [], {}, {}, {}
    for field in schema:
        if field.name in (BQ_UUID, BQ_INSERTED_AT):
            continue
        expression, warning = _column_expression(table, field, spec, by_name)
        if warning:
            warnings.append(warning)
        if field.field_type == "RECORD":
            records.append(field.name)
        if expression is NULL or isinstance(expression, Join):  # not read: added on the worker
            added[field.name] = _EXTRACTED_TYPES.get(field.field_type, pa.string())
            if isinstance(expression, Join):
                joins[field.name] = expression
            continue
        if isinstance(expression, tuple):  # a same-named column, converted on the worker
            expression, conversions[field.name] = expression
        select.append(sql.SQL("{} AS {}").format(expression, sql.Identifier(field.name)))
    select += [sql.SQL("t.{} AS {}").format(sql.Identifier(key), sql.Identifier(key_column(key)))
               for key in keys_of(joins)]
    names = {f.name for f in schema}
    stamp = Stamp.LOCAL if {BQ_UUID, BQ_INSERTED_AT} <= names else Stamp.NONE
    return Shape(
        table=table,
        source=source_table(table),
        schema=schema,
        select=tuple(select),
        cursor=cursor,
        stamp=stamp,
        where=_sql(spec.where),
        update_where=_sql(spec.update_where),
        records=tuple(records),
        warnings=tuple(warnings),
        conversions=conversions,
        joins=joins,
        added=added,
        refresh={
            parent: usable
            for parent, copy in COPIES.get(table, {}).items()
            if (usable := tuple(k for k in copy.refers if "{ids}" in k or k in by_name))
        },
    )


def _column_expression(table: str, field: SchemaField, spec: GlificTable, source: dict[str, Column]):
    expr = spec.columns.get(field.name)
    if expr is None and field.name in _LOOKUPS and set(_needs(_LOOKUPS[field.name])) <= set(source):
        expr = _LOOKUPS[field.name]
    if expr is None and field.name in source:
        return _converted(source[field.name], field), None
    if expr is None:
        if field.mode == "REQUIRED":
            return NULL, f"{table}.{field.name}: REQUIRED, but the source has no such column"
        return NULL, None
    missing = [n for n in _needs(expr) if n not in source]
    if missing:
        return NULL, f"{table}.{field.name}: the source lacks {', '.join(missing)}; sent as NULL"
    if isinstance(expr, Join) or expr is NULL:
        return expr, None
    return _render(expr.sql), None


#: The Arrow type of a column added on the worker (always NULL, or joined) as the extract would
#: read it for each BigQuery type (RECORDs as JSON text), so that the rest of ``prepare`` treats
#: it like any column read. Not read, since the extract's cost is per value, NULLs included: 16
#: NULL text columns cost ADBC 1.06 CPU s per million rows (bench/bench_datapath.py's table).
_EXTRACTED_TYPES = {"INTEGER": pa.int64(), "INT64": pa.int64(), "FLOAT": pa.float64(), "FLOAT64": pa.float64(),
                    "BOOLEAN": pa.bool_(), "BOOL": pa.bool_(), "DATE": pa.date32(), "DATETIME": pa.timestamp("us"),
                    "TIMESTAMP": pa.timestamp("us", tz="UTC")}


def _converted(column: Column, field: SchemaField) -> sql.Composable | tuple[sql.Composable, Conversion]:
    """A same-named source column as the BigQuery type Glific declares: the column as stored and
    its conversion on the worker (``glific_bq.convert``: local DATETIMEs, uuids, enums, JSON and
    ids as text), or, for what Arrow cannot decode, an SQL cast."""
    col = sql.SQL("t.{}").format(sql.Identifier(column.name))
    kind = field.field_type
    if kind == "DATETIME" and column.type_name in ("timestamp", "timestamptz") and not column.is_array:
        return col, Conversion(To.LOCAL, column.type_name)
    if kind == "STRING":
        if column.type_name in ("text", "varchar", "bpchar") and not column.is_array:
            return col  # as is: char(n) keeps its padding here, as Glific sends it
        conversion = on_worker(column.type_name, column.kind, False, "STRING") if not column.is_array else None
        return (col, conversion) if conversion else sql.SQL("{}::text").format(col)
    return col


def _render(text: str) -> sql.Composable:
    """SQL text with ``{tz}`` standing for the organization's timezone (other braces kept)."""
    parts = text.split("{tz}")
    composed: list[sql.Composable] = [sql.SQL(parts[0])]
    for part in parts[1:]:
        composed += [TIMEZONE, sql.SQL(part)]
    return sql.Composed(composed)


def _sql(text: str | None) -> sql.Composable | None:
    return sql.SQL(text) if text else None
