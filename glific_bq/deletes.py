"""Deletes: rows deleted in PostgreSQL, removed from BigQuery for ``PROPAGATE`` tables only.

Incremental sync cannot see a deleted row. For tables whose policy is ``DeletePolicy.PROPAGATE``
(contacts erased on request), a periodic key comparison per tenant finds ids present in BigQuery
and gone from the source, and deletes every version of them. ``KEEP`` tables (the default;
messages, which Glific purges after two months on purpose) are never touched: a purge at the
source never erases warehouse history.
"""

from __future__ import annotations

import logging

from google.cloud import bigquery

from glific_bq.reconcile import compare_ids
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, queries

log = logging.getLogger(__name__)

#: Ids per DELETE statement.
_CHUNK = 10_000


def propagate_deletes(source: Source, warehouse: Warehouse, organization: Organization, spec: TableSpec) -> int:
    """Delete from BigQuery the rows of ``spec`` that no longer exist at the source; return how
    many ids were removed. Does nothing for ``KEEP`` tables."""
    if spec.deletes is not DeletePolicy.PROPAGATE:
        return 0
    table_id = f"{warehouse.dataset_ref}.{spec.name}"
    gone_ids = compare_ids(source, warehouse, organization.id, spec.name).gone
    for start in range(0, len(gone_ids), _CHUNK):
        queries.dml(warehouse, f"DELETE FROM `{table_id}` WHERE id IN UNNEST(@ids)",
                    [bigquery.ArrayQueryParameter("ids", "INT64", gone_ids[start:start + _CHUNK])])
    if gone_ids:
        log.info("organization %s, %s: %s row(s) deleted at the source removed from BigQuery",
                 organization.id, spec.name, len(gone_ids))
    return len(gone_ids)
