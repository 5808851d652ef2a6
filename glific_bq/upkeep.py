"""The dedup run across tenants, in plain Python (the ``dedup_job`` op calls it): per tenant, keep
the newest version of each row of every table (``dedup``; in history mode, tables with a history
are refreshed from it instead: ``clean``), remember the pass for the next incremental one
(``watermarks.record_dedup``, ``sent_months.start``) and remove rows deleted at the source from
``propagate`` tables (``deletes``). One tenant's or one table's failure never stops the others
(``isolation.each_tenant``); it comes back with its error."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from glific_bq import platform, sent_months, watermarks
from glific_bq.clean import refresh_tenant
from glific_bq.dedup import dedup_tenant, lower_bound
from glific_bq.deletes import MassDeleteRefused, propagate_deletes
from glific_bq.isolation import each_tenant
from glific_bq.redact import describe
from glific_bq.registry import TableSpec, platform_tables_for
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse
from glific_bq.warehouse.config import Versions
from glific_bq.warehouse.tables import history_table


@dataclass(frozen=True)
class TableUpkeep:
    """What the run did to one tenant-table (``metadata``), or why it failed (``error``; ``table``
    is empty when the whole tenant failed, for example on invalid credentials)."""

    organization_id: int
    table: str
    metadata: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    def describe_failure(self) -> str:
        where = f"organization {self.organization_id}" + (f", {self.table}" if self.table else "")
        return f"{where}: {self.error}"


def dedup_tenants(
    source: Source,
    open_warehouse: Callable[[Organization], Warehouse],
    organizations: Iterable[Organization],
    tables: Sequence[TableSpec],
    *,
    full: bool = False,
    buffer_window: timedelta = timedelta(0),
    now: datetime | None = None,
    confirm_deletes: Collection[tuple[int, str]] = (),
) -> list[TableUpkeep]:
    """Deduplicate ``tables`` of each organization and propagate deletes; one ``TableUpkeep`` per
    tenant-table (one per tenant that failed as a whole).

    ``full``: examine every id, not only those changed since each table's last pass.
    ``buffer_window``: rows sent this recently are never touched (legacy streaming only).
    ``confirm_deletes``: (organization id, table) pairs whose mass delete an operator confirmed
    (``deletes.MassDeleteRefused``); a refused one fails with ``metadata["deletes_refused"]``.
    """
    now = now or datetime.now(timezone.utc)
    platform_id = platform.organization_id(source.control)

    def tenant(organization: Organization, warehouse: Warehouse) -> list[TableUpkeep]:
        # The platform organization's own tables too (its change log skipped by dedup itself).
        platform_tables = platform_tables_for(warehouse.config.layout) if organization.id == platform_id else ()
        own = [*tables, *(spec for spec in platform_tables if spec not in tables)]
        by_name = {spec.name: spec for spec in own}
        refreshed = [spec for spec in own if _keeps_history(warehouse, spec)]
        in_place = [spec for spec in own if spec not in refreshed]
        passes: list = refresh_tenant(source.control, warehouse, refreshed, buffer_window=buffer_window, now=now,
                                      full=full)
        since, months = _dedup_bounds(source, warehouse, organization, in_place, full, buffer_window)
        passes += dedup_tenant(warehouse, in_place, since, buffer_window, now=now, months=months)
        done = []
        for result in passes:
            metadata = result.as_metadata()
            if result.error:
                done.append(TableUpkeep(organization.id, result.table, metadata, result.error))
                continue
            if result.skipped_reason is None:
                spec = by_name[result.table]
                if spec not in refreshed:  # a refresh moves its own mark
                    watermarks.record_dedup(source.control, organization.id, spec.name, warehouse.destination, now)
                    sent_months.start(source.control, organization.id, spec.name, warehouse.destination, now)
                confirm = (organization.id, spec.name) in confirm_deletes
                try:
                    metadata["rows_deleted_at_source_removed"] = propagate_deletes(
                        source, warehouse, organization, spec, confirm=confirm)
                except MassDeleteRefused as refused:
                    metadata["deletes_refused"] = refused.gone
                    done.append(TableUpkeep(organization.id, result.table, metadata, str(refused)))
                    continue
                except Exception as error:  # this table only
                    done.append(TableUpkeep(organization.id, result.table, metadata, describe(error)))
                    continue
            done.append(TableUpkeep(organization.id, result.table, metadata))
        return done

    results: list[TableUpkeep] = []
    for outcome in each_tenant(organizations, open_warehouse, tenant, what="dedup"):
        results.extend(outcome.result or [TableUpkeep(outcome.organization.id, "", error=outcome.error)])
    return results


def _keeps_history(warehouse: Warehouse, spec: TableSpec) -> bool:
    """Whether this tenant-table is refreshed from its history (history mode, and the sync wrote
    one: ``tables.keeps_history``) rather than deduplicated in place."""
    return warehouse.config.versions is Versions.HISTORY and warehouse.table_exists(history_table(spec.name))


def _dedup_bounds(source: Source, warehouse: Warehouse, organization: Organization, specs: Sequence[TableSpec],
                  full: bool, buffer_window: timedelta) -> tuple[dict | None, dict]:
    """``(since, months)`` of ``dedup_tenant`` for ``specs``: each table's previous pass, and the
    months its sends touched since that pass's lower bound (``sent_months``; None when not known)."""
    if full:
        return None, {}
    since = {spec.name: watermarks.get(source.control, organization.id, spec.name, warehouse.destination).deduped_at
             for spec in specs}
    months = {}
    for spec in specs:
        lower = lower_bound(since[spec.name], buffer_window)
        if lower is not None:
            months[spec.name] = sent_months.since(source.control, organization.id, spec.name, warehouse.destination,
                                                  lower)
    return since, months
