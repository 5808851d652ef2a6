"""Checks of one tenant-table's copy in BigQuery, in plain Python (the Dagster asset checks in
``defs/checks.py`` call these): each says which tenant, which table, and by how much.

- ``duplicate_ids``: the ``<table>_latest`` view must hold each id once (in history mode, the
  clean table itself).
- ``reconcile``: every source row up to the watermark is in BigQuery. Extra ids in BigQuery are
  fine for ``keep`` tables (Glific purges old messages on purpose) and, for ``propagate`` tables,
  until the next dedup run removes them.
- ``lag``: how long the oldest change waiting for this tenant-table has waited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from glific_bq import plan, watermarks
from glific_bq.dedup import version_key
from glific_bq.isolation import each_tenant
from glific_bq.reconcile import compare_ids
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.roster import Roster
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.views import latest_sql_for, latest_view_name
from glific_bq.warehouse import Warehouse
from glific_bq.warehouse.config import Versions
from glific_bq.warehouse.tables import history_table


@dataclass(frozen=True)
class Finding:
    """One check of one tenant-table: passed or not, and the numbers behind it."""

    organization_id: int
    table: str
    passed: bool
    summary: str
    numbers: dict[str, int | float] = field(default_factory=dict)


def duplicate_ids(warehouse: Warehouse, organization_id: int, table: str) -> Finding:
    """Runs the ``_latest`` view's own SELECT, so it checks the logic whether the view exists yet or not.
    An "id" is the table's ``version_key`` (Glific's flows: one row per ``(id, inserted_at)``)."""
    select, reason = latest_sql_for(warehouse, table)
    if select is None:
        return Finding(organization_id, table, False, f"{latest_view_name(table)} cannot be built: {reason}")
    key = ", ".join(version_key(warehouse.config.layout, table))
    (row,) = warehouse.query(
        f"SELECT IFNULL(SUM(n), 0) AS n, COUNT(*) AS ids FROM (SELECT COUNT(*) AS n FROM ({select}) GROUP BY {key})"
    )
    extra = row["n"] - row["ids"]
    return Finding(organization_id, table, extra == 0,
                   f"{extra} duplicated id(s) in {latest_view_name(table)}" if extra else "each id once",
                   {"rows": row["n"], "ids": row["ids"], "duplicates": extra})


def reconcile(source: Source, warehouse: Warehouse, organization_id: int, spec: TableSpec) -> Finding:
    """Every source row up to the watermark is in BigQuery: in history mode in the history, which
    the sync writes (the clean table catches up at the next refresh)."""
    upto = watermarks.get(source.control, organization_id, spec.name, warehouse.destination).table_id
    history = history_table(spec.name)
    written = history if warehouse.config.versions is Versions.HISTORY and warehouse.table_exists(history) else None
    diff = compare_ids(source, warehouse, organization_id, spec.name, upto_id=upto, in_bigquery=written)
    numbers = {"source_rows": diff.source_rows, "warehouse_ids": diff.warehouse_ids,
               "missing": len(diff.missing), "not_at_source": len(diff.gone), "up_to_id": upto}
    if diff.missing:
        summary = (f"{len(diff.missing)} of {diff.source_rows} source row(s) up to id {upto} missing "
                   f"from BigQuery (first ids: {diff.missing[:10]})")
    else:
        kept = "kept by policy" if spec.deletes is DeletePolicy.KEEP else "removed at the next dedup"
        summary = f"all {diff.source_rows} source rows up to id {upto} present" + (
            f"; {len(diff.gone)} id(s) no longer at the source, {kept}" if diff.gone else "")
    return Finding(organization_id, spec.name, not diff.missing, summary, numbers)


def waiting_organizations(source: Source, spec: TableSpec, tenants: Mapping[int, str]) -> set[int]:
    """Tenants (``Roster.destinations``) with changes of ``spec`` waiting: one query for all of them (``plan``)."""
    return set(plan.dirty_organizations(source.control, spec, tenants))


def lag(source: Source, organization_id: int, spec: TableSpec, max_lag_seconds: float, waiting: set[int],
        destination: str | None = None) -> Finding:
    """Fails when changes have waited longer than ``max_lag_seconds`` since the watermark (of
    ``destination``; by default the pair's only one) last moved.

    ``waiting`` is ``waiting_organizations(source, spec, tenants)``, computed once for all tenants.
    """
    waiting = organization_id in waiting
    watermark = watermarks.get(source.control, organization_id, spec.name, destination)
    moved = watermark.advanced_at or datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = (datetime.now(timezone.utc) - moved).total_seconds() if waiting else 0.0
    passed = seconds <= max_lag_seconds
    summary = (f"changes waiting for {seconds:.0f} s (limit {max_lag_seconds:.0f} s)" if waiting
               else "nothing waiting")
    return Finding(organization_id, spec.name, passed, summary, {"lag_seconds": round(seconds, 1)})


@dataclass(frozen=True)
class TableFindings:
    """One table's checks across tenants: one finding per tenant and check."""

    unique: list[Finding]
    reconciled: list[Finding]
    fresh: list[Finding]


def check_table(source: Source, roster: Roster, open_warehouse: Callable[[Organization], Warehouse],
                spec: TableSpec, max_lag_seconds: float) -> TableFindings:
    """Every tenant's checks of ``spec`` (``roster``: who is synced). A tenant whose warehouse
    cannot be opened or queried (invalid credentials, say) fails its own ``latest_ids_unique`` and
    ``reconciled`` findings with the reason; every other tenant is still checked
    (``isolation.each_tenant``)."""
    waiting = waiting_organizations(source, spec, roster.destinations)
    organizations = [t.organization for t in roster.tenants]

    def in_bigquery(organization: Organization, warehouse: Warehouse) -> tuple[Finding, Finding] | None:
        if not warehouse.table_exists(spec.name):
            return None
        return (duplicate_ids(warehouse, organization.id, spec.name),
                reconcile(source, warehouse, organization.id, spec))

    findings = TableFindings([], [], [])
    for outcome in each_tenant(organizations, open_warehouse, in_bigquery, what=f"checks of {spec.name}"):
        if outcome.failed:
            summary = f"could not be checked: {outcome.error}"
            findings.unique.append(Finding(outcome.organization.id, spec.name, False, summary))
            findings.reconciled.append(Finding(outcome.organization.id, spec.name, False, summary))
        elif outcome.result is not None:
            findings.unique.append(outcome.result[0])
            findings.reconciled.append(outcome.result[1])
    findings.fresh.extend(lag(source, t.id, spec, max_lag_seconds, waiting, t.destination) for t in roster.tenants)
    return findings
