"""Reading a tenant's tables for export: the newest version of each id, by id, page by page over
BigQuery's REST API, in id windows for large tables, each page checked to hold only the tenant's
rows."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
from google.cloud import bigquery

from glific_bq.dedup import IS_NEWEST_VERSION, NEWEST_FIRST
from glific_bq.export.result import ExportError
from glific_bq.isolation import only_tenant
from glific_bq.warehouse import Warehouse, queries

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Reading:
    """How tables are read: the date range and the sizes of pages and queries."""

    date_from: date | None
    date_to: date | None
    page_rows: int
    query_rows: int


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
