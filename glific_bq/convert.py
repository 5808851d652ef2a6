"""Type conversions on the worker: the extract reads columns as PostgreSQL stores them (binary
COPY into Arrow through ADBC) and they become the values BigQuery receives here, vectorized in
Arrow and numpy, instead of row by row inside the source database that Glific's application
runs on (bench/bench_datapath.py measures what that saves the source).

What each type arrives as from ADBC, and what happens to it here:

| PostgreSQL | ADBC gives | here |
|---|---|---|
| timestamp, timestamp(0) | ``timestamp[us]``, naive UTC (Glific's convention) | organization-local DATETIME |
| timestamptz | ``timestamp[us, tz=UTC]`` | organization-local DATETIME |
| uuid | ``arrow.uuid`` (16 bytes) | its canonical text, lower-case hex |
| json, jsonb | ``arrow.json`` over text (jsonb: its normal form, as ``::text``) | the text |
| numeric | an opaque extension over its decimal text (as ``::text``) | the text |
| char(n) | the padded text | trailing blanks dropped, as ``::text`` does |
| enum | its label | as is |
| integer, boolean (as Glific's STRING) | ``int*``, ``bool`` | their text, as ``::text`` writes it |
| one-dimensional arrays of these | ``list<…>`` | NULL elements dropped, as ``array_remove(…, NULL)`` |

Everything else keeps its SQL cast (``glific_bq.schema``, ``glific_bq.layouts.glific``), because
ADBC hands it over in PostgreSQL's binary wire form (inet, cidr, macaddr, interval, money,
point and other geometric types, bit strings, tsvector, xml, timetz, unknown extension types)
or because its text form is PostgreSQL's own and not Arrow's (float and date as Glific's STRING,
arrays as one text, timestamp arrays): rare columns, none in Glific's large tables.

Local time: a UTC instant has exactly one local wall-clock time, so the conversion is a
function (no DST ambiguity in this direction). It is computed with Arrow's time zone library
over the system's IANA tzdata (PostgreSQL uses its own copy of the same database) for
1900–2037, and with ``zoneinfo`` for the rare values outside, where Arrow does not apply the
tzdata's rule for years past its explicit transitions (see ``local_datetimes``). PostgreSQL's
``infinity``/``-infinity`` are passed on unchanged, as ``AT TIME ZONE`` leaves them.

Numeric ``NaN``/``Infinity``/``-Infinity``, which ADBC writes ``nan``/``inf``/``-inf``, get
PostgreSQL's spelling back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class To(str, Enum):
    """What a column becomes on the worker."""

    #: Its values as they are (only NULL elements of arrays dropped).
    SAME = "same"
    #: Text, as PostgreSQL's ``::text`` writes it.
    TEXT = "text"
    #: A UTC timestamp as the organization's local DATETIME.
    LOCAL = "local"


@dataclass(frozen=True)
class Conversion:
    """How one extracted column becomes its BigQuery value on the worker: ``to``, from the
    PostgreSQL scalar type ``type_name`` (the element type of an array; ``is_array``: NULL
    elements dropped)."""

    to: To
    type_name: str
    is_array: bool = False


#: Types ADBC gives as text, or as something Arrow turns into PostgreSQL's text exactly.
_TEXT_ON_WORKER = {"text", "varchar", "bpchar", "name", "uuid", "json", "jsonb", "numeric"}
#: Types whose Arrow-to-text cast writes what PostgreSQL's ``::text`` writes (Glific's STRING ids).
_CAST_TO_TEXT = {"int2", "int4", "int8", "bool"}
#: Types that travel as they are (no conversion at all).
_AS_STORED = {"int2", "int4", "int8", "float4", "float8", "bool", "date", "time", "bytea"}
_TIMESTAMPS = {"timestamp", "timestamptz"}


def on_worker(type_name: str, kind: str, is_array: bool, bigquery_type: str) -> Conversion | None:
    """The worker's conversion of a column of PostgreSQL scalar type ``type_name``
    (``kind``: pg_type.typtype, ``e`` for enums) to ``bigquery_type``, or None: the column keeps
    its SQL cast (see the module's docstring)."""
    if bigquery_type == "DATETIME":
        return Conversion(To.LOCAL, type_name) if type_name in _TIMESTAMPS and not is_array else None
    if bigquery_type == "STRING":
        if kind == "e" or type_name in _TEXT_ON_WORKER:
            return Conversion(To.TEXT, type_name, is_array)
        if type_name in _CAST_TO_TEXT and not is_array:
            return Conversion(To.TEXT, type_name)
        return None
    if bigquery_type in ("NUMERIC", "BIGNUMERIC"):
        return Conversion(To.TEXT, type_name, is_array) if type_name == "numeric" else None
    if type_name in _AS_STORED:
        return Conversion(To.SAME, type_name, is_array)
    return None


def apply(rows: pa.Table, conversions: Mapping[str, Conversion], timezone_name: str) -> pa.Table:
    """``rows`` with each column named in ``conversions`` converted (other columns untouched)."""
    for name, conversion in conversions.items():
        index = rows.schema.get_field_index(name)
        if index < 0:
            continue
        column = rows.column(index)
        converted = pa.chunked_array(
            [_convert(chunk, conversion, timezone_name) for chunk in column.chunks],
            type=_target_type(column.type, conversion),
        )
        rows = rows.set_column(index, name, converted)
    return rows


def _target_type(source: pa.DataType, conversion: Conversion) -> pa.DataType:
    if conversion.to is To.LOCAL:
        return pa.timestamp("us")
    if conversion.is_array:
        element = _target_type(source.value_type, Conversion(conversion.to, conversion.type_name))
        return pa.list_(element)
    if conversion.to is To.TEXT:
        return pa.string()
    return source.storage_type if isinstance(source, pa.ExtensionType) else source


def _convert(values: pa.Array, conversion: Conversion, timezone_name: str) -> pa.Array:
    if conversion.is_array:
        return _without_null_elements(values, Conversion(conversion.to, conversion.type_name), timezone_name)
    if conversion.to is To.LOCAL:
        return local_datetimes(values, timezone_name)
    if isinstance(values, pa.ExtensionArray):
        if conversion.type_name == "uuid":
            return uuid_text(values.storage)
        values = values.storage
    if conversion.to is To.TEXT:
        if conversion.type_name == "bpchar":
            return pc.utf8_rtrim(values, characters=" ")
        if conversion.type_name == "numeric":
            return _numeric_text(values)
        if not pa.types.is_string(values.type):
            return pc.cast(values, pa.string())
    return values


# From numpy, not a list: pyarrow imports pandas to check a list is not a pandas object.
_NUMERIC_SPECIALS = pa.array(np.array(["nan", "inf", "-inf"], dtype=object), pa.string())
_POSTGRESQL_SPELLING = pa.array(np.array(["NaN", "Infinity", "-Infinity"], dtype=object), pa.string())


def _numeric_text(values: pa.Array) -> pa.Array:
    """ADBC's numeric text with PostgreSQL's spelling of the special values."""
    which = pc.index_in(values, value_set=_NUMERIC_SPECIALS)
    if which.null_count == len(which):
        return values
    return pc.coalesce(pc.take(_POSTGRESQL_SPELLING, which), values)


def _without_null_elements(lists: pa.Array, element: Conversion, timezone_name: str) -> pa.Array:
    """Each list without its NULL elements (``array_remove(…, NULL)``), elements converted."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    flat = lists.values.slice(lists.offsets[0].as_py(), lists.offsets[-1].as_py() - lists.offsets[0].as_py())
    offsets = lists.offsets.to_numpy(zero_copy_only=False) - lists.offsets[0].as_py()
    if flat.null_count:
        kept = np.asarray(flat.is_valid().to_numpy(zero_copy_only=False), dtype=np.int32)
        offsets = np.concatenate(([0], np.cumsum(kept, dtype=np.int64)))[offsets]
        flat = flat.filter(flat.is_valid())
    converted = _convert(flat, element, timezone_name)
    mask = lists.is_null() if lists.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), converted, mask=mask)


#: Microseconds from the Unix epoch: Arrow's conversion (its time zone library reads the
#: explicit transitions of the tzdata files) is exact from 1900 up to 2038, where the files'
#: explicit transitions end and the rule for later years takes over, which it does not apply;
#: values outside go through ``zoneinfo``, one by one (rare: dates scheduled decades ahead).
_EXACT_FROM_US = -2_208_988_800_000_000  # 1900-01-01
_EXACT_UNTIL_US = 2_145_916_800_000_000  # 2038-01-01
#: Below PostgreSQL's first timestamp (4713 BC): ADBC's rendering of ``-infinity`` or
#: ``infinity`` (PostgreSQL's int64 extremes, moved from its 2000 epoch to Unix's, wrap around).
_PG_MIN_US = -210_866_803_200_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def local_datetimes(values: pa.Array, timezone_name: str) -> pa.Array:
    """UTC timestamps (naive, or aware in UTC) as naive wall-clock timestamps of
    ``timezone_name``, in microseconds, exactly as PostgreSQL's ``AT TIME ZONE`` gives them;
    ``infinity``/``-infinity`` unchanged."""
    if values.type.unit != "us":
        values = pc.cast(values, pa.timestamp("us", values.type.tz))
    raw = values.view(pa.int64())
    low, high = pc.min_max(raw).values()
    if not low.is_valid or (low.as_py() >= _EXACT_FROM_US and high.as_py() < _EXACT_UNTIL_US):
        return pc.local_timestamp(raw.view(pa.timestamp("us", timezone_name)))
    outside = pc.or_(pc.less(raw, _EXACT_FROM_US), pc.greater_equal(raw, _EXACT_UNTIL_US))
    local = pc.local_timestamp(pc.if_else(outside, 0, raw).view(pa.timestamp("us", timezone_name)))
    result = local.view(pa.int64()).to_numpy(zero_copy_only=False).copy()
    zone = ZoneInfo(timezone_name)
    for i in pc.indices_nonzero(pc.fill_null(outside, False)).to_pylist():
        micros = raw[i].as_py()
        result[i] = _local_micros(micros, zone) if micros >= _PG_MIN_US else micros
    return pa.array(result, pa.int64(), mask=pc.is_null(raw).to_numpy(zero_copy_only=False)).view(pa.timestamp("us"))


#: 400 Gregorian years, in microseconds: calendars and the tzdata's yearly rules repeat after it.
_CYCLE_US = 146_097 * 86_400 * 1_000_000
_YEAR_9000_US = 221_845_392_000_000_000
_YEAR_1000_US = -30_610_224_000_000_000


def _local_micros(micros: int, zone: ZoneInfo) -> int:
    """One UTC instant (microseconds from the epoch) as local wall-clock microseconds; instants
    outside Python's years take the offset of the same instant whole 400-year cycles away."""
    shift = 0
    if micros >= _YEAR_9000_US:
        shift = ((micros - _YEAR_9000_US) // _CYCLE_US + 1) * _CYCLE_US
    elif micros < _YEAR_1000_US:
        shift = -((_YEAR_1000_US - micros) // _CYCLE_US + 1) * _CYCLE_US
    moment = _EPOCH + timedelta(microseconds=micros - shift)
    offset = moment.astimezone(zone).utcoffset() or timedelta(0)
    return micros + offset // timedelta(microseconds=1)


_HEX = b"0123456789abcdef"
#: Each byte as its two lower-case hex digits.
_HEX_PAIRS = np.frombuffer(b"".join(bytes((_HEX[b >> 4], _HEX[b & 15])) for b in range(256)), dtype=np.uint16)


def uuid_text(values: pa.Array) -> pa.Array:
    """16-byte UUIDs (``fixed_size_binary(16)``) as their canonical 36-character text."""
    n = len(values)
    raw = np.frombuffer(values.buffers()[1], dtype=np.uint8, count=16 * (values.offset + n))[16 * values.offset:]
    digits = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    text = np.empty((n, 36), dtype=np.uint8)
    text[:, 0:8] = digits[:, 0:8]
    text[:, 9:13] = digits[:, 8:12]
    text[:, 14:18] = digits[:, 12:16]
    text[:, 19:23] = digits[:, 16:20]
    text[:, 24:36] = digits[:, 20:32]
    text[:, (8, 13, 18, 23)] = ord("-")
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    validity = pc.is_valid(values).buffers()[1] if values.null_count else None
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(text)],
                                 null_count=values.null_count)
