"""Shared fixtures: a real PostgreSQL (pgserver) and the local BigQuery emulator, both in-process,
started once per test session; every test gets its own database and its own datasets."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import psycopg
import pytest

if "XDG_RUNTIME_DIR" not in os.environ:  # pgserver and platformdirs want a private runtime dir
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="glific_bq_runtime_")
# Most of the suite tests the copy machine in the raw layout. Set before glific_bq is imported,
# so that ``registry.TABLES`` and the definitions are the raw layout's; the Glific layout's tests
# (test_glific_layout.py, test_glific_upkeep.py) name their layout and tables explicitly.
os.environ["GLIFIC_BQ_LAYOUT"] = "raw"

from glific_bq import watermarks  # noqa: E402
from glific_bq.layouts import Layout  # noqa: E402
from glific_bq.local.bigquery_emulator import LocalBigQuery  # noqa: E402
from glific_bq.source import Source  # noqa: E402
from glific_bq.warehouse import Warehouse, WarehouseConfig  # noqa: E402
from glific_bq_tests.helpers import Webhook  # noqa: E402


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    import pgserver

    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def database_url(pg_server) -> str:
    """A fresh, empty database for this test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    base = pg_server.get_uri()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def db(database_url) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a database holding Glific's real schema (``glific_schema.sql``)
    and the watermark table adopted by ``watermarks``."""
    from glific_bq.local.glific_schema import create_glific_schema

    with psycopg.connect(database_url, autocommit=True) as conn:
        create_glific_schema(conn)
        watermarks.ensure_table(conn)
        yield conn


@pytest.fixture
def notes(db) -> psycopg.Connection:
    """``db`` with ``notes``, a small table of our own (``helpers.NOTES_DDL``) for testing the copy
    machine on columns Glific's tables don't have."""
    from .helpers import NOTES_DDL

    db.execute(NOTES_DDL)
    return db


@pytest.fixture
def source(database_url, db) -> Iterator[Source]:
    with Source(database_url) as source:
        yield source


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[LocalBigQuery]:
    with LocalBigQuery() as emulator:
        yield emulator


@pytest.fixture
def warehouse_config(bigquery_emulator) -> WarehouseConfig:
    """Emulator settings with a dataset prefix of this test's own."""
    return _emulator_config(bigquery_emulator, "{organization_id}", Layout.RAW)


@pytest.fixture
def glific_warehouse_config(bigquery_emulator) -> WarehouseConfig:
    """Emulator settings in the Glific layout: datasets named after the bot's phone, as Glific
    names them, behind a prefix of this test's own."""
    return _emulator_config(bigquery_emulator, "{phone}", Layout.GLIFIC)


def _emulator_config(emulator: LocalBigQuery, dataset: str, layout: Layout) -> WarehouseConfig:
    """The copy machine's tests sync organizations that have no BigQuery credential in Glific:
    the explicit ``active`` rule (every active organization, into the emulator's project).
    Glific's own rule is tested with credentials in test_control_plane.py."""
    return WarehouseConfig(
        project=emulator.project,
        organizations="active",
        dataset_template=f"t{uuid.uuid4().hex[:8]}_{dataset}",
        emulator_host=emulator.rest_url,
        storage_emulator_host=emulator.grpc_endpoint,
        layout=layout,
    )


@pytest.fixture
def warehouse_for(warehouse_config) -> Iterator:
    """Opens the warehouse of an organization; closes them all after the test."""
    opened: list[Warehouse] = []

    def open_warehouse(organization) -> Warehouse:
        opened.append(Warehouse(warehouse_config, organization))
        return opened[-1]

    yield open_warehouse
    for warehouse in opened:
        warehouse.close()


#: Fixtures that start a service; a test using none of them (directly or through other fixtures)
#: is a fast ``unit`` test: ``pytest -m unit`` runs only those, in seconds.
SERVICE_FIXTURES = {"pg_server", "bigquery_emulator", "_pg_uri", "emulator"}


#: Tests that start services (or subprocesses) by other means.
SERVICE_MODULES = {"test_soak", "test_ui", "test_bench_smoke"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses_service = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if not uses_service and item.module.__name__.rsplit(".", 1)[-1] not in SERVICE_MODULES:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def webhook(monkeypatch) -> Iterator[Webhook]:
    """A local Slack-like webhook, with no proxy between it and the tests."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    hook = Webhook()
    yield hook
    hook.close()
