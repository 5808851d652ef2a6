"""Asset checks on every ``bigquery/<table>``, across tenants: unique ids in the ``_latest`` view,
reconciliation with the source, freshness. A failing check names the tenants and by how much."""

import dagster as dg

from glific_bq import upkeep_checks
from glific_bq.registry import TABLES, TableSpec
from glific_bq.roster import select_tenants

from .assets import table_key
from .resources import GlificBigQuery, GlificPostgres

#: A tenant-table whose changes waited longer than this fails the ``fresh`` check.
MAX_LAG_SECONDS = 15 * 60


def _result(key: dg.AssetKey, name: str, findings: list[upkeep_checks.Finding], severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    failing = [f for f in findings if not f.passed]
    report = "\n".join(f"- organization {f.organization_id}: {f.summary}" for f in (failing or findings))
    return dg.AssetCheckResult(
        asset_key=key, check_name=name, passed=not failing, severity=severity,
        metadata={"tenants_checked": len(findings), "tenants_failing": len(failing),
                  "details": dg.MetadataValue.md(report or "no tenants")},
    )


def table_checks(spec: TableSpec) -> dg.AssetChecksDefinition:
    key = table_key(spec)

    @dg.multi_asset_check(
        name=f"{spec.name}_checks",
        specs=[
            dg.AssetCheckSpec("latest_ids_unique", asset=key, description=f"{spec.name}_latest holds each id once, for every tenant"),
            dg.AssetCheckSpec("reconciled", asset=key, description="every source row up to the watermark is in BigQuery"),
            dg.AssetCheckSpec("fresh", asset=key, description=f"no tenant's changes wait longer than {MAX_LAG_SECONDS // 60} minutes"),
        ],
    )
    def _checks(postgres: GlificPostgres, bigquery: GlificBigQuery):
        with postgres.source() as source:
            roster = select_tenants(source.control, bigquery.config())
            findings = upkeep_checks.check_table(source, roster, bigquery.open_warehouse, spec, MAX_LAG_SECONDS)
        yield _result(key, "latest_ids_unique", findings.unique, dg.AssetCheckSeverity.ERROR)
        yield _result(key, "reconciled", findings.reconciled, dg.AssetCheckSeverity.ERROR)
        yield _result(key, "fresh", findings.fresh, dg.AssetCheckSeverity.WARN)

    return _checks


asset_checks = [table_checks(spec) for spec in TABLES]

checks_job = dg.define_asset_job(
    "checks_job",
    selection=dg.AssetSelection.checks(*asset_checks),
    description="Run every table's checks across tenants (scheduled after each dedup).",
)
