"""Configuration and type mapping, without services: what the environment says, and what each
PostgreSQL type becomes in BigQuery."""

from __future__ import annotations

import pytest

from glific_bq.layouts import Layout
from glific_bq.schema import Column
from glific_bq.tenants import Organization
from glific_bq.warehouse import ENVIRONMENT, WarehouseConfig, WriteMethod

ORG = Organization(id=7, shortcode="ngo", timezone="Asia/Kolkata", is_active=True, phone="919876543210")


def test_the_environment_sets_every_field_it_names():
    config = WarehouseConfig.from_env({
        "GLIFIC_BQ_PROJECT": "proj", "GLIFIC_BQ_LOCATION": "asia-south1", "GLIFIC_BQ_LAYOUT": "raw",
        "GLIFIC_BQ_DATASET_TEMPLATE": "org_{shortcode}", "GLIFIC_BQ_WRITE_METHOD": "load_parquet",
        "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050", "UNRELATED": "x",
    })

    assert (config.project, config.location, config.layout) == ("proj", "asia-south1", Layout.RAW)
    assert WriteMethod(config.write_method) is WriteMethod.LOAD_PARQUET
    assert config.dataset_for(ORG) == "org_ngo" and config.emulator_host == "http://127.0.0.1:9050"
    assert set(ENVIRONMENT.values()) >= {"GLIFIC_BQ_PROJECT", "GLIFIC_BQ_CREDENTIALS", "GLIFIC_BQ_CREDENTIALS_DIR"}


def test_each_layout_names_datasets_its_own_way_by_default():
    assert WarehouseConfig(project="p", layout=Layout.RAW).dataset_for(ORG) == "glific_7"
    assert WarehouseConfig(project="p", layout=Layout.GLIFIC).dataset_for(ORG) == "919876543210"


@pytest.mark.parametrize(("environ", "message"), [
    ({"GLIFIC_BQ_ORGANIZATIONS": "active"}, "GLIFIC_BQ_PROJECT is not set"),
    ({"GLIFIC_BQ_ORGANIZATIONS": "all"}, "GLIFIC_BQ_ORGANIZATIONS"),
    ({"GLIFIC_BQ_PROJECT": "p", "GLIFIC_BQ_WRITE_METHOD": "insert_all"}, "insert_all"),
])
def test_bad_configuration_is_refused_clearly(environ, message):
    with pytest.raises(ValueError, match=message):
        WarehouseConfig.from_env(environ)


@pytest.mark.parametrize("template", ["glific-{organization_id}", "x`; DROP SCHEMA y; --{organization_id}", "{phone}.x"])
def test_a_dataset_template_that_could_inject_sql_is_refused(template):
    with pytest.raises(ValueError, match="not a valid BigQuery dataset id"):
        WarehouseConfig(project="p", dataset_template=template, layout=Layout.RAW).dataset_for(ORG)


def test_an_unknown_placeholder_is_named():
    with pytest.raises(ValueError, match="unknown placeholder"):
        WarehouseConfig(project="p", dataset_template="glific_{org}", layout=Layout.RAW).dataset_for(ORG)


NUMERIC_10_2 = (10 << 16 | 2) + 4  # numeric(10, 2) as pg_attribute.atttypmod stores it


@pytest.mark.parametrize(("column", "expected"), [
    (Column("n", "int4"), ("INT64", "NULLABLE")),
    (Column("n", "numeric", typmod=NUMERIC_10_2), ("NUMERIC", "NULLABLE")),
    (Column("n", "numeric"), ("BIGNUMERIC", "NULLABLE")),
    (Column("t", "timestamptz"), ("DATETIME", "NULLABLE")),
    (Column("t", "timestamp", is_array=True), ("STRING", "REPEATED")),
    (Column("j", "jsonb"), ("STRING", "NULLABLE")),
    (Column("e", "mood", kind="e"), ("STRING", "NULLABLE")),
    (Column("i", "int8", is_array=True), ("INT64", "REPEATED")),
    (Column("p", "point"), ("STRING", "NULLABLE")),
])
def test_postgresql_types_map_to_the_documented_bigquery_types(column, expected):
    field = column.schema_field()
    assert (field.field_type, field.mode) == expected
