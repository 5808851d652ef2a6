"""Deletes: rows deleted in PostgreSQL, removed from BigQuery for ``PROPAGATE`` tables only.

Incremental sync cannot see a deleted row. For tables whose policy is ``DeletePolicy.PROPAGATE``
(contacts erased on request), a periodic key comparison per tenant finds ids present in BigQuery
and gone from the source, and deletes every version of them. ``KEEP`` tables (the default;
messages, which Glific purges after two months on purpose) are never touched: a purge at the
source never erases warehouse history.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
from google.cloud import bigquery
from psycopg import sql

from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Ids per DELETE statement.
_CHUNK = 10_000


def propagate_deletes(source: Source, warehouse: Warehouse, organization: Organization, spec: TableSpec) -> int:
    """Delete from BigQuery the rows of ``spec`` that no longer exist at the source; return how
    many ids were removed. Does nothing for ``KEEP`` tables.

    BigQuery's ids are read first, the source's after: a row inserted in between is in the
    source list and never mistaken for a deleted one.
    """
    if spec.deletes is not DeletePolicy.PROPAGATE:
        return 0
    table_id = f"{warehouse.dataset_ref}.{spec.name}"
    warehouse_ids = warehouse.client.query(f"SELECT DISTINCT id FROM `{table_id}`").to_arrow(
        create_bqstorage_client=False
    ).column("id")
    query = sql.SQL("SELECT id FROM {} WHERE organization_id = $1").format(sql.Identifier(spec.name)).as_string(None)
    with source.reader.cursor() as cur:
        cur.execute(query, parameters=(organization.id,))
        source_ids = cur.fetch_arrow_table().column("id")
    source.reader.commit()
    gone = pc.filter(warehouse_ids, pc.invert(pc.is_in(warehouse_ids, value_set=pa.chunked_array(source_ids).combine_chunks())))
    gone_ids = gone.to_pylist()
    for start in range(0, len(gone_ids), _CHUNK):
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ArrayQueryParameter("ids", "INT64", gone_ids[start:start + _CHUNK])]
        )
        warehouse.client.query(f"DELETE FROM `{table_id}` WHERE id IN UNNEST(@ids)", job_config=config).result()
    if gone_ids:
        log.info("organization %s, %s: %s row(s) deleted at the source removed from BigQuery",
                 organization.id, spec.name, len(gone_ids))
    return len(gone_ids)
