"""Table set-up and schema evolution: the dataset and tables created from the reflected schema,
columns added as they appear at the source, type changes refused."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq.registry import TableSpec
from glific_bq.schema import BQ_INSERTED_AT
from glific_bq.warehouse import queries
from glific_bq.warehouse.config import Versions, WarehouseConfig
from glific_bq.warehouse.errors import SchemaDriftError

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


#: In history mode, every version of ``<table>`` is appended to ``<table>`` + this suffix.
HISTORY_SUFFIX = "_history"


def history_table(table: str) -> str:
    """The name of the table that keeps every version of ``table`` in history mode."""
    return table + HISTORY_SUFFIX


def keeps_history(config: WarehouseConfig, spec: TableSpec, columns: Iterable[str]) -> bool:
    """Whether the sync appends ``spec``'s versions to ``<table>_history`` (and ``<table>`` is a
    clean table) rather than to ``<table>`` itself: in history mode, for every table whose rows
    carry a send time (``bq_inserted_at``, what the history is partitioned by). A change log
    (``TableSpec.keeps_versions``) is history already, and Glific's tables written without send
    columns (tags, flow_labels, stats, trackers: insert-only, never deduplicated) stay in place."""
    return config.versions is Versions.HISTORY and not spec.keeps_versions and BQ_INSERTED_AT in set(columns)


def written_table_id(warehouse: Warehouse, spec: TableSpec, schema: Sequence[SchemaField]) -> str:
    """``project.dataset.table`` the sync appends ``spec``'s rows to: the one place that decides
    it (``ensure_table``, ``known_tables`` and the sync's applied-schema record all ask here)."""
    name = history_table(spec.name) if keeps_history(warehouse.config, spec, (f.name for f in schema)) else spec.name
    return f"{warehouse.dataset_ref}.{name}"


def ensure_table(warehouse: Warehouse, spec: TableSpec, schema: list[SchemaField]) -> Target:
    """Create the dataset and table on first sync; take over a table that exists; add columns
    that appeared. The returned ``Target`` is where the rows go (``written_table_id``).

    A table we create is partitioned monthly by ``spec.partition_column`` when ``spec.partitioned``
    (all versions of a row share it; falls back to the send time if the column is absent) and
    clustered by ``spec.cluster_by``, so dedup and date-bounded reports read only what they
    need. A table that exists (for example one Glific's own sync created years ago, partitioned
    or not, with REQUIRED columns and history that exists nowhere else) is never recreated,
    repartitioned or narrowed: rows are appended to it; a column it lacks is added (NULLABLE,
    the only mode BigQuery can add); REQUIRED versus NULLABLE is no conflict. A column whose type
    differs cannot be altered in place: that raises ``SchemaDriftError`` for this table only.
    Columns dropped at the source stay in BigQuery with their history.

    In history mode (``keeps_history``) ``<table>`` is set up so, as the clean table, and
    ``<table>_history`` beside it, partitioned by the day of ``bq_inserted_at`` (the send time:
    a refresh reads only the days sent since the last one) and clustered by ``id``. The versions
    an existing ``<table>`` already holds are copied into the history by the first refresh
    (``glific_bq.clean``), not here.
    """
    client = warehouse.client
    dataset = client.create_dataset(bigquery.Dataset(warehouse.dataset_ref), exists_ok=True, **warehouse.calls.calls)
    _report_location(warehouse, dataset)
    by_name = {f.name: f for f in schema}
    partitioning, clustering = layout_for(spec, schema)
    clean = _ensure_one(warehouse, f"{warehouse.dataset_ref}.{spec.name}", schema, partitioning, clustering or [])
    written = written_table_id(warehouse, spec, schema)
    if written == clean.table_id:
        return clean
    by_send_day = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=BQ_INSERTED_AT)
    return _ensure_one(warehouse, written, schema, by_send_day, ["id"] if "id" in by_name else [])


def ensure_columns(warehouse: Warehouse, table_id: str, schema: list[SchemaField]) -> None:
    """Add to the existing ``table_id`` the columns of ``schema`` it lacks (NULLABLE); drift refused."""
    _ensure_one(warehouse, table_id, schema, None, [])


def _ensure_one(warehouse: Warehouse, table_id: str, schema: list[SchemaField],
                partitioning: bigquery.TimePartitioning | None, clustering: list[str]) -> Target:
    """``ensure_table`` for one table id: created so if missing; columns added; drift refused."""
    client = warehouse.client
    table = bigquery.Table(table_id, schema=schema)
    if partitioning is not None:
        table.time_partitioning = partitioning
    if clustering:
        table.clustering_fields = clustering
    table = client.create_table(table, exists_ok=True, **warehouse.calls.calls)
    name = table_id.rsplit(".", 1)[-1]
    existing = {f.name: f for f in table.schema}
    drift = [
        f"{name}.{f.name}: {existing[f.name].field_type}/{existing[f.name].mode} in BigQuery, "
        f"{f.field_type}/{f.mode} at the source"
        for f in schema
        if f.name in existing and _kind(existing[f.name]) != _kind(f)
    ]
    if drift:
        raise SchemaDriftError("column types changed; fix or rename the BigQuery column: " + "; ".join(drift))
    added = [_addable(f) for f in schema if f.name not in existing]
    if added:
        table.schema = list(table.schema) + added
        client.update_table(table, ["schema"], **warehouse.calls.calls)
        if warehouse.config.emulator_host:
            # bqemulator 1.4 updates its catalog on update_table but not its storage; and it
            # takes one ALTER command per statement.
            for f in added:
                queries.run(warehouse, f"ALTER TABLE `{table_id}` ADD COLUMN IF NOT EXISTS `{f.name}` {ddl_type(f)}")
        log.info("added columns to %s: %s", table_id, ", ".join(f.name for f in added))
    return Target(table_id, tuple(schema), tuple(f.name for f in added))


def layout_for(spec: TableSpec, schema: list[SchemaField] | tuple[SchemaField, ...],
               ) -> tuple[bigquery.TimePartitioning | None, list[str] | None]:
    """How a table we create for ``spec`` with ``schema`` is partitioned and clustered: monthly by
    ``spec.partition_column`` when ``spec.partitioned`` (by the send time if that column is absent
    or not a time), clustered by the ``spec.cluster_by`` columns it has. In the Glific layout,
    exactly how Glific creates the table today (``glific_bq.repartition`` gives older tables this)."""
    by_name = {f.name: f for f in schema}
    partitioning = None
    if spec.partitioned:
        partition = by_name.get(spec.partition_column)
        time_types = ("DATETIME", "DATE", "TIMESTAMP")
        field = spec.partition_column if partition and partition.field_type in time_types else BQ_INSERTED_AT
        partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.MONTH, field=field)
    clustering = [c for c in spec.cluster_by if c in by_name]
    return partitioning, clustering or None


#: Legacy SQL type names (what Glific declares, and what BigQuery's API returns) → standard names.
_STANDARD_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}


def _report_location(warehouse: Warehouse, dataset: bigquery.Dataset) -> None:
    """A dataset found where the configuration does not put it (``GLIFIC_BQ_LOCATIONS``): said,
    never acted on; BigQuery cannot move a dataset, and recreating it would lose its history."""
    configured = warehouse.config.location_for(warehouse.organization.id)
    if configured and dataset.location and configured.lower() != dataset.location.lower():
        log.warning("dataset %s is in %s, but its configured location is %s: left where it is",
                    warehouse.dataset_ref, dataset.location, configured)


def _kind(field: SchemaField) -> tuple[str, bool]:
    """What must match between a column in BigQuery and the one we send: the type under either
    name, and whether it is REPEATED (REQUIRED and NULLABLE take the same values)."""
    return _STANDARD_TYPES.get(field.field_type, field.field_type), field.mode == "REPEATED"


def _addable(field: SchemaField) -> SchemaField:
    """``field`` as a column BigQuery can add to an existing table (REQUIRED becomes NULLABLE)."""
    if field.mode != "REQUIRED":
        return field
    return SchemaField(field.name, field.field_type, mode="NULLABLE", description=field.description,
                       fields=[_addable(f) for f in field.fields])


def table_exists(warehouse: Warehouse, table: str) -> bool:
    """Whether the organization's dataset has this table (or view)."""
    try:
        warehouse.client.get_table(f"{warehouse.dataset_ref}.{table}", **warehouse.calls.calls)
        return True
    except NotFound:
        return False


def ddl_type(field: SchemaField) -> str:
    """The column's type in DDL (``ARRAY<STRUCT<…>>`` for a REPEATED RECORD)."""
    kind = _STANDARD_TYPES.get(field.field_type, field.field_type)
    if kind == "RECORD":
        kind = "STRUCT<" + ", ".join(f"`{f.name}` {ddl_type(f)}" for f in field.fields) + ">"
    return f"ARRAY<{kind}>" if field.mode == "REPEATED" else kind
