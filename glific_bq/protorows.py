"""Encode Arrow record batches as protobuf rows for the BigQuery Storage Write API.

AppendRows takes each row as one serialized protobuf message plus a ``DescriptorProto``
describing it. Building a protobuf message object per row in Python is too slow for bulk syncs
(see bench/bench_protorows.py); this module instead encodes whole columns with numpy and
pyarrow.compute, so the per-row work happens inside numpy and Arrow's C++ kernels.

How a batch is encoded:

* Every field becomes a sequence of *segments*, each contributing some bytes to every row.
  A ``_Grid`` holds up to ``width`` bytes per row plus a mask of the bytes each row keeps
  (tags, varints, doubles, bools, length prefixes); an Arrow binary array contributes its
  values as they are (string and bytes payloads, not copied until the final join).
* Grids are stored byte position by byte position, (width, rows), so building them is
  contiguous numpy work. Consecutive grids are stacked and compacted with one boolean index
  read row by row, so a run of numeric fields costs a handful of numpy calls. The runs and the
  binary arrays are then concatenated per row with ``binary_join_element_wise``. A NULL
  string becomes an empty value before the join (an omitted field: its tag and length are
  masked), so that no piece has a validity bitmap: the join costs half as much without one. A
  column NULL in every row contributes nothing at all, and string values empty in every row
  only their tags and lengths. A grid every row keeps whole (mask None) is only transposed.
* Fields are emitted in field-number order, which makes every row byte-identical to
  ``SerializeToString()`` of the equivalent message.

REPEATED columns reuse the same machinery on the flattened list values, then regroup the
encoded elements per row by offsets alone: the elements of a row are already contiguous.
Numeric lists are packed (declared ``packed=true`` in the descriptor).

RECORD columns (Arrow ``struct``) are nested messages. Their child fields are encoded for all
struct values at once, with the struct's NULLs pushed down into the children (a NULL struct then
contributes no child bytes); the record is those child segments behind a tag and a length prefix,
the length being the sum of what the children contribute per value. So a NULLABLE RECORD costs no
join of its own: its segments join the row's. A REPEATED RECORD (``list<struct>``) encodes its
flattened elements this way into one entry each, then regroups them per row like any list.

A page of at most ``SMALL_PAGE_ROWS`` rows is instead written value by value in plain Python from
each column's values: the vectorized path's cost is mostly per column, which a few rows never earn
back. Both paths share the traversal, its checks and the conversions of values (``_matched``,
``_values``, ``_children``, ``_convert``), and write the same bytes (test_protorows runs every
test on both).

``arrow_type`` / ``arrow_schema`` give the Arrow type of each BigQuery column, the types
``serialize`` (and Arrow or Parquet writes) take.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from enum import Enum
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.cloud.bigquery import SchemaField
from google.protobuf import descriptor_pb2

_Field = descriptor_pb2.FieldDescriptorProto


def descriptor_for(schema: Sequence[SchemaField], name: str = "Row") -> descriptor_pb2.DescriptorProto:
    """The proto2 message describing rows of ``schema``: field i is number i+1, named after the column.

    REPEATED numeric fields are declared packed, matching how ``serialize`` writes them. A RECORD
    is a message type nested in the one that holds it (``FieldsRecord`` for a column ``fields``),
    referenced by a relative name, so the descriptor is self-contained as the Storage Write API
    requires, and resolves whatever package it is placed in.
    """
    return _message_descriptor(schema, name, "")


def serialize(batch: pa.RecordBatch, schema: Sequence[SchemaField]) -> list[bytes]:
    """Each row of ``batch`` as a serialized message of ``descriptor_for(schema)``.

    Columns are matched to schema fields by name, and a RECORD's struct children to its subfields
    likewise; a field without a column (or child) is NULL in every row. NULL values, NULL structs
    and NULL or empty lists are omitted from the row.
    """
    columns = zip(batch.schema.names, batch.columns, strict=True)
    if batch.num_rows <= SMALL_PAGE_ROWS:
        return _small_rows(schema, columns, batch.num_rows)
    return _concat_rows(_message_segments(schema, columns, ""), batch.num_rows).to_pylist()


def proto_rows(
    rows: pa.RecordBatch | pa.Table, schema: Sequence[SchemaField], max_bytes: int
) -> list[tuple[bytes, int]]:
    """The rows of ``rows`` as encoded ``ProtoRows`` messages (what an AppendRowsRequest carries
    in ``proto_rows.rows``) of at most ``max_bytes`` each (a row larger than that alone), with
    their row counts.

    The same rows as ``serialize``, each behind ProtoRows' ``serialized_rows`` tag and its length,
    built in the same single join, so that no Python object is made per row: the request parses
    the chunk in C (``MergeFromString``). A small page (``SMALL_PAGE_ROWS``) is written row by row.

    A table is encoded in one pass (its columns combined), but no chunk spans two of its record
    batches: the chunks are exactly those of its batches encoded one by one, in one third of the
    time for a page of three batches (bench/bench_protorows.py), since most of the cost is per
    column, not per row.
    """
    if isinstance(rows, pa.Table):
        sizes = [b.num_rows for b in rows.to_batches()]
        try:
            batch = _combined(rows)
        except pa.ArrowInvalid:  # a column too large for one array (2 GB of strings): batch by batch
            return [c for b in rows.to_batches() for c in proto_rows(b, schema, max_bytes)]
    else:
        sizes, batch = [rows.num_rows], rows
    count = batch.num_rows
    columns = zip(batch.schema.names, batch.columns, strict=True)
    if count <= SMALL_PAGE_ROWS:
        tag = _varint_bytes(1 << 3 | _LEN)
        messages = _small_rows(schema, columns, count)
        entries = pa.array([tag + _varint_bytes(len(m)) + m for m in messages], pa.large_binary())
    else:
        segments = _message_segments(schema, columns, "")
        lengths = _segment_lengths(segments, count)  # each row's message length
        entries = _concat_rows([_tag_grid(1, _LEN, None, count), _varint_grid(lengths, None), *segments], count)
    if count == 0:
        return []
    offsets = _offsets(entries)
    data = entries.buffers()[2]
    chunks = []
    start = 0
    for size in sizes:
        stop = start + size  # this batch's rows
        while start < stop:
            end = int(np.searchsorted(offsets, offsets[start] + max_bytes, side="right")) - 1
            end = min(stop, max(end, start + 1))
            chunks.append((data[int(offsets[start]) : int(offsets[end])].to_pybytes(), end - start))
            start = end
    return chunks


def _combined(rows: pa.Table) -> pa.RecordBatch:
    """``rows`` as one record batch (columns of one chunk are not copied)."""
    batches = rows.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=rows.schema)


def arrow_type(field: SchemaField) -> pa.DataType:
    """The Arrow type holding values of a BigQuery column: RECORD is a struct, REPEATED a list.

    DATETIME is a naive ``timestamp[us]`` (civil time), TIMESTAMP ``timestamp[us, UTC]``, NUMERIC
    ``decimal128(38, 9)``, BIGNUMERIC ``decimal256(76, 38)``, JSON its text. Every field is nullable
    (REQUIRED included), so casting a source column never depends on its NULLs.
    """
    return _arrow_type(field, field.name)


def arrow_schema(schema: Sequence[SchemaField]) -> pa.Schema:
    """The Arrow schema of rows of ``schema``, in schema order (see ``arrow_type``)."""
    return pa.schema([pa.field(f.name, arrow_type(f)) for f in schema])


def _arrow_type(field: SchemaField, path: str) -> pa.DataType:
    if _is_record(field):
        children = [pa.field(f.name, _arrow_type(f, f"{path}.{f.name}")) for f in _subfields(field, path)]
        value_type: pa.DataType = pa.struct(children)
    else:
        value_type = _mapping(field, path).arrow_type
    return pa.list_(value_type) if field.mode == "REPEATED" else value_type


# ---------------------------------------------------------------------------------------------
# Messages: a schema (the row, or a RECORD's subfields) as a descriptor and as segments
# ---------------------------------------------------------------------------------------------


def _is_record(field: SchemaField) -> bool:
    return field.field_type in ("RECORD", "STRUCT")


def _subfields(field: SchemaField, path: str) -> tuple[SchemaField, ...]:
    if not field.fields:
        raise TypeError(f"column {path!r}: a RECORD needs at least one field")
    return field.fields


def _message_descriptor(schema: Sequence[SchemaField], name: str, path: str) -> descriptor_pb2.DescriptorProto:
    descriptor = descriptor_pb2.DescriptorProto(name=name)
    taken = {field.name for field in schema}  # nested type names share the message's scope with fields
    for number, field in enumerate(schema, start=1):
        field_path = f"{path}{field.name}"
        repeated = field.mode == "REPEATED"
        label = _Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL
        if _is_record(field):
            type_name = field.name[:1].upper() + field.name[1:] + "Record"
            while type_name in taken:
                type_name += "_"
            taken.add(type_name)
            nested = _message_descriptor(_subfields(field, field_path), type_name, f"{field_path}.")
            descriptor.nested_type.add().CopyFrom(nested)
            descriptor.field.add(
                name=field.name, number=number, type=_Field.TYPE_MESSAGE, type_name=type_name, label=label
            )
            continue
        mapping = _mapping(field, field_path)
        proto_field = descriptor.field.add(name=field.name, number=number, type=mapping.proto_type, label=label)
        if repeated and mapping.kind is not _Kind.BYTES:
            proto_field.options.packed = True
    return descriptor


def _message_segments(
    schema: Sequence[SchemaField], columns: Iterable[tuple[str, pa.Array]], path: str
) -> list[_Segment]:
    """The segments writing ``schema``'s fields, in field-number order, from columns matched by name."""
    matched = _matched(schema, columns, path)
    return [s for number, field, column, at in matched for s in _field_segments(number, field, column, at)]


def _matched(
    schema: Sequence[SchemaField], columns: Iterable[tuple[str, pa.Array]], path: str
) -> Iterator[tuple[int, SchemaField, pa.Array, str]]:
    """Each field of ``schema`` that has a column, as (number, field, column, path), in field-number
    order; a field's type is checked (and a duplicate column refused) as it comes, even when absent."""
    by_name: dict[str, list[pa.Array]] = {}
    for column_name, column in columns:
        by_name.setdefault(column_name, []).append(column)
    for number, field in enumerate(schema, start=1):
        field_path = f"{path}{field.name}"
        _check_supported(field, field_path)  # even when the column is absent
        found = by_name.get(field.name, [])
        if len(found) > 1:
            where = "its struct" if path else "the batch"
            raise ValueError(f"column {field_path!r} appears {len(found)} times in {where}")
        if found:
            yield number, field, found[0], field_path


def _check_supported(field: SchemaField, path: str) -> None:
    if _is_record(field):
        for subfield in _subfields(field, path):
            _check_supported(subfield, f"{path}.{subfield.name}")
    else:
        _mapping(field, path)


def _children(values: pa.Array, path: str) -> Iterable[tuple[str, pa.Array]]:
    """A struct column's children by name, with the struct's NULLs pushed into them (``flatten``),
    so that a NULL struct gets no child bytes."""
    if not pa.types.is_struct(values.type):
        raise TypeError(f"column {path!r}: a RECORD needs an Arrow struct, got {values.type}")
    return zip((f.name for f in values.type), values.flatten(), strict=True)


def _record_segments(number: int, field: SchemaField, values: pa.Array, path: str) -> list[_Segment]:
    """Each present struct value as (tag, length, its child fields): one embedded message per value."""
    child_segments = _message_segments(_subfields(field, path), _children(values, path), f"{path}.")
    present = _present(values)
    if present is not None and not present.any():
        return []
    lengths = _segment_lengths(child_segments, len(values))
    return [_tag_grid(number, _LEN, present, len(values)), _varint_grid(lengths, present), *child_segments]


# ---------------------------------------------------------------------------------------------
# BigQuery types: protobuf type, wire encoding, and the Arrow columns they accept
# ---------------------------------------------------------------------------------------------


class _Kind(Enum):
    """How one value is written, and the Arrow type columns are normalized to for it."""

    VARINT = "int64"  # INT64, TIMESTAMP (microseconds), DATE (days)
    DOUBLE = "float64"  # fixed 8 bytes, little-endian
    BOOL = "bool"  # a one-byte varint
    BYTES = "binary"  # length-delimited: STRING, BYTES and every text encoding (binary or large_binary)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


# A conversion returns a column already of its kind's type as it is (a cast costs more than the
# encoding of a small page's column).


def _integers(values: pa.Array) -> pa.Array | None:
    if not pa.types.is_signed_integer(values.type):
        return None
    return values if pa.types.is_int64(values.type) else values.cast(pa.int64())


def _floats(values: pa.Array) -> pa.Array | None:
    if not pa.types.is_floating(values.type):
        return None
    return values if pa.types.is_float64(values.type) else values.cast(pa.float64())


def _bools(values: pa.Array) -> pa.Array | None:
    return values if pa.types.is_boolean(values.type) else None


def _text(values: pa.Array) -> pa.Array | None:
    """Text as its UTF-8 bytes, without a copy (a view of the same buffers)."""
    if not _is_text(values.type):
        return None
    return values.view(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())


def _binary(values: pa.Array) -> pa.Array | None:
    return values if _is_binary(values.type) else None


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _decimal_text(values: pa.Array) -> pa.Array | None:
    """Decimals as plain decimal text (Arrow writes tiny or negative-scale ones as ``1E-9``); text as is."""
    if _is_text(values.type):
        return _text(values)
    if not pa.types.is_decimal(values.type):
        return None
    text = values.cast(pa.string())
    exponent = pc.fill_null(pc.match_substring(text, "E"), False)
    if pc.any(exponent).as_py():
        plain = [format(Decimal(s), "f") for s in pc.filter(text, exponent).to_pylist()]
        text = pc.replace_with_mask(text, exponent, pa.array(plain, pa.string()))
    return _text(text)


def _days(values: pa.Array) -> pa.Array | None:
    return values.cast(pa.int32()).cast(pa.int64()) if pa.types.is_date32(values.type) else None


def _microseconds(values: pa.Array) -> pa.Array:
    """Timestamps as int64 microseconds since the epoch (UTC); nanoseconds are floored."""
    if values.type.unit == "ns":
        micros = np.floor_divide(_numpy(values.cast(pa.int64())), 1000)
        return pa.array(micros, mask=_absent(values))
    if values.type.unit == "us":
        return values.view(pa.int64())
    return values.cast(pa.timestamp("us", values.type.tz)).cast(pa.int64())  # raises on overflow


def _timestamps(values: pa.Array) -> pa.Array | None:
    return _microseconds(values) if pa.types.is_timestamp(values.type) else None


def _datetimes(values: pa.Array) -> pa.Array | None:
    """Civil date-times as ``YYYY-MM-DD HH:MM:SS.ffffff`` (Arrow's format for timestamp[us])."""
    if not pa.types.is_timestamp(values.type) or values.type.tz is not None:
        return None
    return _text(_microseconds(values).view(pa.timestamp("us")).cast(pa.string()))


def _times(values: pa.Array) -> pa.Array | None:
    """Times of day as ``HH:MM:SS.ffffff`` (Arrow's format for time64[us]); nanoseconds are dropped."""
    if not pa.types.is_time(values.type):
        return None
    return _text(values.cast(pa.time64("us"), safe=False).cast(pa.string()))


class _Mapping(NamedTuple):
    proto_type: int  # FieldDescriptorProto.Type
    kind: _Kind
    convert: Callable[[pa.Array], pa.Array | None]  # the normalized column, or None if unsupported
    arrow_type: pa.DataType  # the Arrow type that holds the BigQuery type (``arrow_type``)


# The Storage Write API's protobuf type for each BigQuery type, and how Arrow columns reach it.
_INT64 = _Mapping(_Field.TYPE_INT64, _Kind.VARINT, _integers, pa.int64())
_FLOAT64 = _Mapping(_Field.TYPE_DOUBLE, _Kind.DOUBLE, _floats, pa.float64())
_BOOL = _Mapping(_Field.TYPE_BOOL, _Kind.BOOL, _bools, pa.bool_())
_MAPPINGS = {
    "INT64": _INT64,
    "INTEGER": _INT64,
    "FLOAT64": _FLOAT64,
    "FLOAT": _FLOAT64,
    "BOOL": _BOOL,
    "BOOLEAN": _BOOL,
    "STRING": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _text, pa.string()),
    "JSON": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _text, pa.string()),
    "BYTES": _Mapping(_Field.TYPE_BYTES, _Kind.BYTES, _binary, pa.binary()),
    "NUMERIC": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _decimal_text, pa.decimal128(38, 9)),
    "BIGNUMERIC": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _decimal_text, pa.decimal256(76, 38)),
    "DATE": _Mapping(_Field.TYPE_INT32, _Kind.VARINT, _days, pa.date32()),
    "DATETIME": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _datetimes, pa.timestamp("us")),
    "TIMESTAMP": _Mapping(_Field.TYPE_INT64, _Kind.VARINT, _timestamps, pa.timestamp("us", tz="UTC")),
    "TIME": _Mapping(_Field.TYPE_STRING, _Kind.BYTES, _times, pa.time64("us")),
}


def _mapping(field: SchemaField, path: str) -> _Mapping:
    """The mapping of a scalar BigQuery type; ``path`` names the column (``settings.values.key``)."""
    try:
        return _MAPPINGS[field.field_type]
    except KeyError:
        raise TypeError(f"column {path!r}: BigQuery type {field.field_type} is not supported") from None


def _convert(field: SchemaField, values: pa.Array, column_type: pa.DataType, path: str) -> tuple[_Kind, pa.Array]:
    """``values`` (the column, or a REPEATED column's elements) normalized for its wire kind."""
    mapping = _mapping(field, path)
    converted = mapping.convert(values)
    if converted is None:
        raise TypeError(
            f"column {path!r}: Arrow type {column_type} cannot be written to BigQuery {field.field_type}"
        )
    return mapping.kind, converted


# ---------------------------------------------------------------------------------------------
# Encoding columns into segments
# ---------------------------------------------------------------------------------------------


class _Grid(NamedTuple):
    """Row i contributes ``values[:, i][mask[:, i]]``: up to ``width`` bytes, kept per the mask."""

    values: np.ndarray  # uint8, shape (width, rows)
    mask: np.ndarray | None  # bool, shape (width, rows); None: every row keeps all ``width`` bytes


_Segment = _Grid | pa.Array  # a large_binary array without NULLs contributes each value

_VARINT, _I64, _LEN = 0, 1, 2  # protobuf wire types


def _field_segments(number: int, field: SchemaField, column: pa.Array, path: str) -> list[_Segment]:
    """The segments that write ``column`` as field ``number``."""
    values = _values(field, column, path)
    if field.mode != "REPEATED":
        if _is_record(field):
            return _record_segments(number, field, values, path)
        kind, values = _convert(field, values, column.type, path)
        return _value_segments(number, kind, values) if values.null_count < len(values) else []

    elements = values
    counts = _numpy(pc.list_value_length(column))
    row_starts = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(counts, out=row_starts[1:])

    if _is_record(field):  # one (tag, length, message) entry per element
        encoded = _concat_rows(_record_segments(number, field, elements, path), len(elements))
        return [_regroup(encoded, row_starts)] if len(elements) else []
    kind, elements = _convert(field, elements, column.type, path)
    if not len(elements):
        return []
    if kind is _Kind.BYTES:  # one (tag, length, bytes) entry per element
        encoded = _concat_rows(_value_segments(number, kind, elements), len(elements))
        return [_regroup(encoded, row_starts)]
    # Packed: one (tag, total length) header followed by the untagged payloads.
    payloads = _concat_rows([_payload_grid(kind, elements, None)], len(elements))
    content = _regroup(payloads, row_starts)
    content_lengths = np.diff(_offsets(content))
    non_empty = content_lengths > 0
    return [_tag_grid(number, _LEN, non_empty, len(column)), _varint_grid(content_lengths, non_empty), content]


def _values(field: SchemaField, column: pa.Array, path: str) -> pa.Array:
    """The values ``column`` holds for ``field``: the column itself, or a REPEATED column's list
    elements (refusing a NULL element, naming its row). Both encoders start here."""
    is_list = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
    if field.mode != "REPEATED":
        if is_list:
            raise TypeError(f"column {path!r}: Arrow type {column.type} needs a REPEATED field")
        return column
    if not is_list:
        raise TypeError(f"column {path!r}: REPEATED field needs an Arrow list, got {column.type}")
    elements = column.flatten()  # skips NULL lists and honours slicing
    if elements.null_count:
        row = pc.list_parent_indices(column)[_first_null(elements)].as_py()
        raise ValueError(f"column {path!r}: REPEATED value in row {row} contains a NULL element")
    if _is_record(field) and not pa.types.is_struct(elements.type):
        raise TypeError(f"column {path!r}: a REPEATED RECORD needs an Arrow list of structs, got {column.type}")
    return elements


def _value_segments(number: int, kind: _Kind, values: pa.Array) -> list[_Segment]:
    """Each present value as (tag, payload); for BYTES the payload is a length grid plus the data."""
    present = _present(values)
    rows = len(values)
    if kind is _Kind.BYTES:
        if not pa.types.is_large_binary(values.type):
            values = values.cast(pa.large_binary())  # 64-bit offsets, as the joins take
        values = _empty_nulls(values, present)
        lengths = np.diff(_offsets(values))
        header = [_tag_grid(number, _LEN, present, rows), _varint_grid(lengths, present)]
        return [*header, values] if lengths.any() else header  # empty values: the header is all
    wire_type = _I64 if kind is _Kind.DOUBLE else _VARINT
    return [_tag_grid(number, wire_type, present, rows), _payload_grid(kind, values, present)]


def _payload_grid(kind: _Kind, values: pa.Array, present: np.ndarray | None) -> _Grid:
    """The untagged wire bytes of each present value of a numeric column."""
    if kind is _Kind.VARINT:
        return _varint_grid(_numpy(values), present)
    if kind is _Kind.DOUBLE:
        raw = np.ascontiguousarray(_numpy(values), dtype="<f8").view(np.uint8).reshape(-1, 8).T
    else:
        raw = _numpy(values).astype(np.uint8)[None, :]
    return _Grid(raw, _present_mask(present, raw.shape))


def _varint_grid(numbers: np.ndarray, present: np.ndarray | None) -> _Grid:
    """Base-128 varints of int64 values; negatives take 10 bytes (two's complement), as protobuf does."""
    unsigned = numbers.astype(np.int64, copy=False).view(np.uint64)
    width = max(1, -(-int(unsigned.max(initial=0)).bit_length() // 7))
    values = np.empty((width, len(unsigned)), dtype=np.uint8)
    if present is None and int(unsigned.min(initial=0)) >> (7 * (width - 1)):  # all of the same width
        for k in range(width):
            np.copyto(values[k], unsigned >> np.uint64(7 * k), casting="unsafe")
            if k + 1 < width:
                values[k] |= 0x80
        return _Grid(values, None)
    mask = np.empty((width, len(unsigned)), dtype=bool)
    mask[0] = True if present is None else present
    for k in range(width):  # byte k: bits 7k.., with the high bit set when another byte follows
        np.copyto(values[k], unsigned >> np.uint64(7 * k), casting="unsafe")
        if k + 1 < width:
            np.greater(unsigned, np.uint64((1 << (7 * (k + 1))) - 1), out=mask[k + 1])
            values[k] &= 0x7F
            values[k] |= mask[k + 1].view(np.uint8) << 7
    return _Grid(values, mask)


def _tag_grid(number: int, wire_type: int, present: np.ndarray | None, rows: int) -> _Grid:
    """The field's tag (number and wire type as a varint) in every present row."""
    tag = _varint_bytes(number << 3 | wire_type)
    values = np.broadcast_to(np.frombuffer(tag, dtype=np.uint8)[:, None], (len(tag), rows))
    return _Grid(values, _present_mask(present, values.shape))


def _varint_bytes(number: int) -> bytes:
    """A base-128 varint; a negative number as its 64-bit two's complement (ten bytes), as protobuf does."""
    number &= 0xFFFF_FFFF_FFFF_FFFF
    if number < 0x80:
        return _SMALL_VARINTS[number]
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_SMALL_VARINTS = [bytes([n]) for n in range(0x80)]


# ---------------------------------------------------------------------------------------------
# Small pages: row by row in plain Python
# ---------------------------------------------------------------------------------------------

#: Pages of at most this many rows are encoded value by value in Python (``_small_rows``): the
#: vectorized encoder's cost is mostly per column (dozens of numpy and Arrow calls each, ~3.5 ms a
#: page of 41 columns), which a page of a few rows, the minute tick's usual page, never earns back.
#: ``bench/bench_protorows.py --small`` on Glific's messages (41 columns): the small path is 4-5x
#: faster up to 20 rows, 1.9x at 64, 1.7x at 100, and slower from about 200 rows (0.9x); 64 keeps
#: a margin below that crossover for schemas and values dearer per row in Python.
SMALL_PAGE_ROWS = 64


def _small_rows(schema: Sequence[SchemaField], columns: Iterable[tuple[str, pa.Array]], rows: int) -> list[bytes]:
    """The rows ``serialize`` makes, written from each column's Python values.

    The same traversal, checks and conversions as the vectorized path (``_matched``, ``_values``,
    ``_children``, ``_convert``: one Arrow cast or so per column); only the wire bytes are written
    here, per value, so the two paths agree byte for byte.
    """
    return _small_join(_small_message(schema, columns, "", rows), rows)


def _small_join(fields: list[list[bytes]], rows: int) -> list[bytes]:
    """Row i: every field's bytes for row i, in field order."""
    return [b"".join(parts) for parts in zip(*fields)] if fields else [b""] * rows


def _small_message(
    schema: Sequence[SchemaField], columns: Iterable[tuple[str, pa.Array]], path: str, rows: int
) -> list[list[bytes]]:
    """Per field that has a column, its bytes in each row (``b""`` where absent)."""
    return [_small_field(n, field, column, at) for n, field, column, at in _matched(schema, columns, path)]


def _small_field(number: int, field: SchemaField, column: pa.Array, path: str) -> list[bytes]:
    values = _values(field, column, path)
    if _is_record(field):
        kind, encoded = _Kind.BYTES, _small_records(field, values, path)
    else:
        kind, converted = _convert(field, values, column.type, path)
        encoded = converted.to_pylist()
    if field.mode != "REPEATED":
        return _small_entries(number, kind, encoded)
    starts = [0]
    for count in pc.list_value_length(column).to_pylist():
        starts.append(starts[-1] + (count or 0))  # a NULL list holds no elements
    spans = list(zip(starts, starts[1:]))
    if kind is _Kind.BYTES:  # one (tag, length, bytes) entry per element
        entries = _small_entries(number, kind, encoded)
        return [b"".join(entries[a:b]) for a, b in spans]
    # Packed: one (tag, total length) header followed by the untagged payloads; nothing when empty.
    payloads = _small_payloads(kind, encoded)
    tag = _varint_bytes(number << 3 | _LEN)
    contents = [b"".join(payloads[a:b]) for a, b in spans]
    return [tag + _varint_bytes(len(c)) + c if c else b"" for c in contents]


def _small_records(field: SchemaField, values: pa.Array, path: str) -> list[bytes | None]:
    """Each struct value as its embedded message (None for a NULL struct)."""
    children = _small_message(_subfields(field, path), _children(values, path), f"{path}.", len(values))
    messages: list[bytes | None] = _small_join(children, len(values))
    if values.null_count:
        messages = [m if valid else None for m, valid in zip(messages, values.is_valid().to_pylist())]
    return messages


def _small_entries(number: int, kind: _Kind, values: list) -> list[bytes]:
    """Each value as (tag, payload), ``b""`` for None; BYTES payloads behind their length."""
    wire_type = {_Kind.BYTES: _LEN, _Kind.DOUBLE: _I64}.get(kind, _VARINT)
    tag = _varint_bytes(number << 3 | wire_type)
    if kind is _Kind.BYTES:
        return [b"" if v is None else tag + _varint_bytes(len(v)) + v for v in values]
    payloads = _small_payloads(kind, values)
    return [b"" if v is None else tag + p for v, p in zip(values, payloads)]


def _small_payloads(kind: _Kind, values: list) -> list[bytes]:
    """The untagged wire bytes of numeric values (None: anything, it is dropped)."""
    if kind is _Kind.DOUBLE:
        return [b"" if v is None else _DOUBLE.pack(v) for v in values]
    if kind is _Kind.BOOL:
        return [b"\x01" if v else b"\x00" for v in values]
    return [b"" if v is None else _varint_bytes(v) for v in values]


_DOUBLE = struct.Struct("<d")


# ---------------------------------------------------------------------------------------------
# Joining segments into rows
# ---------------------------------------------------------------------------------------------

_NOTHING = pa.scalar(b"", pa.large_binary())


def _concat_rows(segments: Sequence[_Segment], rows: int) -> pa.LargeBinaryArray:
    """Row i of the result is the concatenation of every segment's contribution to row i."""
    pieces = _pieces(segments, rows)
    if not pieces:
        return pa.repeat(pa.scalar(b"", pa.large_binary()), rows)
    return _join(pieces)


def _join(pieces: list[pa.Array]) -> pa.LargeBinaryArray:
    """Per row, the values of ``pieces`` (large_binary, no NULLs: a NULL would make the row NULL)."""
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, _NOTHING)


def _pieces(segments: Sequence[_Segment], rows: int) -> list[pa.Array]:
    """The segments as binary arrays to join: each run of grids compacted into one."""
    pieces: list[pa.Array] = []
    grids: list[_Grid] = []
    for segment in segments:
        if isinstance(segment, _Grid):
            grids.append(segment)
            continue
        if grids:
            pieces.append(_grids_to_array(grids, rows))
            grids = []
        pieces.append(segment)
    if grids:
        pieces.append(_grids_to_array(grids, rows))
    return pieces


def _grids_to_array(grids: list[_Grid], rows: int) -> pa.LargeBinaryArray:
    """Per row, the kept bytes of every grid in order, as one binary value."""
    values = np.concatenate([g.values for g in grids]) if len(grids) > 1 else grids[0].values
    if all(g.mask is None for g in grids):  # every row keeps every byte: a transpose
        offsets = np.arange(0, (rows + 1) * len(values), len(values), dtype=np.int64)
        data = np.ascontiguousarray(values.T)
    else:
        mask = np.concatenate([np.ones(g.values.shape, dtype=bool) if g.mask is None else g.mask for g in grids])
        offsets = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(mask.sum(axis=0, dtype=np.uint32), out=offsets[1:])
        data = values.T[mask.T]  # row by row: all of row 0's kept bytes, then row 1's, ...
    return pa.Array.from_buffers(pa.large_binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _segment_lengths(segments: Sequence[_Segment], rows: int) -> np.ndarray:
    """How many bytes ``segments`` contribute to each row, without joining them."""
    lengths = np.zeros(rows, dtype=np.int64)
    for segment in segments:
        if isinstance(segment, _Grid):
            lengths += len(segment.values) if segment.mask is None else segment.mask.sum(axis=0)
        else:
            lengths += np.diff(_offsets(segment))
    return lengths


def _regroup(elements: pa.LargeBinaryArray, row_starts: np.ndarray) -> pa.LargeBinaryArray:
    """Concatenate elements ``row_starts[i]:row_starts[i+1]`` into row i, reusing the data buffer."""
    offsets = np.ascontiguousarray(_offsets(elements)[row_starts])
    data = elements.buffers()[2]
    return pa.Array.from_buffers(pa.large_binary(), len(row_starts) - 1, [None, pa.py_buffer(offsets), data])


def _offsets(values: pa.LargeBinaryArray) -> np.ndarray:
    return np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]


# ---------------------------------------------------------------------------------------------
# Small Arrow <-> numpy helpers
# ---------------------------------------------------------------------------------------------


def _numpy(values: pa.Array) -> np.ndarray:
    """A primitive column as numpy, NULLs as zero (so they still encode; masks drop them)."""
    return values.fill_null(False if pa.types.is_boolean(values.type) else 0).to_numpy(zero_copy_only=False)


def _present(values: pa.Array) -> np.ndarray | None:
    """Which rows hold a value, or None when all of them do."""
    if not values.null_count:
        return None
    bitmap = values.buffers()[0]
    if bitmap is None or values.type.id == pa.null().id:
        return values.is_valid().to_numpy(zero_copy_only=False)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=values.offset + len(values), bitorder="little")
    return bits[values.offset :].view(bool)


def _present_mask(present: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A grid mask keeping every byte of the present rows (None: of every row)."""
    if present is None:
        return None
    return np.repeat(present[None, :], shape[0], axis=0)


def _empty_nulls(values: pa.LargeBinaryArray, present: np.ndarray | None) -> pa.LargeBinaryArray:
    """``values`` without NULLs: a NULL becomes an empty value (no copy when its slot is empty)."""
    if present is None:
        return values
    offsets = _offsets(values)
    if int(offsets[-1] - offsets[0]) == int(np.diff(offsets)[present].sum()):  # NULL slots hold no bytes
        buffers = values.buffers()
        return pa.Array.from_buffers(pa.large_binary(), len(values), [None, *buffers[1:]], offset=values.offset)
    return values.fill_null(b"")


def _absent(values: pa.Array) -> np.ndarray | None:
    present = _present(values)
    return None if present is None else ~present


def _first_null(values: pa.Array) -> int:
    return int(np.argmin(values.is_valid().to_numpy(zero_copy_only=False)))
