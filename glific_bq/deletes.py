"""Deletes: rows deleted in PostgreSQL, removed from BigQuery for ``PROPAGATE`` tables only.

Incremental sync cannot see a deleted row. For tables whose policy is ``DeletePolicy.PROPAGATE``
(contacts erased on request), a periodic key comparison per tenant finds ids present in BigQuery
and gone from the source, and deletes every version of them: in history mode
(``glific_bq.clean``) from the clean table and from ``<table>_history`` too, the one exception to
a history never deleted from (an erased contact is erased, and the clean table stays the newest
version of what the history holds). ``KEEP`` tables (the default; messages, which Glific purges
after two months on purpose) are never touched: a purge at the source never erases warehouse
history.

A pass never removes a mass of ids at once: when more than ``MASS_DELETE_SHARE`` of a table's ids
in BigQuery (and more than ``MASS_DELETE_FLOOR``) are gone from the source, it deletes nothing and
raises ``MassDeleteRefused`` (an organization erased, a source restored from an old backup, a
wrong database URL: none of them is "these rows were deleted"). An operator who knows the deletion
is real confirms it for that tenant-table (``confirm``; ``dedup_job``'s ``confirm_deletes``).
"""

from __future__ import annotations

import logging

from google.cloud import bigquery

from glific_bq.reconcile import compare_ids
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, queries
from glific_bq.warehouse.config import Versions
from glific_bq.warehouse.tables import history_table

log = logging.getLogger(__name__)

#: Ids per DELETE statement.
_CHUNK = 10_000
#: The largest share of a table's ids one pass deletes without confirmation...
MASS_DELETE_SHARE = 0.10
#: ...unless it is at most this many ids (one contact erased in a small organization).
MASS_DELETE_FLOOR = 10


class MassDeleteRefused(RuntimeError):
    """A delete pass would remove too many ids at once; nothing was deleted."""

    def __init__(self, organization_id: int, table: str, gone: int, ids: int) -> None:
        self.organization_id, self.table, self.gone, self.ids = organization_id, table, gone, ids
        super().__init__(
            f"organization {organization_id}, {table}: {gone} of {ids} id(s) in BigQuery are gone from the "
            f"source at once, more than {MASS_DELETE_SHARE:.0%}; nothing deleted. If they really were deleted, "
            f"confirm it: dedup_job with confirm_deletes: [\"{organization_id}/{table}\"]")


def propagate_deletes(source: Source, warehouse: Warehouse, organization: Organization, spec: TableSpec,
                      *, confirm: bool = False) -> int:
    """Delete from BigQuery the rows of ``spec`` that no longer exist at the source; return how
    many ids were removed. Does nothing for ``KEEP`` tables. Raises ``MassDeleteRefused`` (and
    deletes nothing) for more than ``MASS_DELETE_SHARE`` of the table's ids, unless ``confirm``."""
    if spec.deletes is not DeletePolicy.PROPAGATE:
        return 0
    table_id = f"{warehouse.dataset_ref}.{spec.name}"
    difference = compare_ids(source, warehouse, organization.id, spec.name)
    gone_ids = difference.gone
    if not confirm and len(gone_ids) > max(MASS_DELETE_FLOOR, MASS_DELETE_SHARE * difference.warehouse_ids):
        raise MassDeleteRefused(organization.id, spec.name, len(gone_ids), difference.warehouse_ids)
    # In history mode the history loses them first: the clean table is what the next pass compares,
    # so a pass that dies in between finds them again.
    history_id = f"{warehouse.dataset_ref}.{history_table(spec.name)}"
    history = warehouse.config.versions is Versions.HISTORY and gone_ids and warehouse.table_exists(history_table(spec.name))
    for target in ([history_id] if history else []) + [table_id]:
        for start in range(0, len(gone_ids), _CHUNK):
            queries.dml(warehouse, f"DELETE FROM `{target}` WHERE id IN UNNEST(@ids)",
                        [bigquery.ArrayQueryParameter("ids", "INT64", gone_ids[start:start + _CHUNK])])
    if gone_ids:
        log.info("organization %s, %s: %s row(s) deleted at the source removed from BigQuery",
                 organization.id, spec.name, len(gone_ids))
    return len(gone_ids)
