"""Resources: the Glific PostgreSQL source and BigQuery, configured by environment variables."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from glific_bq import watermarks
from glific_bq.layouts import Layout
from glific_bq.source import Source
from glific_bq.tenants import Organization
from glific_bq.warehouse import ENVIRONMENT, Warehouse, WarehouseConfig, WriteMethod


class GlificPostgres(dg.ConfigurableResource):
    """The Glific PostgreSQL database (``GLIFIC_DATABASE_URL``)."""

    database_url: str = Field(description="libpq URL of the Glific database")

    @contextmanager
    def source(self) -> Iterator[Source]:
        """Connections to the source. The watermark table is created or upgraded at the first
        open in this process (not at every sensor tick and run)."""
        with Source(self.database_url) as source:
            with _prepared_lock:
                if self.database_url not in _prepared:
                    watermarks.ensure_table(source.control)
                    _prepared.add(self.database_url)
            yield source


#: Databases whose watermark table this process has set up already.
_prepared: set[str] = set()
_prepared_lock = threading.Lock()


class GlificBigQuery(dg.ConfigurableResource):
    """BigQuery: one dataset per organization, the layout, the write method, per-organization
    credentials and an optional local emulator. Fields mirror ``WarehouseConfig``; the one way to
    a BigQuery client is ``open_warehouse`` (``Warehouse.client``), which honours every one of them."""

    project: str = Field(default="", description="BigQuery project of the datasets (only with organizations=active)")
    location: str | None = Field(default=None, description="Dataset location, e.g. US, EU, asia-south1")
    gcp_credentials: str | None = Field(default=None, description="Base64 service-account JSON (a secret: set by EnvVar)")

    layout: str = Field(
        default_factory=lambda: Layout.from_env().value,
        description="glific (Glific's own tables, the default) or raw (exact copies); default GLIFIC_BQ_LAYOUT",
    )
    dataset_template: str = Field(
        default="",
        description="Dataset id per organization; placeholders {organization_id}, {shortcode} and {phone} "
        "(empty: the layout's default, {phone} for glific)",
    )
    write_method: str = Field(default=WarehouseConfig.write_method, description=", ".join(m.value for m in WriteMethod))
    versions: str = Field(default="in_place", description="in_place (dedup deletes older versions) or history "
                          "(every version kept in <table>_history; <table> a clean table)")
    credentials_dir: str | None = Field(default=None, description="Directory of <organization_id>.json service-account keys")
    emulator_host: str | None = Field(default=None, description="BigQuery REST emulator URL, with scheme")
    storage_emulator_host: str | None = Field(default=None, description="Emulator gRPC endpoint, host:port")
    organizations: str = Field(default="glific", description="Who is synced: glific (Glific's own rule and keys) "
                               "or active (every active organization, bypassing Glific's consent; keys configured here)")
    include_organizations: str = Field(default="", description="Only these organization ids (comma-separated)")
    exclude_organizations: str = Field(default="", description="Never these organization ids (comma-separated)")
    locations: str = Field(default="", description="Per-organization dataset locations, e.g. 12=asia-south1")
    cipher_key: str | None = Field(default=None, description="Glific's CIPHER_KEY (a secret: set by EnvVar)")
    old_cipher_key: str | None = Field(default=None, description="Glific's OLD_CIPHER_KEY (a secret: set by EnvVar)")

    def config(self) -> WarehouseConfig:
        return WarehouseConfig(**{field: getattr(self, field) for field in ENVIRONMENT})

    def open_warehouse(self, organization: Organization) -> Warehouse:
        """One organization's dataset; the caller closes it."""
        return Warehouse(self.config(), organization)


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources as deployed: development and production differ only by environment, and
    values stay ``EnvVar``s so that secrets never show in the UI."""
    bigquery = {field: dg.EnvVar(var) for field, var in ENVIRONMENT.items() if os.environ.get(var)}
    return {
        "postgres": GlificPostgres(database_url=dg.EnvVar("GLIFIC_DATABASE_URL")),
        "bigquery": GlificBigQuery(**bigquery),
    }
