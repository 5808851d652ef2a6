"""Comparing a tenant's ids in PostgreSQL and BigQuery: the one place that reads both id sets.

Used to propagate deletes (ids gone from the source) and by the reconciliation checks (ids
missing from BigQuery). BigQuery's ids are read first and the source's after, so that a row
inserted in between is never mistaken for a deleted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from google.cloud import bigquery
from psycopg import sql

from glific_bq.source import Source
from glific_bq.warehouse import Warehouse, queries


@dataclass(frozen=True)
class IdDifference:
    """Ids of one tenant-table up to ``upto_id``, compared."""

    source_rows: int
    warehouse_ids: int
    missing: list[int]  # at the source, not in BigQuery
    gone: list[int]  # in BigQuery, no longer at the source


def compare_ids(source: Source, warehouse: Warehouse, organization_id: int, table: str, upto_id: int | None = None) -> IdDifference:
    """Compare the ids of ``table`` for one organization (only ids ``<= upto_id`` if given: the
    range the watermark says was sent)."""
    upto = upto_id if upto_id is not None else 2**63 - 1
    in_warehouse = queries.run(
        warehouse, f"SELECT DISTINCT id FROM `{warehouse.dataset_ref}.{table}` WHERE id <= @upto",
        [bigquery.ScalarQueryParameter("upto", "INT64", upto)],
    ).rows.to_arrow(create_bqstorage_client=False).column("id").combine_chunks().cast(pa.int64())
    query = sql.SQL("SELECT id FROM {} WHERE organization_id = $1 AND id <= $2").format(sql.Identifier(table))
    with source.reader.cursor() as cur:
        cur.execute(query.as_string(None), parameters=(organization_id, upto))
        at_source = cur.fetch_arrow_table().column("id").combine_chunks()
    source.reader.commit()
    missing = pc.filter(at_source, pc.invert(pc.is_in(at_source, value_set=in_warehouse)))
    gone = pc.filter(in_warehouse, pc.invert(pc.is_in(in_warehouse, value_set=at_source)))
    return IdDifference(len(at_source), len(in_warehouse), missing.to_pylist(), gone.to_pylist())
