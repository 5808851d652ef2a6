"""The per-tenant loop: each organization's work runs with its own warehouse, and one tenant's
trouble (invalid credentials, an unknown timezone, BigQuery refusing its dataset) never stops
another's. Every job that walks tenants (sync, dedup, views, checks, the CLI) goes through
``each_tenant``; the failure comes back with the tenant, described with secrets masked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from glific_bq.redact import describe
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class TenantOutcome(Generic[T]):
    """What the work gave for one organization, or why it failed (``error``, secrets masked)."""

    organization: Organization
    result: T | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def each_tenant(
    organizations: Iterable[Organization],
    open_warehouse: Callable[[Organization], Warehouse],
    work: Callable[[Organization, Warehouse], T],
    *,
    what: str = "work",
) -> list[TenantOutcome[T]]:
    """Run ``work(organization, warehouse)`` for each organization with its own warehouse, closed
    afterwards. A tenant whose warehouse cannot be opened, or whose work raises, comes back failed
    (and is logged at ERROR, naming ``what``); the others go on."""
    outcomes = []
    for organization in organizations:
        try:
            warehouse = open_warehouse(organization)
        except Exception as error:  # this tenant only
            outcomes.append(_failed(organization, error, what))
            continue
        try:
            outcomes.append(TenantOutcome(organization, work(organization, warehouse)))
        except Exception as error:  # this tenant only
            outcomes.append(_failed(organization, error, what))
        finally:
            warehouse.close()
    return outcomes


def _failed(organization: Organization, error: Exception, what: str) -> TenantOutcome:
    message = describe(error)
    log.error("organization %s: %s failed: %s", organization.id, what, message)
    return TenantOutcome(organization, error=message)


def only_tenant(rows: pa.Table | pa.RecordBatch, organization_id: int, column: str = "organization_id") -> bool:
    """Whether every row of ``rows`` belongs to ``organization_id`` (a NULL belongs to no one):
    the one check that a page read for a tenant holds nothing of another (glific#4880), before
    it is written to the tenant's dataset or exported."""
    if not rows.num_rows:
        return True
    return bool(pc.all(pc.fill_null(pc.equal(rows.column(column), organization_id), False)).as_py())


def check_tenant(rows: pa.Table | pa.RecordBatch, organization_id: int, table: str,
                 column: str = "organization_id") -> None:
    """Refuse to write a page holding another organization's rows (glific#4880)."""
    if not only_tenant(rows, organization_id, column):
        raise RuntimeError(f"{table}: extract returned rows of another organization than {organization_id}")
