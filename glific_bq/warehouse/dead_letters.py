"""The dead-letter table: rows BigQuery refused, kept per organization with their error and
source id until ``redrive`` sends them again.

A letter's ``id`` is the id of the source row the refused row was made from (``Rejected.source_id``),
in every layout: an integer even where the layout's own ``id`` is text (Glific's
``whatsapp_forms``), and the row ``redrive`` must read again even where the layout's ``id`` is
another table's (Glific's ``flows``: the flow's id, the source row a revision). The row as sent,
with the layout's id, is in ``row_json``. Letters written before the id meant the source row kept
the layout's id, which is the source id in the raw layout and in every Glific table but ``flows``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pyarrow as pa
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq.warehouse import queries
from glific_bq.warehouse.errors import WarehouseError
from glific_bq.warehouse.tables import Target, table_exists
from glific_bq.warehouse.writes import Rejected, RowsRefused, write

if TYPE_CHECKING:
    from glific_bq.warehouse.dataset import Warehouse

#: Per-organization table of rows BigQuery refused.
DEAD_LETTERS = "glific_bq_dead_letters"
DEAD_LETTER_SCHEMA = (
    SchemaField("table_name", "STRING", description="source table"),
    SchemaField("id", "INT64", description="id of the source row (of the source table, whatever the row's own id)"),
    SchemaField("error", "STRING", description="why BigQuery refused the row"),
    SchemaField("row_json", "STRING", description="the row as sent, as JSON"),
    SchemaField("bq_inserted_at", "TIMESTAMP", description="when it was set aside"),
)


def set_aside(warehouse: Warehouse, table: str, rejected: list[Rejected]) -> None:
    """Keep refused rows, their error and their source key in the organization's
    ``glific_bq_dead_letters`` table, where ``redrive`` finds them once fixed."""
    target = _dead_letter_target(warehouse)
    now = datetime.now(timezone.utc)
    letters = pa.Table.from_pylist(
        [
            {"table_name": table, "id": r.source_id, "error": r.error[:10_000],
             "row_json": json.dumps(r.row, default=str, ensure_ascii=False), "bq_inserted_at": now}
            for r in rejected
        ],
        schema=pa.schema([("table_name", pa.string()), ("id", pa.int64()), ("error", pa.string()),
                          ("row_json", pa.string()), ("bq_inserted_at", pa.timestamp("us", tz="UTC"))]),
    )
    try:
        write(warehouse, target, letters)
    except RowsRefused as error:
        raise WarehouseError(f"could not set aside refused rows of {table}: {error}") from error


def dead_letter_ids(warehouse: Warehouse, table: str, after: int | None = None, limit: int | None = None) -> list[int]:
    """Source ids of the rows of ``table`` set aside and not yet re-driven, in order: those above
    ``after``, at most ``limit`` of them (a page: there may be millions)."""
    if not table_exists(warehouse, DEAD_LETTERS):
        return []
    bounds = " AND id > @after" if after is not None else ""
    rows = warehouse.query(
        f"SELECT DISTINCT id FROM `{warehouse.dataset_ref}.{DEAD_LETTERS}` "
        f"WHERE table_name = @table AND id IS NOT NULL{bounds} ORDER BY id" + (f" LIMIT {int(limit)}" if limit else ""),
        table=table, **({"after": after} if after is not None else {}),
    )
    return [r["id"] for r in rows]


def forget_dead_letters(warehouse: Warehouse, table: str, ids: list[int]) -> None:
    """Remove re-driven rows from the dead-letter table."""
    if ids:
        queries.dml(
            warehouse,
            f"DELETE FROM `{warehouse.dataset_ref}.{DEAD_LETTERS}` WHERE table_name = @table AND id IN UNNEST(@ids)",
            [bigquery.ScalarQueryParameter("table", "STRING", table), bigquery.ArrayQueryParameter("ids", "INT64", ids)],
        )


def _dead_letter_target(warehouse: Warehouse) -> Target:
    table_id = f"{warehouse.dataset_ref}.{DEAD_LETTERS}"
    warehouse.client.create_table(
        bigquery.Table(table_id, schema=list(DEAD_LETTER_SCHEMA)), exists_ok=True, **warehouse.calls.calls
    )
    return Target(table_id, DEAD_LETTER_SCHEMA)
