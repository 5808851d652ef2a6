"""``Warehouse``: one organization's BigQuery dataset, the face the sync and upkeep use. Each
method delegates to the module that holds its concern."""

from __future__ import annotations

import pyarrow as pa
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq.registry import TableSpec
from glific_bq.tenants import Organization
from glific_bq.warehouse import dead_letters, queries, tables, writes
from glific_bq.warehouse.config import WarehouseConfig, credentials_for
from glific_bq.warehouse.tables import Target
from glific_bq.warehouse.writes import Rejected


class Warehouse:
    """One organization's BigQuery dataset."""

    def __init__(self, config: WarehouseConfig, organization: Organization) -> None:
        self.config = config
        self.organization = organization
        self.dataset = config.dataset_for(organization)
        credentials, project = credentials_for(config, organization)
        self.project = project
        options = {"api_endpoint": config.emulator_host} if config.emulator_host else None
        self.client = bigquery.Client(
            project=project, credentials=credentials, location=config.location, client_options=options
        )
        self._credentials = credentials
        self._write_client = None

    @property
    def credentials(self):
        """The organization's Google credentials (for other Google clients, e.g. Cloud Storage)."""
        return self._credentials

    @property
    def dataset_ref(self) -> str:
        return f"{self.project}.{self.dataset}"

    def close(self) -> None:
        self.client.close()

    # -- tables (tables.py) ----------------------------------------------------------------------

    def ensure_table(self, spec: TableSpec, schema: list[SchemaField]) -> Target:
        """Create the dataset and table on first sync; add columns that appeared at the source
        (``tables.ensure_table``)."""
        return tables.ensure_table(self, spec, schema)

    def table_exists(self, table: str) -> bool:
        """Whether the organization's dataset has this table (or view)."""
        return tables.table_exists(self, table)

    # -- writes (writes.py) ----------------------------------------------------------------------

    def append(self, target: Target, rows: pa.Table) -> list[Rejected]:
        """Append ``rows`` as new row versions, confirmed by BigQuery; the rows it refused are
        returned (``writes.append``)."""
        return writes.append(self, target, rows)

    def write_client(self):
        """The Storage Write API client (gRPC), created on first use."""
        if self._write_client is None:
            self._write_client = writes.open_write_client(self.config, self._credentials)
        return self._write_client

    # -- rows BigQuery refused (dead_letters.py) -------------------------------------------------

    def set_aside(self, table: str, rejected: list[Rejected]) -> None:
        """Keep refused rows in the organization's dead-letter table (``dead_letters.set_aside``)."""
        dead_letters.set_aside(self, table, rejected)

    def dead_letter_ids(self, table: str) -> list[int]:
        """Source ids of the rows of ``table`` set aside and not yet re-driven."""
        return dead_letters.dead_letter_ids(self, table)

    def forget_dead_letters(self, table: str, ids: list[int]) -> None:
        dead_letters.forget_dead_letters(self, table, ids)

    # -- queries (queries.py) --------------------------------------------------------------------

    def query(self, statement: str, **params: object) -> list[dict]:
        """Run a query with named scalar parameters; rows as dicts (for checks and tests)."""
        return queries.query(self.client, statement, **params)
