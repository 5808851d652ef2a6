"""Comparing a tenant's ids in PostgreSQL and BigQuery: the one place that reads both id sets.

Used to propagate deletes (ids gone from the source) and by the reconciliation checks (ids
missing from BigQuery). BigQuery's ids are read first and the source's after, so that a row
inserted in between is never mistaken for a deleted one.

In the Glific layout the ids compared are those of Glific's BigQuery table and of the source rows
it exports (``glific.exported_ids``): for ``flows`` the flow ids of published and archived
``flow_revisions`` (a flow is present once any of its revisions is; the watermark bounds revision
ids, so BigQuery's flow ids are not bounded), for ``contacts`` and ``flow_results`` those of
non-simulator contacts. Nothing reads ``organization_id`` from BigQuery.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from google.cloud import bigquery
from psycopg import sql

from glific_bq.layouts import Layout, glific
from glific_bq.source import Source
from glific_bq.warehouse import Warehouse, queries


@dataclass(frozen=True)
class IdDifference:
    """Ids of one tenant-table up to ``upto_id``, compared."""

    source_rows: int
    warehouse_ids: int
    missing: list[int]  # at the source, not in BigQuery
    gone: list[int]  # in BigQuery, no longer at the source


def compare_ids(source: Source, warehouse: Warehouse, organization_id: int, table: str, upto_id: int | None = None,
                in_bigquery: str | None = None) -> IdDifference:
    """Compare the ids of ``table`` for one organization (only ids ``<= upto_id`` if given: the
    range the watermark says was sent), in BigQuery those of ``in_bigquery`` (default: ``table``;
    the reconciliation reads a history table's)."""
    upto = upto_id if upto_id is not None else 2**63 - 1
    bigquery_table = in_bigquery or table
    warehouse_ids = f"SELECT DISTINCT id FROM `{warehouse.dataset_ref}.{bigquery_table}` WHERE id <= @upto"
    query = sql.SQL("SELECT id FROM {} WHERE organization_id = $1 AND id <= $2").format(sql.Identifier(table))
    if warehouse.config.layout is Layout.GLIFIC:
        id_sql, where, own = glific.exported_ids(table)
        bounded = "SAFE_CAST(id AS INT64) <= @upto" if own else "TRUE"
        warehouse_ids = (f"SELECT DISTINCT SAFE_CAST(id AS INT64) AS id FROM `{warehouse.dataset_ref}.{bigquery_table}` "
                         f"WHERE {bounded}")
        query = sql.SQL("SELECT DISTINCT {} AS id FROM {} t WHERE t.organization_id = $1 AND t.id <= $2{}").format(
            sql.SQL(id_sql), sql.Identifier(glific.source_table(table)),
            sql.SQL(f" AND ({where})") if where else sql.SQL(""),
        )
    in_warehouse = queries.run(
        warehouse, warehouse_ids, [bigquery.ScalarQueryParameter("upto", "INT64", upto)],
    ).rows.to_arrow(create_bqstorage_client=False).column("id").combine_chunks().cast(pa.int64())
    with source.reader.cursor() as cur:
        cur.execute(query.as_string(None), parameters=(organization_id, upto))
        at_source = cur.fetch_arrow_table().column("id").combine_chunks()
    source.reader.commit()
    missing = pc.filter(at_source, pc.invert(pc.is_in(at_source, value_set=in_warehouse)))
    gone = pc.filter(in_warehouse, pc.invert(pc.is_in(in_warehouse, value_set=at_source)))
    return IdDifference(len(at_source), len(in_warehouse), missing.to_pylist(), gone.to_pylist())
