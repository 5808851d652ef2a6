"""Per-tenant exports: the latest state of an organization's synced tables as CSV, Excel and Parquet.

One pass over BigQuery per table feeds every requested format at once, page by page, so a table
larger than memory exports in bounded memory: query results are read over the REST API
(``tabledata.list`` pages, converted to Arrow; no Storage Read API, so no read-session
permission or cost, and it works against the local emulator) and written incrementally.

**Which rows.** Each id once, in its newest version (``LATEST_VERSION``: the order dedup keeps),
by id. A large table is read as several queries over consecutive id windows (about
``query_rows`` row versions each): every query result stays far below BigQuery's 10 GB
(compressed) limit on an anonymous result, and ``ORDER BY id`` stays cheap. Tables are clustered
by id, so the windows together read each block about once. An id lands in exactly one window,
so a row updated while the export runs still appears once; rows inserted after a table's first
query are left for the next export. Each table is its latest state when it is read: tables
are not one snapshot of the tenant.

**Date range.** ``date_from``/``date_to`` (inclusive local calendar days) filter on the table's
``inserted_at``, the organization's local DATETIME, as Glific's dashboards do. ``inserted_at`` is
immutable, so every version of a row is in or out together and the filter can run before the
newest version is picked. A table without ``inserted_at`` is exported whole, and the result says
so (``whole_tables``).

**Columns.** The table's columns in BigQuery order, without the sync's bookkeeping ``bq_uuid``
(a per-send UUID) and ``bq_inserted_at`` (when the version was sent, in UTC where every other
time is local: a trap in a spreadsheet; a row's last change is its ``updated_at``).

**Values.**

| BigQuery | CSV | xlsx | Parquet |
|---|---|---|---|
| NULL | empty, unquoted (an empty string is ``""``) | empty cell | null |
| STRING (JSON text too) | text, exact | text cell, exact up to 32,767 characters | string |
| INT64, FLOAT64, BOOL | as is | number / boolean cell (integers past 2**53 as text) | native |
| DATETIME | ISO 8601 text, ``2026-01-31T14:05:00[.ffffff]`` | date-time cell (Excel's precision: ~1 ms); before 1900-03-01 as ISO text | timestamp |
| DATE, TIME | ISO text | date / time cell | native |
| NUMERIC | decimal text | number if exact as a double, else text | decimal |
| BYTES | base64 text | base64 text | binary |
| REPEATED | JSON array text (``[]`` when empty) | JSON array text | list |

Excel cells hold at most 32,767 characters (UTF-16 units). Longer text is cut and ends with
``TRUNCATION_MARKER``, never silently: ``ExportedFile.truncated_cells`` counts such cells, and the
CSV and Parquet files keep the full text. A sheet holds at most ``xlsx_max_rows`` rows, the
header included (Excel's limit: 1,048,576); a larger table continues on ``messages (2)``, …
Strings are written as strings: text starting with ``=`` or looking like a URL or number stays
text in the workbook. CSV is UTF-8 without a byte-order mark and its cells are not altered, so
a cell starting with ``=`` is a formula if the CSV is opened in a spreadsheet: the xlsx is the
file for spreadsheets.

**Where.** A local directory (``<dir>/<dataset>/<UTC timestamp>/``) or a Cloud Storage bucket
(``gs://bucket/prefix`` → ``gs://bucket/prefix/<dataset>/<UTC timestamp>/``): each file is
written to a local temporary file and uploaded once complete. Files: ``<table>.csv``,
``<table>.parquet``, ``<dataset>.xlsx`` (one workbook, a sheet per table), and
``manifest.json``, written last: an export is complete when its manifest exists. A local file
is written as ``<name>.part`` and renamed when complete; a failed export removes its partial
files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from time import monotonic

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from glific_bq import identifiers
from glific_bq.dedup import IS_NEWEST_VERSION, missing_version_columns, newest_first, version_key
from glific_bq.export.destinations import Destination, _Location
from glific_bq.export.formats import (
    EXCEL_MAX_CHARS,
    EXCEL_MAX_ROWS,
    TRUNCATION_MARKER,
    _CsvWriter,
    _ParquetWriter,
    _TableWriter,
    _Workbook,
)
from glific_bq.export.reading import DATE_BEFORE, DATE_FROM, LATEST_VERSION, _check_tenant, _latest_rows, _Reading
from glific_bq.export.result import ExportedFile, ExportError, ExportResult
from glific_bq.registry import TableSpec, tables_for
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID
from glific_bq.warehouse import Warehouse

log = logging.getLogger(__name__)

FORMATS = ("csv", "xlsx", "parquet")
#: Sync bookkeeping, not the organization's data (see the module docstring).
EXCLUDED_COLUMNS = (BQ_UUID, BQ_INSERTED_AT)


def export_tenant(
    warehouse: Warehouse,
    tables: Sequence[str | TableSpec] | None = None,
    formats: Sequence[str] = FORMATS,
    destination: str | os.PathLike = "exports",
    date_from: date | None = None,
    date_to: date | None = None,
    *,
    xlsx_max_rows: int = EXCEL_MAX_ROWS,
    page_rows: int = 5_000,
    query_rows: int = 2_000_000,
    storage_client=None,
) -> ExportResult:
    """Export the latest state of ``tables`` of the warehouse's organization.

    Args:
        tables: registered table specs or BigQuery table names; a table not in BigQuery yet is
            skipped with a reason (``ExportResult.skipped``).
        formats: any of ``csv``, ``xlsx``, ``parquet``; all are written from one read per table.
        destination: a local directory, or ``gs://bucket[/prefix]`` (uploaded with the
            organization's credentials unless ``storage_client`` is given).
        date_from, date_to: inclusive local days on ``inserted_at``; either may be None (open).
        xlsx_max_rows: rows per sheet, the header included (Excel's limit by default).
        page_rows: rows per page read from BigQuery, what is held in memory at once. A REST
            page is parsed into Python objects before it becomes Arrow: measured with Glific
            messages, peak memory grows by about 30 KB per page row (5,000: ~150 MB over the
            process's baseline, whatever the table's size); smaller pages cost round trips.
        query_rows: row versions per query (see the module docstring): more means fewer,
            larger queries.
    """
    started = monotonic()
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    if date_from and date_to and date_from > date_to:
        raise ValueError(f"date_from {date_from} is after date_to {date_to}")
    if xlsx_max_rows < 2:
        raise ValueError("xlsx_max_rows must leave room for the header and one row")
    tables = tables_for(warehouse.config.layout) if tables is None else tables
    names = [t.name if isinstance(t, TableSpec) else t for t in tables]
    for name in names:
        identifiers.checked_table(name)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    location = _Location(Destination.parse(destination), warehouse.dataset, stamp, warehouse, storage_client)
    result = ExportResult(warehouse.organization.id, warehouse.dataset, location.uri, formats, date_from, date_to)
    workbook = _Workbook(location.workdir / f"{warehouse.dataset}.xlsx.part", xlsx_max_rows) if "xlsx" in formats else None
    reading = _Reading(date_from, date_to, page_rows, query_rows)
    try:
        for name in dict.fromkeys(names):
            result.files += _export_table(warehouse, name, reading, location, workbook, result)
        if workbook is not None:
            uri = location.publish(workbook.close(), f"{warehouse.dataset}.xlsx")
            result.files = [
                ExportedFile(f.table, f.format, uri, f.rows, f.sheets, f.truncated_cells) if f.format == "xlsx" else f
                for f in result.files
            ]
        result.seconds = monotonic() - started
        manifest = location.workdir / "manifest.json.part"
        manifest.write_text(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
        result.manifest = location.publish(manifest, "manifest.json")
    except BaseException:
        if workbook is not None:
            workbook.discard()
        location.abort()
        raise
    location.close()
    log.info("exported %s: %d table(s), %d rows, to %s in %.1fs", warehouse.dataset, len(result.rows),
             sum(result.rows.values()), result.location, result.seconds)
    return result


def _export_table(warehouse: Warehouse, name: str, reading: _Reading, location: _Location,
                  workbook: _Workbook | None, result: ExportResult) -> list[ExportedFile]:
    """Write one table to every format requested; returns its files (the workbook's without a URI yet)."""
    table_id = f"{warehouse.dataset_ref}.{name}"
    try:
        schema = warehouse.client.get_table(table_id, **warehouse.calls.calls).schema
    except NotFound:
        result.skipped[name] = "not in BigQuery yet"
        return []
    columns = [f.name for f in schema if f.name not in EXCLUDED_COLUMNS]
    layout, present = warehouse.config.layout, {f.name for f in schema}
    key, order = version_key(layout, name), newest_first(layout, present)
    missing = missing_version_columns(present, key, send_columns=not order)
    if missing:
        raise ExportError(f"{table_id} has no {', '.join(missing)} column: its latest versions cannot be chosen")
    odd = [c for c in columns if not identifiers.is_column(c)]
    if odd:
        raise ExportError(f"{table_id}: column names not exportable: {odd}")

    filters, params = [], []
    if reading.date_from or reading.date_to:
        if "inserted_at" in columns:
            if reading.date_from:
                filters.append(DATE_FROM)
                start = datetime.combine(reading.date_from, time())
                params.append(bigquery.ScalarQueryParameter("date_from", "DATETIME", start))
            if reading.date_to:
                filters.append(DATE_BEFORE)
                end = datetime.combine(reading.date_to + timedelta(days=1), time())
                params.append(bigquery.ScalarQueryParameter("date_end", "DATETIME", end))
        else:
            result.whole_tables.append(name)

    writers: list[_TableWriter] = []
    if "csv" in result.formats:
        writers.append(_CsvWriter(location.workdir / f"{name}.csv.part"))
    if "parquet" in result.formats:
        writers.append(_ParquetWriter(location.workdir / f"{name}.parquet.part"))
    if workbook is not None:
        writers.append(workbook.table(name))
    rows = 0
    try:
        latest = IS_NEWEST_VERSION.format(key=", ".join(key), newest_first=order)
        for batch in _latest_rows(warehouse, table_id, columns, filters, params, reading, latest):
            _check_tenant(batch, warehouse.organization.id, table_id)
            for writer in writers:
                writer.write(batch)
            rows += batch.num_rows
        files = [
            ExportedFile(name, w.format, location.publish(w.close(), f"{name}.{w.format}"), rows)
            if w.format != "xlsx" else ExportedFile(name, "xlsx", "", rows, *w.close())
            for w in writers
        ]
    except BaseException:
        for writer in writers:
            writer.discard()
        raise
    result.rows[name] = rows
    log.info("exported %s: %d rows", table_id, rows)
    return files


__all__ = [
    "EXCEL_MAX_CHARS", "EXCEL_MAX_ROWS", "EXCLUDED_COLUMNS", "FORMATS", "LATEST_VERSION", "TRUNCATION_MARKER",
    "Destination", "ExportError", "ExportResult", "ExportedFile", "export_tenant",
]
