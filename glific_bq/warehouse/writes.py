"""The write paths: rows stamped, encoded and appended, confirmed by BigQuery, refused rows
isolated.

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

The rows handed to a write may carry ``SOURCE_ID``, the id of the source row each was made from:
never sent, but kept with a refused row, so that its dead letter names the source row (in the
Glific layout a row's own ``id`` can be another table's, as in ``flows``, or text, as in
``whatsapp_forms``).
"""

from __future__ import annotations

import functools
import io
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from google.api_core import exceptions
from google.api_core.exceptions import BadRequest, GoogleAPICallError, InvalidArgument, NotFound, Unknown
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from glific_bq import protorows
from glific_bq.warehouse import known_tables
from glific_bq.warehouse.config import WarehouseConfig, WriteMethod
from glific_bq.warehouse.errors import WarehouseError
from glific_bq.warehouse.tables import Target

if TYPE_CHECKING:
    from glific_bq.warehouse.dataset import Warehouse

#: One AppendRows request must stay under 10 MB; leave room for the request envelope (the
#: descriptor, the stream name).
_MAX_REQUEST_BYTES = 8 * 1024 * 1024
#: gRPC codes of an append that was refused because of its rows, not of the service.
_INVALID_ARGUMENT, _UNKNOWN = 3, 2


class RowsRefused(Exception):
    """BigQuery refused some rows of a write (by row index when it says which); ``by_bigquery``
    is False for rows refused before they were sent (a value protobuf rows cannot carry);
    ``cause`` is what the refusal says of its reason, without what differs from one request to
    the next (a load job's upload): two refusals with one cause are the same refusal."""

    def __init__(self, message: str, messages: dict[int, str] | None = None, *, by_bigquery: bool = True,
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.messages = messages or {}
        self.by_bigquery = by_bigquery
        self.cause = cause or message


#: The column of a page that holds each row's source id (the source table's ``id``): carried
#: beside the row through the write path, never sent (the writes send the schema's columns only).
SOURCE_ID = "_glific_bq_source_id"


@dataclass(frozen=True)
class Rejected:
    """A row BigQuery refused, as sent (with its bq_uuid), why, and the id of the source row it
    was made from (None if the page did not carry ``SOURCE_ID``)."""

    row: dict
    error: str
    source_id: int | None = None

    @classmethod
    def of(cls, row: dict, error: str) -> Rejected:
        """The refused ``row`` (a dict of the page's columns), its ``SOURCE_ID`` taken out."""
        row = dict(row)
        return cls(row, error, row.pop(SOURCE_ID, None))


def append(warehouse: Warehouse, target: Target, rows: pa.Table) -> list[Rejected]:
    """Append ``rows`` (stamped by the caller, ``glific_bq.stamping``) as new row versions,
    confirmed by BigQuery.

    Rows that BigQuery refuses for their content are isolated (by the row errors it reports, or
    by halving the batch until the refused rows stand alone: ``_isolate``) and returned, so that
    one bad row does not block its table (glific#3477, #5466); everything else is written.
    Failures that are not about the rows (service down, permissions, a missing table, a refusal
    every part of the rows shares) raise ``WarehouseError``: the caller must then not advance its
    watermark (parts already acknowledged may be sent again: at-least-once).
    """
    if rows.num_rows == 0:
        return []
    try:
        refusal = checked = None
        try:
            write(warehouse, target, rows)
            return []
        except NotFound as missing:
            # A table set up earlier in this process may have changed since: check it again, once.
            checked = known_tables.recheck(warehouse, target, missing)
            if checked is None:
                raise
            write(warehouse, checked, rows)
            return []
        except RowsRefused as refused:
            refusal, checked = refused, known_tables.recheck(warehouse, target, refused)
        if checked is not None:  # the table was set up again: the whole request once more
            target, refusal = checked, _refusal(warehouse, checked, rows)
        return [] if refusal is None else _isolate(warehouse, target, rows, refusal)
    except GoogleAPICallError as error:
        raise WarehouseError(f"writing {rows.num_rows} rows to {target.table_id} failed: {error.message}") from error


def write(warehouse: Warehouse, target: Target, rows: pa.Table) -> None:
    """Write ``rows`` (already stamped) with the configured method; ``RowsRefused`` if BigQuery
    refuses any of them (then nothing of the request was written)."""
    method = WriteMethod(warehouse.config.write_method)
    if method is WriteMethod.LOAD_PARQUET:
        _load_parquet(warehouse, target, rows)
    else:
        _storage_write(warehouse, target, rows, arrow=method is WriteMethod.STORAGE_WRITE_ARROW)


def encode_ahead(warehouse: Warehouse, target: Target, rows: pa.Table) -> None:
    """Build the Storage Write requests of ``rows`` now, ahead of their ``write`` (from the sync
    pipeline's encode stage, in another thread than the network write), so that encoding one page
    overlaps writing the previous one.

    ``write`` uses them when it is handed this very ``rows`` object for the same stream and
    schema; anything else (another method, a re-checked table, a retry of part of the rows) is
    encoded at write time as before, so correctness never depends on this. At most
    ``EncodedAhead.PAGES`` pages are kept per warehouse; values protobuf rows cannot carry are left to ``write``.
    """
    if WriteMethod(warehouse.config.write_method) is not WriteMethod.STORAGE_WRITE or rows.num_rows == 0:
        return
    try:
        requests = append_requests(target.stream_path, target.schema, rows)
    except RowsRefused:
        return
    warehouse.encoded_ahead.put(rows, target, requests)


class EncodedAhead:
    """Pages encoded ahead of their write, by ``id`` of their rows (the rows are kept, so the id
    cannot be reused while the entry lives). One per ``Warehouse``, that is per tenant's sync:
    the tick's workers, syncing other tenants at once, never evict each other's pages. At most
    ``PAGES`` are kept (the sync pipeline encodes two ahead)."""

    PAGES = 4

    def __init__(self) -> None:
        self._pages: dict[int, tuple[pa.Table, str, tuple[SchemaField, ...], list]] = {}
        self._lock = threading.Lock()

    def put(self, rows: pa.Table, target: Target, requests: list) -> None:
        with self._lock:
            self._pages[id(rows)] = (rows, target.stream_path, target.schema, requests)
            while len(self._pages) > self.PAGES:
                del self._pages[next(iter(self._pages))]

    def take(self, target: Target, rows: pa.Table) -> list | None:
        """The requests encoded for this very ``rows`` to this stream and schema, if any."""
        with self._lock:
            entry = self._pages.pop(id(rows), None)
        if entry is None or entry[0] is not rows or entry[1] != target.stream_path or entry[2] != target.schema:
            return None
        return entry[3]


def open_write_client(config: WarehouseConfig, credentials):
    """A Storage Write API client (gRPC): the emulator's, or BigQuery's with ``credentials``."""
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    if config.storage_emulator_host:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
            BigQueryWriteGrpcTransport,
        )

        channel = grpc.insecure_channel(config.storage_emulator_host)
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    return BigQueryWriteClient(credentials=credentials)


def _isolate(warehouse: Warehouse, target: Target, rows: pa.Table, refusal: RowsRefused,
             rows_writable: bool = False) -> list[Rejected]:
    """The rows of ``rows``, which BigQuery refused with ``refusal``, that it refuses for their
    content, the others written.

    Rows that BigQuery names are refused for their content: set aside at once. A refusal that
    names none is narrowed by halving. A refusal that both halves share with their whole (the
    same cause, from BigQuery itself) is not about rows but about the table: a ``_default``
    stream that does not see a new column yet, a schema it does not accept, a limit), unless a
    row of it can be written: the page's first and last rows are tried alone. When they too are
    refused with that cause, setting rows aside would take them out of their table, so it raises
    ``WarehouseError``: nothing is set aside and the caller's watermark stays. A page is then
    given up after six appends (the page, again after its table was checked, two halves, two
    rows) instead of 2n - 1 (and as many load jobs, of the 1,500 a table may have a day). The
    price: a page whose first and last rows are both refused for their content with the same
    cause as all the others fails the sync, loudly, rather than being set aside. Once a row of
    the page was written (``rows_writable``), refusals are about rows and only narrowed down. Values refused before sending (``by_bigquery`` False) cost no
    append and say nothing of the table: always narrowed to their rows.
    """
    if refusal.messages:
        bad = refusal.messages
        rejected = [Rejected.of(_row(rows.slice(i, 1)), message) for i, message in sorted(bad.items())]
        rest = rows.filter(pa.array([i not in bad for i in range(rows.num_rows)]))
        again = _refusal(warehouse, target, rest)  # the request was not written
        return rejected + ([] if again is None else _isolate(warehouse, target, rest, again, rows_writable))
    if rows.num_rows == 1:
        return [Rejected.of(_row(rows), str(refusal))]
    half = rows.num_rows // 2
    parts = [rows.slice(0, half), rows.slice(half)]
    refusals = [_refusal(warehouse, target, part) for part in parts]
    if not rows_writable and all(_shared(refusal, part) for part in refusals):
        # Both halves refused as the whole was: the table's fault, or bad rows in each half. The
        # page's first and last rows alone tell them apart (two appends more): a row BigQuery
        # takes proves the refusal is about rows, which are then narrowed down as usual.
        first, last = rows.slice(0, 1), rows.slice(rows.num_rows - 1, 1)
        probes = [_refusal(warehouse, target, first), _refusal(warehouse, target, last)]
        if all(_shared(refusal, probe) for probe in probes):
            raise WarehouseError(
                f"BigQuery refused every part of a write of {rows.num_rows} rows to {target.table_id} for the same "
                f"reason, the table's, not the rows': {refusal}")
        rejected = [Rejected.of(_row(row), str(probe)) for row, probe in zip((first, last), probes, strict=True)
                    if probe is not None]
        middle = rows.slice(1, rows.num_rows - 2)
        again = _refusal(warehouse, target, middle)
        return rejected + ([] if again is None else _isolate(warehouse, target, middle, again, True))
    writable = rows_writable or any(part_refusal is None for part_refusal in refusals)
    return [rejected for part, part_refusal in zip(parts, refusals, strict=True) if part_refusal is not None
            for rejected in _isolate(warehouse, target, part, part_refusal, writable)]


def _refusal(warehouse: Warehouse, target: Target, rows: pa.Table) -> RowsRefused | None:
    """Write ``rows``: None when BigQuery confirmed them, else its refusal (nothing written)."""
    if rows.num_rows == 0:
        return None
    try:
        write(warehouse, target, rows)
        return None
    except RowsRefused as refusal:
        return refusal


def _shared(whole: RowsRefused, part: RowsRefused | None) -> bool:
    """Whether ``part`` of a write was refused by BigQuery exactly as the whole was, naming no row."""
    return (part is not None and whole.by_bigquery and part.by_bigquery and not part.messages
            and part.cause == whole.cause)


def _storage_write(warehouse: Warehouse, target: Target, rows: pa.Table, *, arrow: bool) -> None:
    from google.cloud.bigquery_storage_v1 import types

    emulated = bool(warehouse.config.emulator_host)
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
        requests = warehouse.encoded_ahead.take(target, rows) or append_requests(stream, target.schema, rows)
    first_row = acknowledged = 0
    try:
        responses = append_rows(warehouse.write_client(), stream, (request for request, _ in requests),
                                timeout=warehouse.calls.write_timeout)
        # One response per request, in order; a stream that ends before every request has its
        # own is not a confirmation of the rest (they may or may not be written: an error, and
        # the caller's watermark stays).
        for response in responses:
            if acknowledged == len(requests):
                raise WarehouseError(f"append to {target.table_id}: more responses than its {len(requests)} requests")
            count = requests[acknowledged][1]
            acknowledged += 1
            if response.row_errors:
                messages = {first_row + e.index: e.message for e in response.row_errors}
                raise RowsRefused(f"BigQuery refused {len(messages)} row(s)", messages)
            if response.HasField("error") and response.error.code:
                if response.error.code == _INVALID_ARGUMENT or (response.error.code == _UNKNOWN and emulated):
                    raise RowsRefused(response.error.message)
                raise WarehouseError(f"append to {target.table_id} failed: {response.error.message}")
            first_row += count
        if acknowledged < len(requests):
            raise WarehouseError(f"append to {target.table_id}: the response stream ended after BigQuery "
                                 f"acknowledged {acknowledged} of {len(requests)} requests")
    except (InvalidArgument, BadRequest) as error:
        raise RowsRefused(error.message) from error
    except Unknown as error:
        # bqemulator reports a value it cannot convert as UNKNOWN; from BigQuery, UNKNOWN is
        # a server fault, not a verdict on the rows: never set rows aside for it.
        if emulated:
            raise RowsRefused(error.message) from error
        raise


_APPEND_ROWS = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"


def append_rows(client, stream: str, requests: Iterator[object], *, timeout: float) -> Iterator[object]:
    """One AppendRows call to ``stream`` on ``client``'s gRPC channel: its responses, as protobuf
    messages, errors raised as the client raises them (``google.api_core.exceptions``).

    Two things the client's own ``append_rows`` does not do: it names the stream in the routing
    header, which BigQuery routes the call by (the client sends it empty, and BigQuery then
    refuses some calls with ``Cannot route on empty project id``, a refusal that would look like
    refused rows: google-cloud-python#16650), and it skips the client's layers of retry and
    proto-plus wrapping of every response, which cost more CPU than the append itself at the
    minute tick's one small page per table (docs/scale.md). A stream call is never retried here
    anyway: the requests are an iterator, sent once.
    """
    request_class, response_class = _message_classes()
    call = client.transport.grpc_channel.stream_stream(
        _APPEND_ROWS, request_serializer=lambda request: request_class.pb(request).SerializeToString(),
        response_deserializer=response_class.FromString)
    responses = call(requests, timeout=timeout, metadata=(("x-goog-request-params", f"write_stream={stream}"),))
    try:
        yield from responses
    except grpc.RpcError as error:
        raise exceptions.from_grpc_error(error) from error
    finally:
        responses.cancel()  # a caller that stops reading ends the call (no-op once it ended)


@functools.cache
def _message_classes():
    """The request's proto-plus class (requests are built as proto-plus) and the response's raw
    protobuf class, imported once (google.cloud.bigquery_storage_v1 is imported on first use)."""
    from google.cloud.bigquery_storage_v1 import types

    return types.AppendRowsRequest, types.AppendRowsResponse.pb()


def append_requests(stream: str, schema: tuple[SchemaField, ...], rows: pa.Table) -> list[tuple[object, int]]:
    """``rows`` as protobuf AppendRowsRequests for ``stream`` (each under 10 MB), with their row
    counts: everything a Storage Write append does before the network; ``RowsRefused`` for a
    value protobuf rows cannot carry."""
    descriptor = protorows.descriptor_for(schema)
    try:
        chunks = protorows.proto_rows(rows, schema, _MAX_REQUEST_BYTES)  # the page in one pass
    except ValueError as error:  # a value protobuf rows cannot carry
        raise RowsRefused(str(error), by_bigquery=False) from error
    return [(_proto_request(stream, descriptor, chunk), count) for chunk, count in chunks]


def _load_parquet(warehouse: Warehouse, target: Target, rows: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_batches(arrow_batches(rows, target.schema)), buffer, **PARQUET_OPTIONS)
    buffer.seek(0)
    _load_job(warehouse, target, buffer)


#: How the Parquet files load jobs send are written. ZSTD (BigQuery reads GZip, LZO, Snappy and
#: ZSTD data blocks) writes about as fast as Snappy, Arrow's default, and the file is 38 % smaller
#: (66 against 106 MB per million Glific messages: less to upload); without dictionaries (ZSTD
#: compresses as well without) and without statistics (a load job reads every row anyway) it
#: writes in 0.71–0.80 CPU s per million rows instead of 0.95–0.99 (Snappy: 0.95–1.16), measured
#: by bench/bench_decode.py on 200,000 prepared rows written each way (pyarrow 26).
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": False, "write_statistics": False}


def _parquet_options():
    options = bigquery.ParquetOptions()
    options.enable_list_inference = True  # Arrow's list<…> columns are REPEATED fields, not a "list" RECORD
    return options


_PARQUET_OPTIONS = _parquet_options()


#: Retries of a load job's upload (see ``_load_job``).
_UPLOAD_RETRIES = 1


def _load_job(warehouse: Warehouse, target: Target, parquet) -> None:
    """Append the Parquet file ``parquet`` (a binary file object at its start) by a load job,
    confirmed; ``RowsRefused`` if BigQuery refuses its rows (then nothing was appended).

    The upload is tried at most twice, each try within half the write timeout (the client's
    default, six tries each with the whole timeout and growing sleeps between them, would keep a
    BigQuery that stopped answering for many minutes); the wait for the job within the write
    timeout again. A failed upload fails the sync, which reads the rows again after its backoff.
    """
    job = warehouse.client.load_table_from_file(
        parquet,
        target.table_id,
        job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            parquet_options=_PARQUET_OPTIONS,
        ),
        num_retries=_UPLOAD_RETRIES,
        timeout=warehouse.calls.write_timeout / (_UPLOAD_RETRIES + 1),
    )
    try:
        job.result(retry=warehouse.calls.retry, timeout=warehouse.calls.write_timeout)
    except BadRequest as error:
        # Each error's reason and message, not its location (the job's own upload).
        causes = [(e.get("reason"), e.get("message")) for e in error.errors or () if isinstance(e, dict)]
        raise RowsRefused(error.message, cause=repr(causes) if causes else None) from error


#: Load jobs a backfill may run into one table per UTC day. BigQuery allows 1,500 table
#: modifications per table per day (load, copy and query jobs that write to it; Storage Write
#: appends, the minute syncs, do not count). The 500 left are the margin for everything else
#: that may write to the table in a day: dedup (one pass every 90 minutes, 16 a day, if its DML
#: counts), loads that failed after counting, an operator's own loads or copies, and a tenant
#: configured with ``load_parquet`` for a while. 1,000 loads of 500,000 rows are 500M rows per
#: table per day, far above any Glific backlog.
LOADS_PER_TABLE_PER_DAY = 1_000


def loads_backlogs(warehouse: Warehouse) -> bool:
    """Whether large backlogs go by load jobs (``ParquetLoad``): when the configured method is
    the Storage Write API (with ``load_parquet`` everything already does)."""
    return WriteMethod(warehouse.config.write_method) is not WriteMethod.LOAD_PARQUET


class ParquetLoad:
    """Pages of a backlog gathered into one Parquet file on disk and loaded by one load job
    (``load``): memory stays one page, whatever the load's size.

    A load job is free (batch slots) and appends a whole file atomically; its cost is one of the
    table's daily modifications and a start-up of seconds. When BigQuery refuses the file because
    of its rows, they are read back and appended by the Storage Write API instead, which isolates
    the refused rows (a load job only says the file failed).
    """

    def __init__(self, warehouse: Warehouse, target: Target) -> None:
        self.warehouse, self.target = warehouse, target
        self.rows = 0
        self._file = tempfile.NamedTemporaryFile(prefix="glific_bq_load_", suffix=".parquet")
        self._writer: pq.ParquetWriter | None = None
        self._source_ids: list[pa.ChunkedArray] = []  # SOURCE_ID of the rows in the file, which leaves it out

    def add(self, rows: pa.Table) -> None:
        """Add a page (stamped, as ``append`` takes it) to the file."""
        if rows.num_rows == 0:
            return
        table = pa.Table.from_batches(arrow_batches(rows, self.target.schema))
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, table.schema, **PARQUET_OPTIONS)
        self._writer.write_table(table)
        self.rows += rows.num_rows
        if SOURCE_ID in rows.column_names:
            self._source_ids.append(rows.column(SOURCE_ID).cast(pa.int64()))

    def load(self) -> list[Rejected]:
        """Run the load job and wait for it (or, if it refuses the rows, append them by the
        Storage Write API); the rows refused, as ``append`` returns them. Then the file is gone."""
        try:
            if self._writer is None:
                return []
            self._writer.close()
            self._file.seek(0)
            try:
                try:
                    _load_job(self.warehouse, self.target, self._file)
                    return []
                except RowsRefused:
                    pass
            except GoogleAPICallError as error:
                raise WarehouseError(
                    f"loading {self.rows} rows into {self.target.table_id} failed: {error.message}") from error
            source_ids = pa.chunked_array([c for ids in self._source_ids for c in ids.chunks], pa.int64())
            rejected, start = [], 0  # the configured method: the Storage Write API (see ``loads_backlogs``)
            for batch in pq.ParquetFile(self._file.name).iter_batches(batch_size=20_000):
                rows = pa.Table.from_batches([batch])
                if len(source_ids) == self.rows:
                    rows = rows.append_column(SOURCE_ID, source_ids.slice(start, batch.num_rows))
                rejected += append(self.warehouse, self.target, rows)
                start += batch.num_rows
            return rejected
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the file without loading it."""
        if self._writer is not None and self._writer.is_open:
            self._writer.close()
        self._file.close()


def arrow_batches(rows: pa.Table, schema: tuple[SchemaField, ...]) -> list[pa.RecordBatch]:
    """``rows`` cast to the Arrow types BigQuery expects for ``schema``, in schema order."""
    arrow_schema = protorows.arrow_schema(schema)
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


def _proto_request(stream: str, descriptor, proto_rows: bytes):
    """An AppendRowsRequest built on the raw protobuf class, its rows parsed in C from their
    encoded ``ProtoRows`` (``protorows.proto_rows``): proto-plus would copy every row (2.8 s per
    2M rows, against 0.6 s for a list of bytes, measured with the former bench/bench_extract.py),
    and a list of bytes costs a Python object per row."""
    from google.cloud.bigquery_storage_v1 import types

    request = types.AppendRowsRequest.pb()(write_stream=stream)
    request.proto_rows.writer_schema.proto_descriptor.CopyFrom(descriptor)
    request.proto_rows.rows.MergeFromString(proto_rows)
    return types.AppendRowsRequest.wrap(request)
