"""No source value or configuration can inject SQL, and credentials never show."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import pytest

from glific_bq.registry import TableSpec
from glific_bq.schema import bigquery_column_name
from glific_bq.sync import sync_tenant
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

from .helpers import add_notes, add_organization, destination_of, warehouse_rows

NOTES = TableSpec("notes")


def test_table_names_in_the_registry_must_be_plain_identifiers():
    with pytest.raises(ValueError, match="identifier"):
        TableSpec("messages; DROP TABLE contacts")


def test_a_dataset_name_built_from_source_values_is_validated():
    config = WarehouseConfig(project="p", dataset_template="glific_{shortcode}")
    hostile = Organization(7, "x`; DROP SCHEMA y; --", "UTC", True)
    with pytest.raises(ValueError, match="not a valid BigQuery dataset id"):
        config.dataset_for(hostile)


def test_a_hostile_timezone_is_an_error_for_that_tenant_only(notes, source, warehouse_for):
    good = add_organization(notes)
    bad = add_organization(notes, timezone="UTC'; DROP TABLE notes; --")
    add_notes(notes, good, ["fine"])
    add_notes(notes, bad, ["x"])

    results = [r for org in (bad, good) for r in sync_tenant(source, warehouse_for, org.id, [NOTES])]

    assert [r.status for r in results] == ["failed", "synced"]
    assert notes.execute("SELECT count(*) FROM notes").fetchone()[0] == 2


def test_hostile_column_names_are_synced_under_legal_names_never_spliced(notes, source, warehouse_for):
    notes.execute('ALTER TABLE notes ADD COLUMN "drop`table;--" text, ADD COLUMN "bq_uuid" text')
    org = add_organization(notes)
    (note,) = add_notes(notes, org, ["kept"])
    notes.execute('UPDATE notes SET "drop`table;--" = %s, bq_uuid = %s WHERE id = %s', ("hostile", "forged", note))
    warehouse = warehouse_for(org)

    (result,) = sync_tenant(source, warehouse_for, org.id, [NOTES])

    assert result.status == "synced"
    (row,) = warehouse_rows(warehouse, "notes")
    assert row["body"] == "kept" and "drop`table;--" not in row
    assert row[bigquery_column_name("drop`table;--")] == "hostile"
    # the source's own bq_uuid column cannot pose as the version's key
    assert row[bigquery_column_name("bq_uuid")] == "forged"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", row["bq_uuid"])


def test_service_account_keys_never_reach_logs_or_results(notes, source, warehouse_config, tmp_path, caplog):
    org = add_organization(notes)
    add_notes(notes, org, ["x"])
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7-SECRET"
    (tmp_path / f"{org.id}.json").write_text(
        json.dumps({"type": "service_account", "project_id": "p", "client_email": "a@b", "private" + "_key": secret})
    )
    config = dataclasses.replace(warehouse_config, credentials_dir=str(tmp_path), emulator_host=None)

    with caplog.at_level(logging.DEBUG):
        (result,) = sync_tenant(source, lambda o: Warehouse(config, o), org.id, [NOTES],
                                destination=destination_of(config, org))

    assert result.status == "failed"
    assert secret not in result.message
    assert all(secret not in record.getMessage() for record in caplog.records)
    stored = notes.execute("SELECT last_error FROM glific_bq_watermarks WHERE organization_id = %s", (org.id,)).fetchone()[0]
    assert secret not in stored
