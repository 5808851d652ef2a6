"""``Warehouse``: one organization's BigQuery dataset, the face the sync and upkeep use. Each
method delegates to the module that holds its concern."""

from __future__ import annotations

import pyarrow as pa
from google.cloud.bigquery import SchemaField

from glific_bq.registry import TableSpec
from glific_bq.tenants import Organization
from glific_bq.warehouse import clients, dead_letters, known_tables, queries, tables, writes
from glific_bq.warehouse.config import WarehouseConfig, destination
from glific_bq.warehouse.tables import Target
from glific_bq.warehouse.writes import Rejected


class Warehouse:
    """One organization's BigQuery dataset."""

    def __init__(self, config: WarehouseConfig, organization: Organization) -> None:
        self.config = config
        self.organization = organization
        self.dataset = config.dataset_for(organization)
        # Clients and credentials once per organization per process (clients.py).
        self._clients = clients.clients_for(config, organization)
        self.project = self._clients.project
        self.client = self._clients.client
        self._credentials = self._clients.credentials
        self.calls = queries.CallPolicy(config.deadline_seconds)
        self.encoded_ahead = writes.EncodedAhead()  # this warehouse's pages encoded ahead of their write

    @property
    def credentials(self):
        """The organization's Google credentials (for other Google clients, e.g. Cloud Storage)."""
        return self._credentials

    @property
    def dataset_ref(self) -> str:
        return f"{self.project}.{self.dataset}"

    @property
    def destination(self) -> str:
        """Where this warehouse's rows go, as watermarks are keyed (``config.destination``)."""
        return destination(self.config.layout, self.project, self.dataset)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close: the organization's clients are kept for the process and shared by
        its warehouses (``clients.close_all`` closes them)."""

    # -- tables (tables.py) ----------------------------------------------------------------------

    def ensure_table(self, spec: TableSpec, schema: list[SchemaField]) -> Target:
        """Create the dataset and table on first sync; add columns that appeared at the source
        (``tables.ensure_table``), unless this process applied this very schema already
        (``known_tables``)."""
        return known_tables.ensure_table(self, spec, schema)

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
        return self._clients.write_client()

    # -- rows BigQuery refused (dead_letters.py) -------------------------------------------------

    def set_aside(self, table: str, rejected: list[Rejected]) -> None:
        """Keep refused rows in the organization's dead-letter table (``dead_letters.set_aside``)."""
        dead_letters.set_aside(self, table, rejected)

    def dead_letter_ids(self, table: str, after: int | None = None, limit: int | None = None) -> list[int]:
        """Source ids of the rows of ``table`` set aside and not yet re-driven (above ``after``,
        at most ``limit``)."""
        return dead_letters.dead_letter_ids(self, table, after, limit)

    def forget_dead_letters(self, table: str, ids: list[int]) -> None:
        dead_letters.forget_dead_letters(self, table, ids)

    # -- queries (queries.py) --------------------------------------------------------------------

    def query(self, statement: str, **params: object) -> list[dict]:
        """Run a query with named scalar parameters; rows as dicts (for checks and tests)."""
        return queries.query(self, statement, **params)
