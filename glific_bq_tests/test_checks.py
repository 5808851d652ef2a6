"""Checks of each tenant-table: unique ids in the latest view, reconciliation, freshness."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from glific_bq import upkeep_checks
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.roster import select_tenants
from glific_bq.sync import sync_table
from glific_bq.warehouse import Warehouse

from .helpers import NOTES_DDL, add_notes, add_organization, bigquery_resource, destinations

NOTES = TableSpec("notes", deletes=DeletePolicy.KEEP)


@pytest.fixture
def synced(db, source, warehouse_for):
    db.execute(NOTES_DDL)
    org = add_organization(db)
    ids = add_notes(db, org, [f"n{i}" for i in range(6)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    db.execute("UPDATE notes SET body = 'v2', updated_at = updated_at + interval '1 second' WHERE id = %s", (ids[0],))
    sync_table(source, warehouse, org, NOTES)  # two versions of ids[0]
    return org, ids, warehouse


def test_a_synced_table_passes_every_check(synced, source, warehouse_config):
    org, ids, warehouse = synced
    assert upkeep_checks.duplicate_ids(warehouse, org.id, "notes").passed
    reconciled = upkeep_checks.reconcile(source, warehouse, org.id, NOTES)
    assert reconciled.passed and reconciled.numbers["missing"] == 0 and reconciled.numbers["source_rows"] == 6
    assert upkeep_checks.lag(source, org.id, NOTES, 60, upkeep_checks.waiting_organizations(source, NOTES, destinations(source.control, warehouse_config))).passed


def test_reconciliation_names_a_row_missing_from_bigquery(synced, source):
    org, ids, warehouse = synced
    warehouse.client.query(f"DELETE FROM `{warehouse.dataset_ref}.notes` WHERE id = {ids[3]}").result()

    finding = upkeep_checks.reconcile(source, warehouse, org.id, NOTES)

    assert not finding.passed and finding.numbers["missing"] == 1
    assert "1 of 6 source row(s)" in finding.summary and str(ids[3]) in finding.summary


def test_reconciliation_reports_ids_gone_from_a_keep_table_without_failing(synced, source, db):
    org, ids, warehouse = synced
    db.execute("DELETE FROM notes WHERE id = %s", (ids[5],))  # a purge at the source

    finding = upkeep_checks.reconcile(source, warehouse, org.id, NOTES)

    assert finding.passed and finding.numbers["not_at_source"] == 1 and "kept by policy" in finding.summary


def test_changes_waiting_too_long_fail_the_lag_check(synced, source, db, warehouse_config):
    org, ids, warehouse = synced
    db.execute("UPDATE glific_bq_watermarks SET advanced_at = now() - interval '1 hour' WHERE organization_id = %s", (org.id,))
    db.execute("UPDATE notes SET body = 'waiting', updated_at = updated_at + interval '2 seconds' WHERE id = %s", (ids[1],))

    finding = upkeep_checks.lag(source, org.id, NOTES, 600, upkeep_checks.waiting_organizations(source, NOTES, destinations(source.control, warehouse_config)))

    assert not finding.passed and finding.numbers["lag_seconds"] >= 3600


def test_the_dagster_checks_name_the_failing_tenant(db, source, warehouse_for, database_url, warehouse_config):
    from glific_bq.defs.assets import table_assets
    from glific_bq.defs.checks import asset_checks, checks_job
    from glific_bq.defs.jobs import sync_job
    from glific_bq.defs.resources import GlificPostgres
    from glific_bq.local.sample_data import seed

    seed(db, organizations=2, messages_per_org=20, contacts_per_org=5)
    resources = {
        "postgres": GlificPostgres(database_url=database_url),
        "bigquery": bigquery_resource(warehouse_config),
    }
    defs = dg.Definitions(assets=table_assets, asset_checks=asset_checks, jobs=[checks_job, sync_job], resources=resources)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("sync_job").execute_in_process(instance=instance).success
    from glific_bq.tenants import get_organization

    warehouse = warehouse_for(get_organization(db, 2))
    warehouse.client.query(f"DELETE FROM `{warehouse.dataset_ref}.messages` WHERE id = (SELECT MIN(id) FROM `{warehouse.dataset_ref}.messages`)").result()

    result = defs.resolve_job_def("checks_job").execute_in_process(instance=instance, raise_on_error=False)

    evaluations = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    failed = evaluations[("messages", "reconciled")]
    assert not failed.passed and "organization 2: 1 of 20 source row(s)" in failed.metadata["details"].value
    assert evaluations[("contacts", "reconciled")].passed
    assert evaluations[("messages", "latest_ids_unique")].passed


def test_a_tenant_whose_bigquery_fails_fails_its_own_checks_and_no_one_elses(synced, source, db, warehouse_config):
    org, ids, warehouse = synced
    broken = add_organization(db)
    roster = select_tenants(db, warehouse_config)
    assert {t.id for t in roster.tenants} >= {org.id, broken.id}

    def open_warehouse(organization):
        if organization.id == broken.id:  # its project is gone, say, after the roster was read
            raise PermissionError("403 Access Denied: Project p-gone")
        return Warehouse(warehouse_config, organization)

    findings = upkeep_checks.check_table(source, roster, open_warehouse, NOTES, 600)
    healthy = upkeep_checks.check_table(source, roster, lambda o: Warehouse(warehouse_config, o), NOTES, 600)

    for found in (findings.unique, findings.reconciled):
        assert [(f.organization_id, "Access Denied" in f.summary) for f in found if not f.passed] == [(broken.id, True)]
        assert {f.organization_id for f in found if f.passed} == {org.id}  # every other tenant checked, and passed
    # Freshness comes from the source alone: BigQuery's refusal changes no tenant's, its own included.
    def freshness(found):
        return sorted((f.organization_id, f.passed) for f in found)

    assert freshness(findings.fresh) == freshness(healthy.fresh) == sorted((t.id, True) for t in roster.tenants)


def test_an_organization_with_an_unusable_key_is_not_checked_but_said_not_synced(synced, source, db, warehouse_config, tmp_path):
    org, ids, warehouse = synced
    broken = add_organization(db)
    (tmp_path / f"{broken.id}.json").write_text("not a key")  # what a bad upload leaves
    roster = select_tenants(db, dataclasses.replace(warehouse_config, credentials_dir=str(tmp_path)))

    assert "not valid JSON" in roster.why_not(broken.id).reason
    findings = upkeep_checks.check_table(source, roster, lambda o: Warehouse(warehouse_config, o), NOTES, 600)
    assert broken.id not in {f.organization_id for f in findings.unique + findings.reconciled + findings.fresh}
