"""The Dagster resources hold configuration and do no work per tick."""

from __future__ import annotations

import pytest

from glific_bq.defs.resources import GlificBigQuery, GlificPostgres
from glific_bq.warehouse import ENVIRONMENT, CredentialsError

from .helpers import add_organization, bigquery_resource


def test_the_watermark_table_is_set_up_once_per_process_not_at_every_open(db, database_url):
    postgres = GlificPostgres(database_url=database_url)
    with postgres.source():
        pass
    db.execute("ALTER TABLE glific_bq_watermarks DROP COLUMN deduped_at")  # would come back with a new set-up

    with postgres.source() as source:
        columns = {r[0] for r in source.control.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'glific_bq_watermarks'")}

    assert "deduped_at" not in columns


def test_a_bigquery_client_comes_only_with_the_organizations_own_settings(db, warehouse_config, tmp_path):
    org = add_organization(db)
    (tmp_path / f"{org.id}.json").write_text("{}")
    bigquery = bigquery_resource(warehouse_config, layout="raw")

    warehouse = bigquery.open_warehouse(org)
    try:
        assert warehouse.query("SELECT 1 AS one") == [{"one": 1}]  # the emulator, not Google
    finally:
        warehouse.close()
    with pytest.raises(CredentialsError, match=f"organization {org.id}"):
        GlificBigQuery(**{**bigquery.model_dump(), "credentials_dir": str(tmp_path)}).open_warehouse(org)


def test_the_bigquery_resource_offers_no_way_to_a_client_but_the_organizations_warehouse():
    """Every setting of the resource reaches the ``WarehouseConfig`` that ``open_warehouse`` builds
    the client from, and the resource adds no other method (a ``get_client``, say) that could
    reach BigQuery around the organization's project, credentials and dataset."""
    resource = GlificBigQuery(project="p", organizations="active", dataset_template="d_{organization_id}")
    own = {name for name, value in vars(GlificBigQuery).items() if callable(value) and not name.startswith("_")}

    assert own == {"config", "open_warehouse"}
    assert set(GlificBigQuery.model_fields) == set(ENVIRONMENT)
    assert all(getattr(resource.config(), name) == getattr(resource, name) for name in ENVIRONMENT)
