"""BigQuery: one dataset per organization, tables created from the reflected schema, rows written
and confirmed.

Write methods (``WriteMethod``):

- ``storage_write`` (default): Storage Write API, ``_default`` stream, protobuf rows. Rows are
  committed when the append is acknowledged and can be changed by DML at once (no streaming
  buffer, glific#820), there is no load-job quota (a load every minute would use 1,440 of the
  1,500 daily modifications a table allows), and protobuf rows are generally available.
- ``storage_write_arrow``: the same API with Arrow record batches: less CPU, but Google documents
  Arrow ingestion as limited to allow-listed projects, so it is used only when configured.
- ``load_parquet``: Parquet load jobs. Free and fast for large backfills, but each load counts
  against the table's daily modifications: not for the minute schedule.

Every row sent gets ``bq_uuid`` (a new UUID per send) and ``bq_inserted_at`` (send time).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from google.api_core.exceptions import BadRequest, GoogleAPICallError, InvalidArgument, Unknown
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq import protorows
from glific_bq.registry import TableSpec
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID
from glific_bq.tenants import Organization

log = logging.getLogger(__name__)

_DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
#: API calls give up after a minute of retries (the client's default is ten): a run facing a
#: BigQuery outage fails, is recorded and backs off, instead of hanging while ticks pile up.
_RETRY = bigquery.DEFAULT_RETRY.with_deadline(60)
_TIMEOUT = 30
#: One AppendRows request must stay under 10 MB; leave room for the request envelope.
_MAX_REQUEST_BYTES = 8 * 1024 * 1024


class WriteMethod(str, Enum):
    STORAGE_WRITE = "storage_write"
    STORAGE_WRITE_ARROW = "storage_write_arrow"
    LOAD_PARQUET = "load_parquet"


class WarehouseError(RuntimeError):
    """BigQuery refused or failed a write: nothing after the last confirmed batch counts as loaded."""


class SchemaDriftError(WarehouseError):
    """A source column changed in a way BigQuery cannot apply in place (for example text → integer)."""


#: Per-organization table of rows BigQuery refused.
DEAD_LETTERS = "glific_bq_dead_letters"
DEAD_LETTER_SCHEMA = (
    SchemaField("table_name", "STRING", description="source table"),
    SchemaField("id", "INT64", description="source row id"),
    SchemaField("error", "STRING", description="why BigQuery refused the row"),
    SchemaField("row_json", "STRING", description="the row as sent, as JSON"),
    SchemaField("bq_inserted_at", "TIMESTAMP", description="when it was set aside"),
)


class RowsRefused(Exception):
    """BigQuery refused some rows of a write (by row index when it says which)."""

    def __init__(self, message: str, messages: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.messages = messages or {}


@dataclass(frozen=True)
class Rejected:
    """A row BigQuery refused, as sent (with its bq_uuid), and why."""

    row: dict
    error: str


#: gRPC codes of an append that was refused because of its rows, not of the service.
_INVALID_ARGUMENT, _UNKNOWN = 3, 2


class CredentialsError(WarehouseError):
    """An organization's BigQuery credentials are missing or invalid. Never carries their content."""


#: WarehouseConfig field -> the environment variable that sets it.
ENVIRONMENT = {
    "project": "GLIFIC_BQ_PROJECT",  # required: the project of the datasets
    "location": "GLIFIC_BQ_LOCATION",  # dataset location, e.g. US, EU, asia-south1
    "dataset_template": "GLIFIC_BQ_DATASET_TEMPLATE",  # default glific_{organization_id}
    "write_method": "GLIFIC_BQ_WRITE_METHOD",  # storage_write | storage_write_arrow | load_parquet
    "gcp_credentials": "GLIFIC_BQ_CREDENTIALS",  # base64 service-account JSON (dagster-gcp's convention)
    "credentials_dir": "GLIFIC_BQ_CREDENTIALS_DIR",  # per-organization <organization_id>.json keys
    "emulator_host": "BIGQUERY_EMULATOR_HOST",  # local emulator REST URL, with http://
    "storage_emulator_host": "BIGQUERY_STORAGE_EMULATOR_HOST",  # local emulator gRPC host:port
}


@dataclass(frozen=True)
class WarehouseConfig:
    """How to reach BigQuery; ``ENVIRONMENT`` names the variable behind each field.

    ``dataset_template`` is formatted with ``organization_id`` and ``shortcode``.
    """

    project: str
    location: str | None = None
    dataset_template: str = "glific_{organization_id}"
    write_method: str = WriteMethod.STORAGE_WRITE.value
    gcp_credentials: str | None = None
    credentials_dir: str | None = None
    emulator_host: str | None = None
    storage_emulator_host: str | None = None

    def __post_init__(self) -> None:
        if not self.project:
            raise ValueError(f"{ENVIRONMENT['project']} is not set: the BigQuery project to write to")
        WriteMethod(self.write_method)  # a clear error for an unknown method

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WarehouseConfig:
        env = os.environ if environ is None else environ
        return cls(**{"project": "", **{field: env[var] for field, var in ENVIRONMENT.items() if env.get(var)}})

    def dataset_for(self, organization: Organization) -> str:
        """The dataset id of one organization, validated so that no value can inject SQL."""
        dataset = self.dataset_template.format(
            organization_id=organization.id, shortcode=organization.shortcode or ""
        )
        if not _DATASET_ID.match(dataset):
            raise ValueError(
                f"dataset name {dataset!r} for organization {organization.id} is not a valid BigQuery "
                "dataset id (letters, digits, underscores); check GLIFIC_BQ_DATASET_TEMPLATE"
            )
        return dataset


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


class Warehouse:
    """One organization's BigQuery dataset."""

    def __init__(self, config: WarehouseConfig, organization: Organization) -> None:
        self.config = config
        self.organization = organization
        self.dataset = config.dataset_for(organization)
        credentials, project = _credentials(config, organization)
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

    # -- tables ------------------------------------------------------------------------------

    def ensure_table(self, spec: TableSpec, schema: list[SchemaField]) -> Target:
        """Create the dataset and table on first sync; add columns that appeared at the source.

        Tables are partitioned monthly by ``spec.partition_column`` (all versions of a row share
        it) and clustered by id, so dedup and date-bounded reports read only what they need. A
        column that changed type cannot be altered in place: that raises ``SchemaDriftError``
        for this table only. Columns dropped at the source stay in BigQuery with their history.
        """
        self.client.create_dataset(bigquery.Dataset(self.dataset_ref), exists_ok=True, retry=_RETRY, timeout=_TIMEOUT)
        table_id = f"{self.dataset_ref}.{spec.name}"
        by_name = {f.name: f for f in schema}
        table = bigquery.Table(table_id, schema=schema)
        partition = by_name.get(spec.partition_column)
        field = spec.partition_column if partition and partition.field_type in ("DATETIME", "DATE", "TIMESTAMP") else BQ_INSERTED_AT
        table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.MONTH, field=field)
        if "id" in by_name:
            table.clustering_fields = ["id"]
        table = self.client.create_table(table, exists_ok=True, retry=_RETRY, timeout=_TIMEOUT)

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
            self.client.update_table(table, ["schema"], retry=_RETRY, timeout=_TIMEOUT)
            if self.config.emulator_host:
                # bqemulator 1.4 updates its catalog on update_table but not its storage.
                columns = ", ".join(f"ADD COLUMN IF NOT EXISTS `{f.name}` {_ddl_type(f)}" for f in added)
                self.client.query(f"ALTER TABLE `{table_id}` {columns}").result()
            log.info("added columns to %s: %s", table_id, ", ".join(f.name for f in added))
        return Target(table_id, tuple(schema), tuple(f.name for f in added))

    # -- writes ------------------------------------------------------------------------------

    def append(self, target: Target, rows: pa.Table) -> list[Rejected]:
        """Append ``rows`` (source columns only) as new row versions, confirmed by BigQuery.

        Rows that BigQuery refuses are isolated (by the row errors it reports, or by halving
        the batch until the refused rows stand alone) and returned, so that one bad row does not
        block its table (glific#3477, #5466); everything else is written. Failures that are not
        about the rows (service down, permissions, a missing table) raise ``WarehouseError``:
        the caller must then not advance its watermark (parts already acknowledged may be sent
        again: at-least-once).
        """
        if rows.num_rows == 0:
            return []
        try:
            return self._write_isolating(target, stamp(rows))
        except GoogleAPICallError as error:
            raise WarehouseError(f"writing {rows.num_rows} rows to {target.table_id} failed: {error.message}") from error

    # -- rows BigQuery refused ---------------------------------------------------------------

    def set_aside(self, table: str, rejected: list[Rejected]) -> None:
        """Keep refused rows, their error and their source key in the organization's
        ``glific_bq_dead_letters`` table, where ``redrive`` finds them once fixed."""
        target = self._dead_letter_target()
        now = datetime.now(timezone.utc)
        letters = pa.Table.from_pylist(
            [
                {"table_name": table, "id": r.row.get("id"), "error": r.error[:10_000],
                 "row_json": json.dumps(r.row, default=str, ensure_ascii=False), "bq_inserted_at": now}
                for r in rejected
            ],
            schema=pa.schema([("table_name", pa.string()), ("id", pa.int64()), ("error", pa.string()),
                              ("row_json", pa.string()), ("bq_inserted_at", pa.timestamp("us", tz="UTC"))]),
        )
        try:
            self._write(target, letters)
        except RowsRefused as error:
            raise WarehouseError(f"could not set aside refused rows of {table}: {error}") from error

    def dead_letter_ids(self, table: str) -> list[int]:
        """Source ids of the rows of ``table`` set aside and not yet re-driven."""
        if not self.table_exists(DEAD_LETTERS):
            return []
        rows = self.query(
            f"SELECT DISTINCT id FROM `{self.dataset_ref}.{DEAD_LETTERS}` WHERE table_name = @table ORDER BY id",
            table=table,
        )
        return [r["id"] for r in rows]

    def forget_dead_letters(self, table: str, ids: list[int]) -> None:
        if ids:
            config = bigquery.QueryJobConfig(query_parameters=[
                bigquery.ScalarQueryParameter("table", "STRING", table),
                bigquery.ArrayQueryParameter("ids", "INT64", ids),
            ])
            self.client.query(
                f"DELETE FROM `{self.dataset_ref}.{DEAD_LETTERS}` WHERE table_name = @table AND id IN UNNEST(@ids)",
                job_config=config,
            ).result()

    def table_exists(self, table: str) -> bool:
        """Whether the organization's dataset has this table (or view)."""
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(f"{self.dataset_ref}.{table}", retry=_RETRY, timeout=_TIMEOUT)
            return True
        except NotFound:
            return False

    def _dead_letter_target(self) -> Target:
        table_id = f"{self.dataset_ref}.{DEAD_LETTERS}"
        self.client.create_table(
            bigquery.Table(table_id, schema=list(DEAD_LETTER_SCHEMA)), exists_ok=True, retry=_RETRY, timeout=_TIMEOUT
        )
        return Target(table_id, DEAD_LETTER_SCHEMA)

    def _write_isolating(self, target: Target, rows: pa.Table) -> list[Rejected]:
        try:
            self._write(target, rows)
            return []
        except RowsRefused as refused:
            if refused.messages and len(refused.messages) < rows.num_rows:
                bad = refused.messages
                rejected = [Rejected(_row(rows.slice(i, 1)), message) for i, message in sorted(bad.items())]
                rest = rows.filter(pa.array([i not in bad for i in range(rows.num_rows)]))
                return rejected + self._write_isolating(target, rest)  # the request was not written
            if rows.num_rows == 1:
                return [Rejected(_row(rows), str(refused))]
            half = rows.num_rows // 2
            return self._write_isolating(target, rows.slice(0, half)) + self._write_isolating(target, rows.slice(half))

    def _write(self, target: Target, rows: pa.Table) -> None:
        method = WriteMethod(self.config.write_method)
        if method is WriteMethod.LOAD_PARQUET:
            self._load_parquet(target, rows)
        else:
            self._storage_write(target, rows, arrow=method is WriteMethod.STORAGE_WRITE_ARROW)

    def _storage_write(self, target: Target, rows: pa.Table, *, arrow: bool) -> None:
        from google.cloud.bigquery_storage_v1 import types

        stream = target.stream_path
        if arrow:
            batches = arrow_batches(rows, target.schema)
            arrow_schema = types.ArrowSchema(serialized_schema=batches[0].schema.serialize().to_pybytes())
            requests = [
                (types.AppendRowsRequest(write_stream=stream, arrow_rows=types.AppendRowsRequest.ArrowData(
                    writer_schema=arrow_schema,
                    rows=types.ArrowRecordBatch(serialized_record_batch=b.serialize().to_pybytes()),
                )), b.num_rows)
                for b in batches
            ]
        else:
            descriptor = protorows.descriptor_for(target.schema)
            try:
                chunks = [c for b in rows.to_batches() for c in _chunks(protorows.serialize(b, target.schema))]
            except ValueError as error:  # a value protobuf rows cannot carry
                raise RowsRefused(str(error)) from error
            requests = [(_proto_request(stream, descriptor, chunk), len(chunk)) for chunk in chunks]
        first_row = 0
        try:
            responses = self.write_client().append_rows(iter(request for request, _ in requests), timeout=300)
            for (_, count), response in zip(requests, responses):
                if response.row_errors:
                    messages = {first_row + e.index: e.message for e in response.row_errors}
                    raise RowsRefused(f"BigQuery refused {len(messages)} row(s)", messages)
                if response.error and response.error.code:
                    if response.error.code == _INVALID_ARGUMENT or (
                        response.error.code == _UNKNOWN and self.config.emulator_host
                    ):
                        raise RowsRefused(response.error.message)
                    raise WarehouseError(f"append to {target.table_id} failed: {response.error.message}")
                first_row += count
        except (InvalidArgument, BadRequest) as error:
            raise RowsRefused(error.message) from error
        except Unknown as error:
            # bqemulator reports a value it cannot convert as UNKNOWN; from BigQuery, UNKNOWN is
            # a server fault, not a verdict on the rows: never set rows aside for it.
            if self.config.emulator_host:
                raise RowsRefused(error.message) from error
            raise

    def _load_parquet(self, target: Target, rows: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_batches(arrow_batches(rows, target.schema)), buffer)
        buffer.seek(0)
        job = self.client.load_table_from_file(
            buffer,
            target.table_id,
            job_config=bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            ),
        )
        try:
            job.result()
        except BadRequest as error:
            raise RowsRefused(error.message) from error

    def write_client(self):
        """The Storage Write API client (gRPC), created on first use."""
        if self._write_client is None:
            from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

            if self.config.storage_emulator_host:
                import grpc
                from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
                    BigQueryWriteGrpcTransport,
                )

                channel = grpc.insecure_channel(self.config.storage_emulator_host)
                self._write_client = BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
            else:
                self._write_client = BigQueryWriteClient(credentials=self._credentials)
        return self._write_client

    def query(self, statement: str, **params: object) -> list[dict]:
        """Run a query with named scalar parameters; rows as dicts (for checks and tests)."""
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(k, _param_type(v), v) for k, v in params.items()]
        )
        job = self.client.query(statement, job_config=config, retry=_RETRY, timeout=_TIMEOUT)
        return [dict(row.items()) for row in job.result(retry=_RETRY)]


def stamp(rows: pa.Table) -> pa.Table:
    """Add ``bq_uuid`` (random version-4 UUID per row) and ``bq_inserted_at`` (now, UTC)."""
    n = rows.num_rows
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    hexed = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw.tobytes().hex().encode())])
    parts = [pc.binary_slice(hexed, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    uuids = pc.cast(pc.binary_join_element_wise(*parts, pa.scalar(b"-")), pa.string())
    now = pa.array(np.full(n, np.datetime64(datetime.now(timezone.utc).replace(tzinfo=None), "us")),
                   pa.timestamp("us", tz="UTC"))
    return rows.append_column(BQ_UUID, uuids).append_column(BQ_INSERTED_AT, now)


_ARROW_TYPES = {
    "INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(), "STRING": pa.string(),
    "BYTES": pa.binary(), "DATE": pa.date32(), "TIME": pa.time64("us"), "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"), "NUMERIC": pa.decimal128(38, 9),
    "BIGNUMERIC": pa.decimal256(76, 38),
}


def arrow_batches(rows: pa.Table, schema: tuple[SchemaField, ...]) -> list[pa.RecordBatch]:
    """``rows`` cast to the Arrow types BigQuery expects for ``schema``, in schema order."""
    fields = []
    for f in schema:
        value_type = _ARROW_TYPES[f.field_type]
        fields.append(pa.field(f.name, pa.list_(value_type) if f.mode == "REPEATED" else value_type))
    arrow_schema = pa.schema(fields)
    columns = [
        rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in arrow_schema
    ]
    return pa.Table.from_arrays(columns, schema=arrow_schema).to_batches(max_chunksize=50_000)


def _row(one_row: pa.Table) -> dict:
    """A one-row table as a dict; values Python cannot hold (a year past 9999…) as their text."""
    row = {}
    for name, column in zip(one_row.column_names, one_row.columns):
        try:
            row[name] = column[0].as_py()
        except (OverflowError, ValueError):
            row[name] = pc.cast(column, pa.string())[0].as_py()
    return row


def _proto_request(stream: str, descriptor, chunk: list[bytes]):
    """An AppendRowsRequest built on the raw protobuf class: proto-plus would copy every row
    (2.8 s per 2M rows, against 0.6 s here; bench/bench_extract.py)."""
    from google.cloud.bigquery_storage_v1 import types

    request = types.AppendRowsRequest.pb()(write_stream=stream)
    request.proto_rows.writer_schema.proto_descriptor.CopyFrom(descriptor)
    request.proto_rows.rows.serialized_rows.extend(chunk)
    return types.AppendRowsRequest.wrap(request)


def _ddl_type(field: SchemaField) -> str:
    return f"ARRAY<{field.field_type}>" if field.mode == "REPEATED" else field.field_type


def _chunks(serialized: list[bytes]) -> list[list[bytes]]:
    chunks, current, size = [], [], 0
    for row in serialized:
        if current and size + len(row) + 8 > _MAX_REQUEST_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += len(row) + 8
    if current:
        chunks.append(current)
    return chunks


def _param_type(value: object) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    return "STRING"


def _credentials(config: WarehouseConfig, organization: Organization):
    """(credentials, project) for one organization.

    Order: ``GLIFIC_BQ_CREDENTIALS_DIR/<organization_id>.json`` (the organization's own service
    account and project, as Glific stores them); the base64 ``GLIFIC_BQ_CREDENTIALS``; Application
    Default Credentials. With the emulator, configured keys are still checked (a broken key fails
    locally as it would in production) and anonymous credentials are used.
    """
    info = None
    if config.credentials_dir:
        path = Path(config.credentials_dir) / f"{organization.id}.json"
        if path.exists():
            info = _read_service_account(path.read_text(), path.name, organization)
    if info is None and config.gcp_credentials:
        text = base64.b64decode(config.gcp_credentials).decode()
        info = _read_service_account(text, ENVIRONMENT["gcp_credentials"], organization)
    if config.emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), config.project
    if info is None:
        import google.auth

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
        return credentials, config.project
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_info(info)
    except (ValueError, KeyError) as error:
        raise CredentialsError(
            f"organization {organization.id}: service account is not usable ({type(error).__name__})"
        ) from None
    return credentials, info.get("project_id") or config.project


def _read_service_account(text: str, source: str, organization: Organization) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsError(f"organization {organization.id}: {source} is not valid JSON") from None
    required = {"type", "project_id", "private_key", "client_email"}
    if not isinstance(info, dict) or info.get("type") != "service_account" or not required <= set(info):
        raise CredentialsError(f"organization {organization.id}: {source} is not a service-account key")
    return info
