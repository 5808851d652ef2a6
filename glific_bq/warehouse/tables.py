"""Table set-up and schema evolution: the dataset and tables created from the reflected schema,
columns added as they appear at the source, type changes refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq.registry import TableSpec
from glific_bq.schema import BQ_INSERTED_AT
from glific_bq.warehouse.errors import SchemaDriftError
from glific_bq.warehouse.queries import RETRY, TIMEOUT

if TYPE_CHECKING:
    from glific_bq.warehouse.dataset import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A table ready to receive rows, and the schema the rows are sent with."""

    table_id: str  # project.dataset.table
    schema: tuple[SchemaField, ...]
    added_columns: tuple[str, ...] = ()

    @property
    def stream_path(self) -> str:
        project, dataset, table = self.table_id.split(".")
        return f"projects/{project}/datasets/{dataset}/tables/{table}/streams/_default"


def ensure_table(warehouse: Warehouse, spec: TableSpec, schema: list[SchemaField]) -> Target:
    """Create the dataset and table on first sync; add columns that appeared at the source.

    Tables are partitioned monthly by ``spec.partition_column`` (all versions of a row share
    it) and clustered by id, so dedup and date-bounded reports read only what they need. A
    column that changed type cannot be altered in place: that raises ``SchemaDriftError``
    for this table only. Columns dropped at the source stay in BigQuery with their history.
    """
    client = warehouse.client
    client.create_dataset(bigquery.Dataset(warehouse.dataset_ref), exists_ok=True, retry=RETRY, timeout=TIMEOUT)
    table_id = f"{warehouse.dataset_ref}.{spec.name}"
    by_name = {f.name: f for f in schema}
    table = bigquery.Table(table_id, schema=schema)
    partition = by_name.get(spec.partition_column)
    field = spec.partition_column if partition and partition.field_type in ("DATETIME", "DATE", "TIMESTAMP") else BQ_INSERTED_AT
    table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.MONTH, field=field)
    if "id" in by_name:
        table.clustering_fields = ["id"]
    table = client.create_table(table, exists_ok=True, retry=RETRY, timeout=TIMEOUT)

    existing = {f.name: f for f in table.schema}
    drift = [
        f"{spec.name}.{f.name}: {existing[f.name].field_type}/{existing[f.name].mode} in BigQuery, "
        f"{f.field_type}/{f.mode} at the source"
        for f in schema
        if f.name in existing and (existing[f.name].field_type, existing[f.name].mode) != (f.field_type, f.mode)
    ]
    if drift:
        raise SchemaDriftError("column types changed; fix or rename the BigQuery column: " + "; ".join(drift))
    added = [f for f in schema if f.name not in existing]
    if added:
        table.schema = list(table.schema) + added
        client.update_table(table, ["schema"], retry=RETRY, timeout=TIMEOUT)
        if warehouse.config.emulator_host:
            # bqemulator 1.4 updates its catalog on update_table but not its storage.
            columns = ", ".join(f"ADD COLUMN IF NOT EXISTS `{f.name}` {ddl_type(f)}" for f in added)
            client.query(f"ALTER TABLE `{table_id}` {columns}").result()
        log.info("added columns to %s: %s", table_id, ", ".join(f.name for f in added))
    return Target(table_id, tuple(schema), tuple(f.name for f in added))


def table_exists(warehouse: Warehouse, table: str) -> bool:
    """Whether the organization's dataset has this table (or view)."""
    try:
        warehouse.client.get_table(f"{warehouse.dataset_ref}.{table}", retry=RETRY, timeout=TIMEOUT)
        return True
    except NotFound:
        return False


def ddl_type(field: SchemaField) -> str:
    return f"ARRAY<{field.field_type}>" if field.mode == "REPEATED" else field.field_type
