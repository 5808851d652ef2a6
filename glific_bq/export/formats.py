"""The export formats: CSV, Parquet and one Excel workbook, each written incrementally from Arrow
batches (Excel's limits on rows per sheet and characters per cell handled here)."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

#: Excel's rows per sheet, the header row included.
EXCEL_MAX_ROWS = 1_048_576
#: Excel's characters per cell (UTF-16 code units).
EXCEL_MAX_CHARS = 32_767
#: How a cut cell ends: the full text is in the CSV and Parquet exports.
TRUNCATION_MARKER = "…[truncated]"

_EXCEL_EPOCH = date(1899, 12, 30)  # serial 0 of Excel's 1900 date system, past its 1900 leap-year bug
_EXCEL_FIRST_EXACT = (date(1900, 3, 1) - _EXCEL_EPOCH).days  # earlier serials hit that bug: ISO text
_EXACT_INTEGER = 2**53


class _TableWriter:
    format = ""

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def discard(self) -> None:
        """Stop after a failure, leaving nothing open."""


class _FileWriter(_TableWriter):
    """One file written batch by batch by an Arrow writer opened on the first batch's schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = None

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def _open(self, schema: pa.Schema):
        raise NotImplementedError

    def _write_empty(self) -> None:
        raise NotImplementedError

    def write(self, batch: pa.RecordBatch) -> None:
        batch = self._prepare(batch)
        if self._writer is None:
            self._writer = self._open(batch.schema)
        self._writer.write_batch(batch)

    def close(self) -> Path:
        if self._writer is None:  # no batch at all: an empty file rather than none
            self._write_empty()
        else:
            self._writer.close()
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _CsvWriter(_FileWriter):
    format = "csv"

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return _csv_batch(batch)

    def _open(self, schema: pa.Schema) -> pacsv.CSVWriter:
        return pacsv.CSVWriter(str(self.path), schema)

    def _write_empty(self) -> None:
        self.path.touch()


class _ParquetWriter(_FileWriter):
    format = "parquet"

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        # Without the BigQuery client's field metadata (google:sqlType:datetime): plain Arrow types.
        schema = pa.schema([pa.field(f.name, f.type, f.nullable) for f in batch.schema])
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(str(self.path), schema)

    def _write_empty(self) -> None:
        pq.write_table(pa.table({}), str(self.path))


class _Workbook:
    """One xlsx workbook written in constant memory: rows go to disk as they are written."""

    def __init__(self, path: Path, max_rows: int) -> None:
        import xlsxwriter

        self.path, self.max_rows = path, max_rows
        # Rows wait on disk as XML until the workbook is zipped: beside the export, not in /tmp.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=".xlsx-", dir=path.parent))
        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True,
            "tmpdir": str(self.tmpdir),
            "strings_to_numbers": False,
            "strings_to_formulas": False,  # a message "=1+1" stays text
            "strings_to_urls": False,
            "nan_inf_to_errors": True,
            "use_zip64": True,  # only used past 4 GB
        })
        self.header = self.book.add_format({"bold": True})
        self.formats = {
            "datetime": self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
            "date": self.book.add_format({"num_format": "yyyy-mm-dd"}),
            "time": self.book.add_format({"num_format": "hh:mm:ss"}),
        }

    def table(self, name: str) -> _SheetWriter:
        return _SheetWriter(self, name)

    def close(self) -> Path:
        try:
            self.book.close()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return self.path

    def discard(self) -> None:
        try:
            self.close()
        except Exception:  # already failing: the partial file is removed by the caller
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class _SheetWriter(_TableWriter):
    """One table's sheets in the workbook: ``name``, ``name (2)``… past the row limit."""

    format = "xlsx"

    def __init__(self, workbook: _Workbook, table: str) -> None:
        self.workbook, self.table = workbook, table
        self.sheets: list[str] = []
        self.truncated = 0
        self._sheet = None
        self._next_row = 0  # next row of the current sheet

    def _new_sheet(self, names: list[str]) -> None:
        part = len(self.sheets) + 1
        suffix = "" if part == 1 else f" ({part})"
        name = self.table[: 31 - len(suffix)] + suffix  # Excel: 31 characters per sheet name
        self._sheet = self.workbook.book.add_worksheet(name)
        self.sheets.append(name)
        self._sheet.write_row(0, 0, names, self.workbook.header)
        self._sheet.freeze_panes(1, 0)
        self._next_row = 1

    def write(self, batch: pa.RecordBatch) -> None:
        if self._sheet is None:
            self._new_sheet(batch.schema.names)
        offset = 0
        while offset < batch.num_rows:
            if self._next_row >= self.workbook.max_rows:
                self._new_sheet(batch.schema.names)
            take = min(batch.num_rows - offset, self.workbook.max_rows - self._next_row)
            self._write_rows(batch.slice(offset, take))
            offset += take

    def _write_rows(self, batch: pa.RecordBatch) -> None:
        sheet, first = self._sheet, self._next_row
        columns = [self._cells(sheet, column) for column in batch.columns]
        for i in range(batch.num_rows):
            row = first + i
            for c, (values, write, cell_format) in enumerate(columns):
                value = values[i]
                if value is not None:
                    write(row, c, value, cell_format)
        self._next_row += batch.num_rows

    def _cells(self, sheet, column: pa.Array) -> tuple[list, Callable, object]:
        """(values, write method, format) for one column of a page, converted vectorially."""
        kind = column.type
        formats = self.workbook.formats
        if pa.types.is_boolean(kind):
            return column.to_pylist(), sheet.write_boolean, None
        if pa.types.is_integer(kind):
            return column.to_pylist(), _write_integer(sheet), None
        if pa.types.is_floating(kind):
            return column.to_pylist(), sheet.write_number, None
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            is_date = pa.types.is_date(kind)
            micros = pc.multiply(column.cast(pa.int32()).cast(pa.int64()), 86_400_000_000) if is_date else (
                column.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64()))  # UTC instants when zoned
            serials = pc.add(pc.divide(micros.cast(pa.float64()), 86_400_000_000.0), float((date(1970, 1, 1) - _EXCEL_EPOCH).days))
            early = pc.less(serials, float(_EXCEL_FIRST_EXACT)).to_pylist()
            values = serials.to_pylist()
            if any(early):  # Excel cannot show these days: ISO text instead
                texts = column.to_pylist()
                values = [t.isoformat() if e else v for v, e, t in zip(values, early, texts)]
            return values, _write_number_or_text(sheet), formats["date" if is_date else "datetime"]
        if pa.types.is_time(kind):
            fraction = pc.divide(column.cast(pa.time64("us")).cast(pa.int64()).cast(pa.float64()), 86_400_000_000.0)
            return fraction.to_pylist(), sheet.write_number, formats["time"]
        if pa.types.is_decimal(kind):
            return column.to_pylist(), _write_decimal(sheet), None
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return self._texts(column), sheet.write_string, None
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            return self._texts(_base64(column)), sheet.write_string, None
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return self._texts(_json_arrays(column)), sheet.write_string, None
        if pa.types.is_null(kind):
            return [None] * len(column), sheet.write_string, None
        return self._texts(pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())), sheet.write_string, None

    def _texts(self, column: pa.Array) -> list[str | None]:
        """Strings, those past Excel's cell limit cut with the marker (and counted)."""
        values = column.to_pylist()
        long = pc.greater(pc.utf8_length(column), EXCEL_MAX_CHARS // 2)  # cannot exceed the limit otherwise
        if pc.any(long).as_py():
            for i in pc.indices_nonzero(pc.fill_null(long, False)).to_pylist():
                cut = _excel_cut(values[i])
                if cut is not values[i]:
                    values[i] = cut
                    self.truncated += 1
        return values

    def close(self) -> tuple[tuple[str, ...], int]:
        if self._sheet is None:  # no batch at all
            self._new_sheet([])
        return tuple(self.sheets), self.truncated


def _excel_cut(text: str) -> str:
    """``text`` if Excel can hold it, else its longest prefix that fits with the marker."""
    units = text.encode("utf-16-le")
    if len(units) <= 2 * EXCEL_MAX_CHARS:
        return text
    budget = 2 * (EXCEL_MAX_CHARS - len(TRUNCATION_MARKER.encode("utf-16-le")) // 2)
    return units[:budget].decode("utf-16-le", errors="ignore") + TRUNCATION_MARKER  # never half a surrogate pair


def _write_integer(sheet) -> Callable:
    def write(row: int, col: int, value: int, cell_format) -> None:
        if -_EXACT_INTEGER < value < _EXACT_INTEGER:
            sheet.write_number(row, col, value, cell_format)
        else:  # an Excel number is a double: keep every digit as text
            sheet.write_string(row, col, str(value), cell_format)
    return write


def _write_decimal(sheet) -> Callable:
    def write(row: int, col: int, value: Decimal, cell_format) -> None:
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            sheet.write_number(row, col, as_float, cell_format)
        else:
            sheet.write_string(row, col, str(value), cell_format)
    return write


def _write_number_or_text(sheet) -> Callable:
    def write(row: int, col: int, value: float | str, cell_format) -> None:
        if isinstance(value, str):
            sheet.write_string(row, col, value)
        else:
            sheet.write_number(row, col, value, cell_format)
    return write


# -- value conversions ------------------------------------------------------------------------


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The page with every column in its CSV text form where pyarrow's differs (see the table above)."""
    columns, fields = [], []
    for f, column in zip(batch.schema, batch.columns):
        kind = f.type
        if pa.types.is_timestamp(kind):
            column = _iso_datetimes(column)
        elif pa.types.is_time(kind):
            column = pc.replace_substring_regex(column.cast(pa.time64("us")).cast(pa.string()), r"\.000000$", "")
        elif pa.types.is_decimal(kind):
            column = column.cast(pa.string())
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            column = _base64(column)
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = _json_arrays(column)
        columns.append(column)
        fields.append(pa.field(f.name, column.type))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _iso_datetimes(column: pa.Array) -> pa.Array:
    """ISO 8601 text as Python's ``isoformat`` writes it; UTC instants end with ``Z``."""
    zoned = column.type.tz is not None
    if zoned:
        column = column.cast(pa.timestamp(column.type.unit))  # the UTC wall clock
    text = pc.strftime(column.cast(pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.000000$", "")
    return pc.binary_join_element_wise(text, "Z", "") if zoned else text


def _base64(column: pa.Array) -> pa.Array:
    return pa.array([None if v is None else base64.b64encode(v).decode() for v in column.to_pylist()], pa.string())


def _json_arrays(column: pa.Array) -> pa.Array:
    """REPEATED values as JSON array text; elements as BigQuery holds them (JSON text stays a string)."""
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False, default=_json_value) for v in column.to_pylist()],
        pa.string(),
    )


def _json_value(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)
