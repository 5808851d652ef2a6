"""Smoke test against real BigQuery: what the local emulator cannot show.

Skipped unless ``GLIFIC_BQ_TEST_PROJECT`` names a project and Google credentials are configured
(``GLIFIC_BQ_CREDENTIALS``, base64 service-account JSON, or Application Default Credentials,
e.g. ``gcloud auth application-default login`` or ``GOOGLE_APPLICATION_CREDENTIALS``). The
account needs BigQuery Data Editor and Job User on the project. Optional:
``GLIFIC_BQ_TEST_LOCATION`` (default US). Run it with::

    GLIFIC_BQ_TEST_PROJECT=my-project .venv/bin/python -m pytest glific_bq_tests/test_bigquery_smoke.py -v

It creates one dataset ``glific_bq_smoke_<random>_<n>`` and deletes it, contents and all, at
the end. What it shows: the Storage Write API's default stream commits rows when the append is
acknowledged (readable at once), DML works on rows just written (no streaming buffer), BIGNUMERIC
values beyond NUMERIC's range round-trip, the views carry their descriptions (the DDL's OPTIONS),
and JSON paths with quoted keys (spaces, quotes) read what Glific's JSON text holds.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest

from glific_bq import views
from glific_bq.layouts import Layout, Stamp
from glific_bq.registry import TableSpec
from glific_bq.schema import Column, bigquery_schema
from glific_bq.stamping import stamp
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig

PROJECT = os.environ.get("GLIFIC_BQ_TEST_PROJECT")


def _credentials_configured() -> bool:
    if os.environ.get("GLIFIC_BQ_CREDENTIALS"):
        return True
    try:
        import google.auth

        google.auth.default()
        return True
    except Exception:  # no Application Default Credentials here
        return False


pytestmark = pytest.mark.skipif(
    not PROJECT or not _credentials_configured(),
    reason="real-BigQuery smoke test: set GLIFIC_BQ_TEST_PROJECT and Google credentials to run it",
)

SMOKE = TableSpec("smoke")
COLUMNS = [
    Column("id", "int8"), Column("organization_id", "int8"),
    Column("amount", "numeric"),  # no precision: BIGNUMERIC
    Column("payload", "jsonb"), Column("inserted_at", "timestamp"),
]
BIG = Decimal("123456789012345678901234567890123456.12345678901234567890123456789012345678")


@pytest.fixture(scope="module")
def warehouse():
    config = WarehouseConfig(organizations="active",
        project=PROJECT, location=os.environ.get("GLIFIC_BQ_TEST_LOCATION", "US"), layout=Layout.RAW,
        dataset_template=f"glific_bq_smoke_{uuid.uuid4().hex[:8]}_{{organization_id}}",
        gcp_credentials=os.environ.get("GLIFIC_BQ_CREDENTIALS"),
    )
    warehouse = Warehouse(config, Organization(id=1, shortcode="smoke", timezone="UTC", is_active=True))
    yield warehouse
    warehouse.client.delete_dataset(warehouse.dataset_ref, delete_contents=True, not_found_ok=True)
    warehouse.close()


def rows(ids: list[int]) -> pa.Table:
    from datetime import datetime

    n = len(ids)
    table = pa.table({
        "id": pa.array(ids, pa.int64()), "organization_id": pa.array([1] * n, pa.int64()),
        "amount": pa.array([str(BIG)] * n), "payload": pa.array(['{"opt in": "yes", "it\'s": 1}'] * n),
        "inserted_at": pa.array([datetime(2026, 1, 1)] * n, pa.timestamp("us")),
    })
    return stamp(table, Stamp.UTC)


def test_rows_are_committed_when_the_append_is_acknowledged_and_dml_works_at_once(warehouse):
    target = warehouse.ensure_table(SMOKE, bigquery_schema(COLUMNS))

    assert warehouse.append(target, rows([1, 2, 3])) == []
    assert warehouse.query(f"SELECT COUNT(*) AS n FROM `{target.table_id}`") == [{"n": 3}]

    warehouse.query(f"UPDATE `{target.table_id}` SET payload = '{{}}' WHERE id = 1")
    warehouse.query(f"DELETE FROM `{target.table_id}` WHERE id = 2")  # no streaming buffer to wait for
    assert [r["id"] for r in warehouse.query(f"SELECT id FROM `{target.table_id}` ORDER BY id")] == [1, 3]


def test_bignumeric_round_trips(warehouse):
    target = warehouse.ensure_table(SMOKE, bigquery_schema(COLUMNS))
    warehouse.append(target, rows([10]))

    (row,) = warehouse.query(f"SELECT amount FROM `{target.table_id}` WHERE id = 10")

    assert row["amount"] == BIG


def test_json_paths_with_quoted_keys_read_the_json_text(warehouse):
    target = warehouse.ensure_table(SMOKE, bigquery_schema(COLUMNS))
    warehouse.append(target, rows([20]))

    (row,) = warehouse.query(
        f"""SELECT JSON_EXTRACT_SCALAR(payload, "$['opt in']") AS spaced,
                   JSON_VALUE(payload, '$."it\\'s"') AS quoted
            FROM `{target.table_id}` WHERE id = 20"""
    )

    assert (row["spaced"], row["quoted"]) == ("yes", "1")


def test_views_carry_their_descriptions(warehouse):
    warehouse.ensure_table(SMOKE, bigquery_schema(COLUMNS))

    views.create_views(warehouse, ["smoke"], reports=())

    view = warehouse.client.get_table(f"{warehouse.dataset_ref}.{views.latest_view_name('smoke')}")
    assert view.description == views.latest_description("smoke")
