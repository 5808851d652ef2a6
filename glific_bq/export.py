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

import base64
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from time import monotonic

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from glific_bq import identifiers
from glific_bq.dedup import IS_NEWEST_VERSION, NEWEST_FIRST, missing_version_columns, newest_first, version_key
from glific_bq.registry import TableSpec, tables_for
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID
from glific_bq.tenancy import only_tenant
from glific_bq.warehouse import Warehouse, queries

log = logging.getLogger(__name__)

FORMATS = ("csv", "xlsx", "parquet")
#: Excel's rows per sheet, the header row included.
EXCEL_MAX_ROWS = 1_048_576
#: Excel's characters per cell (UTF-16 code units).
EXCEL_MAX_CHARS = 32_767
#: How a cut cell ends: the full text is in the CSV and Parquet exports.
TRUNCATION_MARKER = "…[truncated]"
#: Sync bookkeeping, not the organization's data (see the module docstring).
EXCLUDED_COLUMNS = (BQ_UUID, BQ_INSERTED_AT)

#: One row per id: its newest version, as dedup keeps it (``dedup.IS_NEWEST_VERSION`` by
#: ``dedup.NEWEST_FIRST``, the one home of that order: latest ``bq_inserted_at``, ties by
#: ``bq_uuid``, a row without a send time the oldest). Other layouts' tables pass their own
#: ``version_key`` and order (Glific's flows: one row per revision, ``(id, inserted_at)``).
LATEST_VERSION = IS_NEWEST_VERSION.format(key="id", newest_first=NEWEST_FIRST)

STATS = "SELECT COUNT(*) AS versions, MIN(id) AS first_id, MAX(id) AS last_id FROM `{table}` WHERE {where}"
LATEST_ROWS = "SELECT {columns} FROM `{table}` WHERE {where} QUALIFY {latest} ORDER BY id"
DATE_FROM = "inserted_at >= @date_from"
DATE_BEFORE = "inserted_at < @date_end"
ID_WINDOW = "id >= @first_id AND id < @end_id"

_EXCEL_EPOCH = date(1899, 12, 30)  # serial 0 of Excel's 1900 date system, past its 1900 leap-year bug
_EXCEL_FIRST_EXACT = (date(1900, 3, 1) - _EXCEL_EPOCH).days  # earlier serials hit that bug: ISO text
_EXACT_INTEGER = 2**53


class ExportError(RuntimeError):
    """An export that cannot go on (bad options, a table without ids, rows of another tenant)."""


@dataclass(frozen=True)
class ExportedFile:
    """One table in one written file. The xlsx workbook holds every table: one entry per table,
    all with the workbook's ``uri``, and ``sheets`` naming the table's sheets."""

    table: str
    format: str
    uri: str  # local path or gs:// URI
    rows: int
    sheets: tuple[str, ...] = ()
    truncated_cells: int = 0  # xlsx cells cut to Excel's limit (see TRUNCATION_MARKER)


@dataclass
class ExportResult:
    """What one export wrote, and what it did not."""

    organization_id: int
    dataset: str
    location: str  # the export's folder: a local path or gs:// URI
    formats: tuple[str, ...]
    date_from: date | None = None
    date_to: date | None = None
    files: list[ExportedFile] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows exported
    whole_tables: list[str] = field(default_factory=list)  # no inserted_at: the date range did not apply
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it was not exported
    manifest: str | None = None
    seconds: float = 0.0

    @property
    def truncated_cells(self) -> int:
        return sum(f.truncated_cells for f in self.files)

    def as_dict(self) -> dict:
        """JSON-friendly: the manifest's content."""
        data = asdict(self)
        data["date_from"] = self.date_from and self.date_from.isoformat()
        data["date_to"] = self.date_to and self.date_to.isoformat()
        data["truncated_cells"] = self.truncated_cells
        data["seconds"] = round(self.seconds, 3)
        return data

    def as_markdown(self) -> str:
        """The files with their row counts, as a markdown table."""
        lines = ["| table | format | rows | file |", "|---|---|---:|---|"]
        for f in self.files:
            where = f.uri + (f" ({', '.join(f.sheets)})" if f.sheets else "")
            note = f"; {f.truncated_cells} cells truncated" if f.truncated_cells else ""
            lines.append(f"| {f.table} | {f.format} | {f.rows:,}{note} | {where} |")
        lines += [f"| {t} | — | — | skipped: {why} |" for t, why in self.skipped.items()]
        return "\n".join(lines)


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


@dataclass(frozen=True)
class _Reading:
    """How tables are read: the date range and the sizes of pages and queries."""

    date_from: date | None
    date_to: date | None
    page_rows: int
    query_rows: int


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


def _latest_rows(warehouse: Warehouse, table_id: str, columns: list[str], filters: list[str], params: list,
                 reading: _Reading, latest: str = LATEST_VERSION) -> Iterator[pa.RecordBatch]:
    """The newest version of each id, by id, page by page (at least one batch: the schema).

    Ids are bounded by the largest one counted first: rows inserted while the table is read
    wait for the next export, and each id is in exactly one window."""
    query_rows = reading.query_rows
    where = " AND ".join(filters) or "TRUE"
    (stats,) = _query(warehouse, STATS.format(table=table_id, where=where), params)
    windows: list[tuple[int, int] | None] = [None]
    if not isinstance(stats["first_id"], int):  # STRING ids (Glific's whatsapp_forms): one query
        pass
    elif stats["versions"] > query_rows:
        count = math.ceil(stats["versions"] / query_rows)
        width = math.ceil((stats["last_id"] - stats["first_id"] + 1) / count)
        windows = [(start, min(start + width, stats["last_id"] + 1))
                   for start in range(stats["first_id"], stats["last_id"] + 1, width)]
    elif stats["versions"]:
        windows = [(stats["first_id"], stats["last_id"] + 1)]
    select = ", ".join(f"`{c}`" for c in columns)
    for window in windows:
        window_filters, window_params = filters, params
        if window is not None:
            window_filters = [*filters, ID_WINDOW]
            window_params = [*params, bigquery.ScalarQueryParameter("first_id", "INT64", window[0]),
                             bigquery.ScalarQueryParameter("end_id", "INT64", window[1])]
        statement = LATEST_ROWS.format(columns=select, table=table_id, where=" AND ".join(window_filters) or "TRUE",
                                  latest=latest)
        pages = _query(warehouse, statement, window_params, page_size=reading.page_rows)
        # REST pages, not the Storage Read API: no read-session permission or cost, and the
        # emulator cannot read a query's anonymous result table over the Storage Read API.
        yield from pages.to_arrow_iterable(bqstorage_client=None)


def _query(warehouse: Warehouse, statement: str, params: list, page_size: int | None = None) -> bigquery.table.RowIterator:
    return queries.run(warehouse, statement, params, labels={"glific_bq": "export"}, page_size=page_size).rows


def _check_tenant(batch: pa.RecordBatch, organization_id: int, table_id: str) -> None:
    """An export goes to one organization: a row of another one stops it (glific#4880)."""
    if "organization_id" in batch.schema.names and not only_tenant(batch, organization_id):
        raise ExportError(f"{table_id} holds rows of another organization than {organization_id}; export stopped")


# -- destinations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where exports go: a local directory, or a Cloud Storage bucket and object prefix."""

    path: str  # local directory, or the object prefix ('' for the bucket's root)
    bucket: str | None = None

    @classmethod
    def parse(cls, destination: str | os.PathLike) -> Destination:
        text = os.fspath(destination)
        if not text.startswith("gs://"):
            if "://" in text:
                raise ValueError(f"unsupported export destination {text!r}: a local directory or gs://bucket/prefix")
            return cls(text)
        bucket, _, prefix = text[len("gs://"):].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", bucket):
            raise ValueError(f"not a Cloud Storage bucket name in {text!r}")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"export prefix {prefix!r} must not contain . or ..")
        return cls("/".join(parts), bucket)

    def folder(self, dataset: str, stamp: str) -> str:
        """The URI (or local path) of one export's folder."""
        if self.bucket is None:
            return str(Path(self.path) / dataset / stamp)
        return "gs://" + "/".join(p for p in (self.bucket, self.path, dataset, stamp) if p)

    def object_name(self, dataset: str, stamp: str, filename: str) -> str:
        """The Cloud Storage object name of one file of an export."""
        return "/".join(p for p in (self.path, dataset, stamp, filename) if p)


class _Location:
    """One export's folder: files are written in ``workdir`` and published when complete."""

    def __init__(self, destination: Destination, dataset: str, stamp: str, warehouse: Warehouse, storage_client) -> None:
        self.destination, self.dataset, self.stamp = destination, dataset, stamp
        if destination.bucket is None:
            self.workdir = _new_folder(Path(destination.path) / dataset, stamp)
            self.uri = str(self.workdir)
            self._bucket = None
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="glific_bq_export_"))
            self.uri = destination.folder(dataset, stamp)
            if storage_client is None:
                from google.cloud import storage

                # The organization's own credentials, as for its dataset.
                storage_client = storage.Client(project=warehouse.project, credentials=warehouse.credentials)
            self._bucket = storage_client.bucket(destination.bucket)

    def publish(self, path: Path, filename: str) -> str:
        """Make a finished file visible under its final name; returns its path or URI."""
        if self._bucket is None:
            final = path.with_name(filename)
            os.replace(path, final)
            return str(final)
        name = self.destination.object_name(self.dataset, self.stamp, filename)
        self._bucket.blob(name).upload_from_filename(str(path), content_type=_CONTENT_TYPES[Path(filename).suffix])
        path.unlink()
        return f"gs://{self.destination.bucket}/{name}"

    def abort(self) -> None:
        """After a failure: remove partial files (published ones stay; there is no manifest)."""
        if self._bucket is None:
            for partial in self.workdir.glob("*.part"):
                partial.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self._bucket is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


_CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".json": "application/json",
}


def _new_folder(parent: Path, stamp: str) -> Path:
    """``parent/stamp``, or ``stamp-2``… when an export already started in that second."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ExportError(f"too many exports in {parent} at {stamp}")


# -- writers --------------------------------------------------------------------------------


class _TableWriter:
    format = ""

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def discard(self) -> None:
        """Stop after a failure, leaving nothing open."""


class _CsvWriter(_TableWriter):
    format = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pacsv.CSVWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        batch = _csv_batch(batch)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(str(self.path), batch.schema)
        self._writer.write_batch(batch)

    def close(self) -> Path:
        if self._writer is None:  # no batch at all: an empty file rather than none
            self.path.touch()
        else:
            self._writer.close()
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _ParquetWriter(_TableWriter):
    format = "parquet"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        # Without the BigQuery client's field metadata (google:sqlType:datetime): plain Arrow types.
        schema = pa.schema([pa.field(f.name, f.type, f.nullable) for f in batch.schema])
        batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self.path), schema)
        self._writer.write_batch(batch)

    def close(self) -> Path:
        if self._writer is None:
            pq.write_table(pa.table({}), str(self.path))
        else:
            self._writer.close()
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _Workbook:
    """One xlsx workbook written in constant memory: rows go to disk as they are written."""

    def __init__(self, path: Path, max_rows: int) -> None:
        import xlsxwriter

        self.path, self.max_rows = path, max_rows
        # Rows wait on disk as XML until the workbook is zipped: beside the export, not in /tmp.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=".xlsx-", dir=path.parent))
        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True,
            "tmpdir": str(self.tmpdir),
            "strings_to_numbers": False,
            "strings_to_formulas": False,  # a message "=1+1" stays text
            "strings_to_urls": False,
            "nan_inf_to_errors": True,
            "use_zip64": True,  # only used past 4 GB
        })
        self.header = self.book.add_format({"bold": True})
        self.formats = {
            "datetime": self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
            "date": self.book.add_format({"num_format": "yyyy-mm-dd"}),
            "time": self.book.add_format({"num_format": "hh:mm:ss"}),
        }

    def table(self, name: str) -> _SheetWriter:
        return _SheetWriter(self, name)

    def close(self) -> Path:
        try:
            self.book.close()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        try:
            self.close()
        except Exception:  # already failing: the partial file is removed by the caller
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class _SheetWriter(_TableWriter):
    """One table's sheets in the workbook: ``name``, ``name (2)``… past the row limit."""

    format = "xlsx"

    def __init__(self, workbook: _Workbook, table: str) -> None:
        self.workbook, self.table = workbook, table
        self.sheets: list[str] = []
        self.truncated = 0
        self._sheet = None
        self._next_row = 0  # next row of the current sheet

    def _new_sheet(self, names: list[str]) -> None:
        part = len(self.sheets) + 1
        suffix = "" if part == 1 else f" ({part})"
        name = self.table[: 31 - len(suffix)] + suffix  # Excel: 31 characters per sheet name
        self._sheet = self.workbook.book.add_worksheet(name)
        self.sheets.append(name)
        self._sheet.write_row(0, 0, names, self.workbook.header)
        self._sheet.freeze_panes(1, 0)
        self._next_row = 1

    def write(self, batch: pa.RecordBatch) -> None:
        if self._sheet is None:
            self._new_sheet(batch.schema.names)
        offset = 0
        while offset < batch.num_rows:
            if self._next_row >= self.workbook.max_rows:
                self._new_sheet(batch.schema.names)
            take = min(batch.num_rows - offset, self.workbook.max_rows - self._next_row)
            self._write_rows(batch.slice(offset, take))
            offset += take

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        sheet, first = self._sheet, self._next_row
        columns = [self._cells(sheet, column) for column in batch.columns]
        for i in range(batch.num_rows):
            row = first + i
            for c, (values, write, cell_format) in enumerate(columns):
                value = values[i]
                if value is not None:
                    write(row, c, value, cell_format)
        self._next_row += batch.num_rows

    def _cells(self, sheet, column: pa.Array) -> tuple[list, Callable, object]:
        """(values, write method, format) for one column of a page, converted vectorially."""
        kind = column.type
        formats = self.workbook.formats
        if pa.types.is_boolean(kind):
            return column.to_pylist(), sheet.write_boolean, None
        if pa.types.is_integer(kind):
            return column.to_pylist(), _write_integer(sheet), None
        if pa.types.is_floating(kind):
            return column.to_pylist(), sheet.write_number, None
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            is_date = pa.types.is_date(kind)
            micros = pc.multiply(column.cast(pa.int32()).cast(pa.int64()), 86_400_000_000) if is_date else (
                column.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64()))  # UTC instants when zoned
            serials = pc.add(pc.divide(micros.cast(pa.float64()), 86_400_000_000.0), float((date(1970, 1, 1) - _EXCEL_EPOCH).days))
            early = pc.less(serials, float(_EXCEL_FIRST_EXACT)).to_pylist()
            values = serials.to_pylist()
            if any(early):  # Excel cannot show these days: ISO text instead
                texts = column.to_pylist()
                values = [t.isoformat() if e else v for v, e, t in zip(values, early, texts)]
            return values, _write_number_or_text(sheet), formats["date" if is_date else "datetime"]
        if pa.types.is_time(kind):
            fraction = pc.divide(column.cast(pa.time64("us")).cast(pa.int64()).cast(pa.float64()), 86_400_000_000.0)
            return fraction.to_pylist(), sheet.write_number, formats["time"]
        if pa.types.is_decimal(kind):
            return column.to_pylist(), _write_decimal(sheet), None
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return self._texts(column), sheet.write_string, None
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            return self._texts(_base64(column)), sheet.write_string, None
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return self._texts(_json_arrays(column)), sheet.write_string, None
        if pa.types.is_null(kind):
            return [None] * len(column), sheet.write_string, None
        return self._texts(pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())), sheet.write_string, None

    def _texts(self, column: pa.Array) -> list[str | None]:
        """Strings, those past Excel's cell limit cut with the marker (and counted)."""
        values = column.to_pylist()
        long = pc.greater(pc.utf8_length(column), EXCEL_MAX_CHARS // 2)  # cannot exceed the limit otherwise
        if pc.any(long).as_py():
            for i in pc.indices_nonzero(pc.fill_null(long, False)).to_pylist():
                cut = _excel_cut(values[i])
                if cut is not values[i]:
                    values[i] = cut
                    self.truncated += 1
        return values

    def close(self) -> tuple[tuple[str, ...], int]:
        if self._sheet is None:  # no batch at all
            self._new_sheet([])
        return tuple(self.sheets), self.truncated


def _excel_cut(text: str) -> str:
    """``text`` if Excel can hold it, else its longest prefix that fits with the marker."""
    units = text.encode("utf-16-le")
    if len(units) <= 2 * EXCEL_MAX_CHARS:
        return text
    budget = 2 * (EXCEL_MAX_CHARS - len(TRUNCATION_MARKER.encode("utf-16-le")) // 2)
    return units[:budget].decode("utf-16-le", errors="ignore") + TRUNCATION_MARKER  # never half a surrogate pair


def _write_integer(sheet) -> Callable:
    def write(row: int, col: int, value: int, cell_format) -> None:
        if -_EXACT_INTEGER < value < _EXACT_INTEGER:
            sheet.write_number(row, col, value, cell_format)
        else:  # an Excel number is a double: keep every digit as text
            sheet.write_string(row, col, str(value), cell_format)
    return write


def _write_decimal(sheet) -> Callable:
    def write(row: int, col: int, value: Decimal, cell_format) -> None:
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            sheet.write_number(row, col, as_float, cell_format)
        else:
            sheet.write_string(row, col, str(value), cell_format)
    return write


def _write_number_or_text(sheet) -> Callable:
    def write(row: int, col: int, value: float | str, cell_format) -> None:
        if isinstance(value, str):
            sheet.write_string(row, col, value)
        else:
            sheet.write_number(row, col, value, cell_format)
    return write


# -- value conversions ------------------------------------------------------------------------


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The page with every column in its CSV text form where pyarrow's differs (see the table above)."""
    columns, fields = [], []
    for f, column in zip(batch.schema, batch.columns):
        kind = f.type
        if pa.types.is_timestamp(kind):
            column = _iso_datetimes(column)
        elif pa.types.is_time(kind):
            column = pc.replace_substring_regex(column.cast(pa.time64("us")).cast(pa.string()), r"\.000000$", "")
        elif pa.types.is_decimal(kind):
            column = column.cast(pa.string())
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            column = _base64(column)
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = _json_arrays(column)
        columns.append(column)
        fields.append(pa.field(f.name, column.type))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _iso_datetimes(column: pa.Array) -> pa.Array:
    """ISO 8601 text as Python's ``isoformat`` writes it; UTC instants end with ``Z``."""
    zoned = column.type.tz is not None
    if zoned:
        column = column.cast(pa.timestamp(column.type.unit))  # the UTC wall clock
    text = pc.strftime(column.cast(pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.000000$", "")
    return pc.binary_join_element_wise(text, "Z", "") if zoned else text


def _base64(column: pa.Array) -> pa.Array:
    return pa.array([None if v is None else base64.b64encode(v).decode() for v in column.to_pylist()], pa.string())


def _json_arrays(column: pa.Array) -> pa.Array:
    """REPEATED values as JSON array text; elements as BigQuery holds them (JSON text stays a string)."""
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False, default=_json_value) for v in column.to_pylist()],
        pa.string(),
    )


def _json_value(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


__all__ = [
    "EXCEL_MAX_ROWS", "EXCLUDED_COLUMNS", "FORMATS", "LATEST_VERSION", "TRUNCATION_MARKER",
    "Destination", "ExportError", "ExportResult", "ExportedFile", "export_tenant",
]
