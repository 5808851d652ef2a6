"""Creating a tenant's views in BigQuery: ``<table>_latest`` for each synced table, the report
views whose inputs exist, and in the Glific layout Glific's ``flat_fields`` procedure."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from glific_bq import dedup
from glific_bq.layouts import Layout
from glific_bq.registry import TableSpec, tables_for
from glific_bq.views.definitions import (
    FLAT_FIELDS,
    FLAT_FIELDS_PROCEDURE,
    ReportView,
    ViewColumn,
    _dataset_ref,
    _table_name,
    clean_latest_sql,
    latest_description,
    latest_sql,
    latest_view_name,
    reports_for,
)
from glific_bq.warehouse import Warehouse, queries
from glific_bq.warehouse.config import Versions
from glific_bq.warehouse.tables import history_table

log = logging.getLogger(__name__)


def latest_sql_for(warehouse: Warehouse, table: str) -> tuple[str | None, str | None]:
    """``(select, reason)``: the SELECT of ``<table>_latest`` in this warehouse's layout, from the
    table's columns in BigQuery; or None and the reason it cannot be built. In history mode a
    table with a history is its clean table (one row per key already): the view reads it as it
    is (``clean_latest_sql``)."""
    table_id = f"{_dataset_ref(warehouse.dataset_ref)}.{_table_name(table)}"
    try:
        columns = {f.name for f in warehouse.client.get_table(table_id, **warehouse.calls.calls).schema}
    except NotFound:
        return None, f"{table} does not exist in BigQuery yet"
    layout = warehouse.config.layout
    key = dedup.version_key(layout, table)
    order = dedup.newest_first(layout, columns)
    missing = dedup.missing_version_columns(columns, key, send_columns=order is None)
    if missing:
        return None, f"{table} has no {', '.join(missing)} column"
    if warehouse.config.versions is Versions.HISTORY and warehouse.table_exists(history_table(table)):
        return clean_latest_sql(warehouse.dataset_ref, table), None
    return latest_sql(warehouse.dataset_ref, table, key=key, newest_first=order), None


def view_ddl(view_id: str, select: str, description: str, columns: Sequence[ViewColumn] = ()) -> str:
    """``CREATE OR REPLACE VIEW``, with the description and (if given) the column list and its docs."""
    column_list = ""
    if columns:
        column_list = "\n(" + ",\n ".join(
            f"`{_table_name(c.name)}` OPTIONS (description = {_string_literal(c.description)})" for c in columns
        ) + ")"
    return (f"CREATE OR REPLACE VIEW `{view_id}`{column_list}\n"
            f"OPTIONS (description = {_string_literal(description)})\nAS\n{select}")

# -- creating views ----------------------------------------------------------------------------


class CreatedViews(list[str]):
    """The names of the views created (a ``list[str]``), and ``skipped``: view name → why not."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}


def create_views(
    warehouse: Warehouse,
    tables: Iterable[str | TableSpec] | None = None,
    reports: Iterable[ReportView] | None = None,
) -> CreatedViews:
    """Create or replace, in the organization's dataset, ``<table>_latest`` for each of ``tables``
    that exists in BigQuery, then each of ``reports`` whose inputs exist (their ``_latest`` views
    are created too, whether listed in ``tables`` or not).

    Idempotent (``CREATE OR REPLACE VIEW``): run it again after a schema change so that the views'
    schemas show new columns. A table that does not exist yet (never synced for this
    organization), or lacks ``id``/``bq_inserted_at``/``bq_uuid``, is skipped with a reason, and so
    is every report reading it. Other failures raise. ``tables`` and ``reports`` default to every
    table and report of the warehouse's layout. In the Glific layout, once ``contacts_latest`` is
    created, Glific's ``flat_fields`` procedure is created and called (``FLAT_FIELDS``).
    """
    created = CreatedViews()
    layout = warehouse.config.layout
    tables = tables_for(layout) if tables is None else tables
    reports = list(reports_for(layout) if reports is None else reports)
    wanted = list(dict.fromkeys(
        [t.name if isinstance(t, TableSpec) else str(t) for t in tables] + [t for r in reports for t in r.reads]
    ))
    available = set()
    for table in wanted:
        reason = _latest_view(warehouse, table)
        if reason:
            created.skipped[latest_view_name(table)] = reason
            log.info("%s.%s: skipped: %s", warehouse.dataset_ref, latest_view_name(table), reason)
        else:
            available.add(table)
            created.append(latest_view_name(table))
    for view in reports:
        missing = [t for t in view.reads if t not in available]
        if missing:
            reason = "; ".join(created.skipped[latest_view_name(t)] for t in missing)
            created.skipped[view.name] = reason
            log.info("%s.%s: skipped: %s", warehouse.dataset_ref, view.name, reason)
            continue
        view_id = f"{_dataset_ref(warehouse.dataset_ref)}.{_table_name(view.name)}"
        queries.run(warehouse, view_ddl(view_id, view.select(warehouse.dataset_ref), view.description, view.columns))
        _ensure_descriptions(warehouse, view_id, view.description, view.columns)
        created.append(view.name)
    if layout is Layout.GLIFIC and "contacts" in available:
        _flat_fields(warehouse)
        created.append(FLAT_FIELDS)
    return created


def _flat_fields(warehouse: Warehouse) -> None:
    """Create Glific's ``flat_fields`` procedure over ``contacts_latest`` and call it once, so that
    the ``flat_fields`` view exists with the labels known now (as Glific, a ``CALL`` rebuilds it)."""
    dataset = _dataset_ref(warehouse.dataset_ref)
    routine = f"{dataset}.{FLAT_FIELDS}"
    queries.run(warehouse, FLAT_FIELDS_PROCEDURE.format(
        routine=routine, view=f"{dataset}.{FLAT_FIELDS}", contacts=f"{dataset}.contacts",
        contacts_latest=f"{dataset}.{latest_view_name('contacts')}",
    ))
    queries.run(warehouse, f"CALL `{routine}`()")


def _latest_view(warehouse: Warehouse, table: str) -> str | None:
    """Create ``<table>_latest``; the reason it cannot be, if so."""
    select, reason = latest_sql_for(warehouse, table)
    if select is None:
        return reason
    view_id = f"{_dataset_ref(warehouse.dataset_ref)}.{latest_view_name(table)}"
    description = latest_description(table)
    queries.run(warehouse, view_ddl(view_id, select, description))
    _ensure_descriptions(warehouse, view_id, description)
    return None


def _ensure_descriptions(warehouse: Warehouse, view_id: str, description: str, columns: Sequence[ViewColumn] = ()) -> None:
    """Set the view's descriptions through the API if the DDL's OPTIONS did not (BigQuery applies
    them; the local emulator ignores them). A no-op when they are already right."""
    client = warehouse.client
    view = client.get_table(view_id, **warehouse.calls.calls)
    docs = {c.name: c.description for c in columns}
    if view.description == description and all(f.description == docs[f.name] for f in view.schema if f.name in docs):
        return
    view.description = description
    view.schema = [
        bigquery.SchemaField(f.name, f.field_type, mode=f.mode, description=docs.get(f.name, f.description),
                             fields=f.fields)
        for f in view.schema
    ]
    client.update_table(view, ["description", "schema"], **warehouse.calls.calls)


def _string_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"
