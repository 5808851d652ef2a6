"""Redrive: the rows BigQuery refused, sent again once fixed at the source (``glific-bq redrive``).

With the sync's safeguards: the tenant-table's lock, the per-page tenant check, and the dead
letters (``glific_bq.warehouse.dead_letters``, by source row id) read a page at a time.
"""

from __future__ import annotations

from glific_bq import extract, sent_months, watermarks
from glific_bq.catalog import TableSpec
from glific_bq.extract import ORGANIZATION_COLUMN, Pass
from glific_bq.isolation import check_tenant
from glific_bq.layouts.rows import prepare
from glific_bq.source import Source
from glific_bq.sync import TableSync, table_shape
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse

#: Dead letters re-driven per page (one read of the source, one append, one delete).
REDRIVE_PAGE_IDS = 10_000


def redrive(source: Source, warehouse: Warehouse, organization: Organization, spec: TableSpec,
            *, page_ids: int = REDRIVE_PAGE_IDS) -> TableSync:
    """Send again, in their current version, the rows of ``spec`` that BigQuery refused before.

    Rows that now load, or no longer exist at the source, leave the dead-letter table; rows still
    refused stay there with their first error. With the sync's safeguards: under the
    tenant-table's lock (``busy`` while a sync holds it), every page checked to hold only this
    organization's rows, and the letters read ``page_ids`` at a time (there may be millions).
    """
    result = TableSync(organization.id, spec.name, dataset=warehouse.dataset_ref)
    shape = table_shape(source.control, warehouse, spec, organization)
    if shape is None:
        result.status, result.message = "missing", f"table {spec.source} does not exist in the source database"
        return result
    result.warnings = list(shape.warnings)
    timezone_name = organization.checked_timezone()
    query = extract.build_query(shape, Pass.BY_ID)
    with watermarks.exclusive(source.control, organization.id, spec.name) as acquired:
        if not acquired:
            result.status, result.message = "busy", "another run is syncing this table"
            return result
        target, after = None, None
        while ids := warehouse.dead_letter_ids(spec.name, after=after, limit=page_ids):
            after = ids[-1]
            target = target or warehouse.ensure_table(spec, list(shape.schema))
            rows, snapshot = extract.rows_by_id(source.reader, query, organization.id, timezone_name, ids,
                                                export_snapshot=bool(shape.joins))
            if not shape.cross_organization:  # the platform's: checked once, in _shape
                check_tenant(rows, organization.id, spec.name, ORGANIZATION_COLUMN)
            rows, rejected = prepare(rows, shape, timezone_name, source.joiner, snapshot, organization.id)
            source.reader.commit()
            sent_months.record(source.control, organization.id, spec.name, warehouse.destination, rows, spec.partition_column)
            refused = warehouse.append(target, rows)  # ``rows`` holds none of ``rejected``
            still_refused = {r.source_id for r in rejected + refused}
            warehouse.forget_dead_letters(spec.name, [i for i in ids if i not in still_refused])
            result.updated += rows.num_rows - len(refused)
            result.set_aside += len(still_refused)
    return result
