"""Tests for glific_bq.protorows: rows must decode, with protobuf's own parser, to the input values.

Every check builds the message class from ``descriptor_for(schema)`` and compares against values
computed independently of the encoder (Python's own date/time formatting, integer arithmetic),
and against ``SerializeToString()`` of a message built from those values, byte for byte.
The last test appends rows to the local BigQuery emulator through the Storage Write API and
queries them back.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Context, Decimal
from typing import Any, NamedTuple

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glific_bq import protorows
from glific_bq.protorows import arrow_schema, arrow_type, descriptor_for, serialize

FieldProto = descriptor_pb2.FieldDescriptorProto
EPOCH = dt.datetime(1970, 1, 1)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# BigQuery's TIMESTAMP/DATETIME range, 0001-01-01 to 9999-12-31 23:59:59.999999, in microseconds.
MIN_MICROS = (dt.datetime(1, 1, 1) - EPOCH) // dt.timedelta(microseconds=1)
MAX_MICROS = (dt.datetime(9999, 12, 31, 23, 59, 59, 999999) - EPOCH) // dt.timedelta(microseconds=1)
MIN_SECONDS, MAX_SECONDS = MIN_MICROS // 10**6, MAX_MICROS // 10**6
DAY_MICROS = 86_400 * 10**6

LONG_TEXT = "é😀" * 2500  # 5,000 characters, 15,000 bytes
EDGE_TEXT = [
    "", "\x00", "a\x00b", 'say "hi"', "back\\slash \\\"", "नमस्ते 🙏🏽", LONG_TEXT, "'; DROP TABLE x; --",
]


def civil(micros: int) -> str:
    """DATETIME text, formatted by Python rather than Arrow."""
    return (EPOCH + dt.timedelta(microseconds=micros)).isoformat(" ", "microseconds")


def clock(micros: int) -> str:
    """TIME text, formatted by Python rather than Arrow."""
    return (dt.datetime.min + dt.timedelta(microseconds=micros)).time().isoformat("microseconds")


def same(value: Any) -> Any:
    return value


def decimal_text(scale: int) -> Callable[[Decimal], str]:
    """NUMERIC text: Arrow's decimal rendered with every place of the column's scale, no exponent."""
    return lambda value: f"{Context(prec=100).quantize(value, Decimal(f'1E-{scale}')):f}"


class Spec(NamedTuple):
    """A BigQuery type fed from one Arrow type: how to draw inputs and what protobuf must hold."""

    bq_type: str
    arrow_type: pa.DataType
    values: st.SearchStrategy[Any]  # Python values pa.array accepts for arrow_type
    proto: Callable[[Any], Any]  # the value the decoded message field must hold


TEXT = st.one_of(st.text(), st.sampled_from(EDGE_TEXT))
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
).map(lambda value: json.dumps(value, ensure_ascii=False))
BYTES = st.one_of(st.binary(), st.just(bytes(range(256)) * 20))
NUMERIC = st.integers(-(10**38) + 1, 10**38 - 1).map(lambda unscaled: Decimal(f"{unscaled}E-9"))
BIGNUMERIC = st.integers(-(10**76) + 1, 10**76 - 1).map(lambda unscaled: Decimal(f"{unscaled}E-38"))

SPECS = [
    Spec("INT64", pa.int64(), st.integers(INT64_MIN, INT64_MAX), same),
    Spec("INTEGER", pa.int32(), st.integers(-(2**31), 2**31 - 1), same),
    Spec("INT64", pa.int16(), st.integers(-(2**15), 2**15 - 1), same),
    Spec("FLOAT64", pa.float64(), st.floats(), same),
    Spec("FLOAT", pa.float32(), st.floats(width=32), same),
    Spec("BOOL", pa.bool_(), st.booleans(), same),
    Spec("STRING", pa.string(), TEXT, same),
    Spec("STRING", pa.large_string(), TEXT, same),
    Spec("JSON", pa.string(), JSON_TEXT, same),
    Spec("BYTES", pa.binary(), BYTES, same),
    Spec("BYTES", pa.large_binary(), BYTES, same),
    Spec("NUMERIC", pa.decimal128(38, 9), NUMERIC, decimal_text(9)),
    Spec("BIGNUMERIC", pa.decimal256(76, 38), BIGNUMERIC, decimal_text(38)),
    Spec("NUMERIC", pa.string(), st.sampled_from(["0", "-12.50", "9" * 29 + "." + "9" * 9, "1E-9"]), same),
    Spec("DATE", pa.date32(), st.dates(), lambda d: (d - EPOCH.date()).days),
    Spec("DATETIME", pa.timestamp("us"), st.datetimes(), lambda d: d.isoformat(" ", "microseconds")),
    Spec("DATETIME", pa.timestamp("ns"), st.integers(INT64_MIN, INT64_MAX), lambda ns: civil(ns // 1000)),
    Spec("DATETIME", pa.timestamp("s"), st.integers(MIN_SECONDS, MAX_SECONDS), lambda s: civil(s * 10**6)),
    Spec("TIMESTAMP", pa.timestamp("us", tz="UTC"), st.integers(MIN_MICROS, MAX_MICROS), same),
    Spec("TIMESTAMP", pa.timestamp("us"), st.integers(MIN_MICROS, MAX_MICROS), same),
    Spec("TIMESTAMP", pa.timestamp("ns"), st.integers(INT64_MIN, INT64_MAX), lambda ns: ns // 1000),
    Spec(
        "TIMESTAMP",
        pa.timestamp("ms", tz="Asia/Kolkata"),
        st.integers(MIN_MICROS // 1000, MAX_MICROS // 1000),
        lambda ms: ms * 1000,
    ),
    Spec("TIMESTAMP", pa.timestamp("s", tz="UTC"), st.integers(MIN_SECONDS, MAX_SECONDS), lambda s: s * 10**6),
    Spec("TIME", pa.time64("us"), st.times(), lambda t: t.isoformat("microseconds")),
    Spec("TIME", pa.time64("ns"), st.integers(0, DAY_MICROS * 1000 - 1), lambda ns: clock(ns // 1000)),
    Spec("TIME", pa.time32("ms"), st.integers(0, DAY_MICROS // 1000 - 1), lambda ms: clock(ms * 1000)),
]


class Column(NamedTuple):
    field: SchemaField
    spec: Spec
    arrow_type: pa.DataType  # spec.arrow_type, or a list of it for REPEATED


Table = tuple[list[Column], pa.RecordBatch, list[dict[str, Any]]]  # columns, batch, rows as Python values


def message_class(schema: list[SchemaField]) -> type[Message]:
    file_proto = descriptor_pb2.FileDescriptorProto(name="test_row.proto", syntax="proto2")
    file_proto.message_type.add().CopyFrom(descriptor_for(schema))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Row"))


def comparable(value: Any) -> Any:
    """Floats by their bits, so NaN equals NaN and -0.0 differs from 0.0."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def wanted(column: Column, value: Any) -> Any:
    """What the decoded field must hold for an input value: None = absent, [] = no elements."""
    if column.field.mode == "REPEATED":
        return [column.spec.proto(v) for v in value or []]
    return None if value is None else column.spec.proto(value)


def decoded(message: Message, field: SchemaField) -> Any:
    if field.mode == "REPEATED":
        return list(getattr(message, field.name))
    return getattr(message, field.name) if message.HasField(field.name) else None


def expected_message(row_class: type[Message], columns: list[Column], row: dict[str, Any]) -> Message:
    """The row built the slow, trusted way: protobuf's own message object."""
    message = row_class()
    for column in columns:
        value = wanted(column, row.get(column.field.name))
        if isinstance(value, list):
            getattr(message, column.field.name).extend(value)
        elif value is not None:
            setattr(message, column.field.name, value)
    return message


def check(columns: list[Column], batch: pa.RecordBatch, rows: list[dict[str, Any]]) -> None:
    """serialize(batch) decodes to ``rows`` and equals protobuf's own serialization of them."""
    schema = [c.field for c in columns]
    row_class = message_class(schema)
    encoded = serialize(batch, schema)
    assert len(encoded) == len(rows)
    assert all(isinstance(raw, bytes) for raw in encoded)
    for index, (raw, row) in enumerate(zip(encoded, rows)):
        parsed = row_class.FromString(raw)
        for column in columns:
            got = comparable(decoded(parsed, column.field))
            assert got == comparable(wanted(column, row.get(column.field.name))), (index, column.field.name)
        assert raw == expected_message(row_class, columns, row).SerializeToString(), index


@st.composite
def tables(draw: st.DrawFn, specs: list[Spec], max_columns: int) -> Table:
    """A schema of drawn columns, a batch holding them in shuffled order, and its rows as Python values.

    The batch is sometimes a slice of a longer one, so Arrow offsets are exercised too.
    """
    picked = draw(st.lists(st.tuples(st.sampled_from(specs), st.booleans()), min_size=1, max_size=max_columns))
    n_rows = draw(st.integers(0, 8))
    skip_front, skip_back = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    total = skip_front + n_rows + skip_back
    columns, arrays = [], {}
    for i, (spec, repeated) in enumerate(picked):
        name = f"c{i}_{spec.bq_type.lower()}"
        if repeated:
            list_type = draw(st.sampled_from([pa.list_, pa.large_list]))(spec.arrow_type)
            values = st.none() | st.lists(spec.values, max_size=4)
            columns.append(Column(SchemaField(name, spec.bq_type, mode="REPEATED"), spec, list_type))
        else:
            values = st.none() | spec.values
            mode = draw(st.sampled_from(["NULLABLE", "REQUIRED"]))
            columns.append(Column(SchemaField(name, spec.bq_type, mode=mode), spec, spec.arrow_type))
        arrays[name] = draw(st.lists(values, min_size=total, max_size=total))
    order = draw(st.permutations(columns))
    batch = pa.record_batch({c.field.name: pa.array(arrays[c.field.name], c.arrow_type) for c in order})
    rows = [{name: values[skip_front + r] for name, values in arrays.items()} for r in range(n_rows)]
    return columns, batch.slice(skip_front, n_rows), rows


# ``encoder`` is the same for every example of a test, so a function-scoped fixture is safe there.
QUICK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                       HealthCheck.function_scoped_fixture])

#: ``protorows.SMALL_PAGE_ROWS`` forcing each encoder: every page row by row, or every page vectorized.
PATHS = {"small": 10**9, "vectorized": -1}


@pytest.fixture(autouse=True, params=list(PATHS))
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both encoding paths, the small-page one and the vectorized one."""
    monkeypatch.setattr(protorows, "SMALL_PAGE_ROWS", PATHS[request.param])
    return request.param


@contextmanager
def path(name: str) -> Iterator[None]:
    """Within the block, encode on path ``name`` (for comparing both inside one test)."""
    default = protorows.SMALL_PAGE_ROWS
    protorows.SMALL_PAGE_ROWS = PATHS[name]
    try:
        yield
    finally:
        protorows.SMALL_PAGE_ROWS = default


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.bq_type}<-{s.arrow_type}")
@settings(QUICK, max_examples=30)
@given(data=st.data())
def test_each_type_round_trips(spec: Spec, data: st.DataObject) -> None:
    check(*data.draw(tables([spec], max_columns=2)))


@settings(QUICK, max_examples=120)
@given(table=tables(SPECS, max_columns=8))
def test_mixed_schemas_round_trip(table: Table) -> None:
    check(*table)


def edge_case_columns() -> tuple[list[Column], dict[str, list[Any]]]:
    """Hand-picked extremes for every type, nine rows, with NULLs and empty lists everywhere."""
    by_type = {(s.bq_type, str(s.arrow_type)): s for s in SPECS}

    def col(name: str, bq_type: str, arrow_type: str, mode: str = "NULLABLE") -> Column:
        spec = by_type[(bq_type, arrow_type)]
        arrow = pa.list_(spec.arrow_type) if mode == "REPEATED" else spec.arrow_type
        return Column(SchemaField(name, bq_type, mode=mode), spec, arrow)

    nan, inf = float("nan"), float("inf")
    d = dt.datetime
    values = {
        "id": [INT64_MIN, INT64_MAX, 0, -1, 1, 127, 128, None, 300],
        "small": [-32768, 32767, 0, -1, None, 1, 2, 3, 4],
        "score": [nan, inf, -inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, None, -1.5],
        "flag": [True, False, None, True, False, True, None, False, True],
        "body": [*EDGE_TEXT, None],
        "payload": [b"", b"\x00", bytes(range(256)), None, b"\xff" * 5000, b"x", b"\n", b"\\", b'"'],
        "amount": [Decimal("1E-9"), Decimal("-1E-9"), Decimal("0"), Decimal("1.5"), Decimal("-0.000000123"),
                   Decimal("99999999999999999999999999999.999999999"), None, Decimal("1E+20"), Decimal("-7")],
        "day": [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31), dt.date(1970, 1, 1), None,
                dt.date(2024, 2, 29), dt.date(1900, 3, 1), dt.date(2000, 1, 1), dt.date(2038, 1, 19)],
        "civil": [d(1, 1, 1), d(9999, 12, 31, 23, 59, 59, 999999), d(1969, 12, 31, 23, 59, 59, 999999),
                  d(1970, 1, 1), None, d(2024, 2, 29, 12, 0, 0, 1), d(2000, 1, 1), d(1900, 1, 1, 0, 0, 1),
                  d(2024, 1, 1)],
        "moment": [MIN_MICROS, MAX_MICROS, -1, 0, 1, None, 1_700_000_000_123_456, -(10**15), 2**40],
        "clock_at": [dt.time(0), dt.time(23, 59, 59, 999999), dt.time(12, 0, 0, 1), None, dt.time(1, 2, 3),
                     dt.time(0, 0, 0, 1), dt.time(9, 9, 9), dt.time(23), dt.time(0, 59)],
        "tags": [["a", "", LONG_TEXT], [], None, [""], ["😀"] * 10, ['q"uote', "back\\"], ["\x00"], [], None],
        "ints": [[INT64_MIN, INT64_MAX, 0, -1], [], None, [0], list(range(200)), [-5], [], [1] * 3, None],
        "floats": [[nan, inf, -0.0], [], None, [0.0], [1.5] * 100, [-inf], [], [2.5], None],
        "flags": [[True, False], [], None, [False], [True] * 50, [], [True], [False, False], None],
        "days": [[dt.date(1, 1, 1), dt.date(1969, 1, 1)], [], None, [dt.date(1970, 1, 1)], [], [], [], [], None],
        "moments": [[MIN_MICROS, -1, 0, MAX_MICROS], [], None, [0], [], [5], [], [], None],
        "civils": [[d(1, 1, 1), d(2024, 5, 6, 7, 8, 9, 10)], [], None, [], [], [], [], [], None],
        "blobs": [[b"", b"\x00\xff"], [], None, [b""], [], [], [], [], None],
    }
    columns = [
        col("id", "INT64", "int64"),
        col("small", "INT64", "int16"),
        col("score", "FLOAT64", "double"),
        col("flag", "BOOL", "bool"),
        col("body", "STRING", "string"),
        col("payload", "BYTES", "binary"),
        col("amount", "NUMERIC", "decimal128(38, 9)"),
        col("day", "DATE", "date32[day]"),
        col("civil", "DATETIME", "timestamp[us]"),
        col("moment", "TIMESTAMP", "timestamp[us, tz=UTC]"),
        col("clock_at", "TIME", "time64[us]"),
        col("tags", "STRING", "string", "REPEATED"),
        col("ints", "INT64", "int64", "REPEATED"),
        col("floats", "FLOAT64", "double", "REPEATED"),
        col("flags", "BOOL", "bool", "REPEATED"),
        col("days", "DATE", "date32[day]", "REPEATED"),
        col("moments", "TIMESTAMP", "timestamp[us, tz=UTC]", "REPEATED"),
        col("civils", "DATETIME", "timestamp[us]", "REPEATED"),
        col("blobs", "BYTES", "binary", "REPEATED"),
    ]
    return columns, values


def test_edge_cases_match_protobuf_byte_for_byte() -> None:
    columns, values = edge_case_columns()
    batch = pa.record_batch({c.field.name: pa.array(values[c.field.name], c.arrow_type) for c in columns[::-1]})
    rows = [{name: column[r] for name, column in values.items()} for r in range(batch.num_rows)]
    check(columns, batch, rows)
    check(columns, batch.slice(3, 4), rows[3:7])


def test_proto_rows_chunks_hold_exactly_the_serialized_rows_within_the_size_limit() -> None:
    from google.cloud.bigquery_storage_v1 import types

    from glific_bq.protorows import proto_rows

    columns, values = edge_case_columns()
    batch = pa.record_batch({c.field.name: pa.array(values[c.field.name], c.arrow_type) for c in columns})
    schema = [c.field for c in columns]
    for piece in (batch, batch.slice(3, 4), batch.slice(0, 0)):
        rows = serialize(piece, schema)
        longest = max((len(r) for r in rows), default=0)
        for limit in (1, longest, 4 * longest + 40, 10**9):
            chunks = proto_rows(piece, schema, limit)
            parsed = [types.ProtoRows.pb().FromString(chunk) for chunk, _ in chunks]
            assert [r for p in parsed for r in p.serialized_rows] == rows
            assert [count for _, count in chunks] == [len(p.serialized_rows) for p in parsed]
            assert all(len(chunk) <= limit or count == 1 for chunk, count in chunks)


def test_exact_wire_format_of_a_known_row() -> None:
    """Spelled-out bytes, independent of any protobuf library."""
    schema = [
        SchemaField("id", "INT64"),
        SchemaField("name", "STRING"),
        SchemaField("gone", "STRING"),
        SchemaField("ratio", "FLOAT64"),
        SchemaField("ok", "BOOL"),
        SchemaField("day", "DATE"),
        SchemaField("ids", "INT64", mode="REPEATED"),
        SchemaField("words", "STRING", mode="REPEATED"),
    ]
    batch = pa.record_batch(
        {
            "words": pa.array([["a", ""]]),
            "ids": pa.array([[1, 300]]),
            "day": pa.array([dt.date(1969, 12, 31)]),
            "ok": pa.array([True]),
            "ratio": pa.array([1.0]),
            "gone": pa.array([None], pa.string()),
            "name": pa.array([""]),
            "id": pa.array([-1]),
        }
    )
    assert serialize(batch, schema) == [
        b"\x08" + b"\xff" * 9 + b"\x01"  # 1: int64 -1, ten-byte varint
        + b"\x12\x00"  # 2: empty string is present, length 0
        # 3: NULL, omitted
        + b"\x21" + struct.pack("<d", 1.0)  # 4: fixed64 double
        + b"\x28\x01"  # 5: bool
        + b"\x30" + b"\xff" * 9 + b"\x01"  # 6: int32 -1 day, sign-extended to ten bytes
        + b"\x3a\x03\x01\xac\x02"  # 7: packed [1, 300]
        + b"\x42\x01a" + b"\x42\x00"  # 8: one entry per string
    ]


def test_descriptor_names_numbers_types_and_labels() -> None:
    schema = [
        SchemaField("id", "INTEGER", mode="REQUIRED"),
        SchemaField("score", "FLOAT"),
        SchemaField("ok", "BOOLEAN"),
        SchemaField("body", "STRING"),
        SchemaField("errors", "JSON"),
        SchemaField("blob", "BYTES"),
        SchemaField("amount", "NUMERIC"),
        SchemaField("big", "BIGNUMERIC"),
        SchemaField("day", "DATE"),
        SchemaField("civil", "DATETIME"),
        SchemaField("moment", "TIMESTAMP"),
        SchemaField("clock_at", "TIME"),
        SchemaField("ids", "INT64", mode="REPEATED"),
        SchemaField("tags", "STRING", mode="REPEATED"),
    ]
    descriptor = descriptor_for(schema, name="Message_7")
    assert descriptor.name == "Message_7"
    T = FieldProto
    assert [(f.name, f.number, f.type, f.label, f.options.packed) for f in descriptor.field] == [
        ("id", 1, T.TYPE_INT64, T.LABEL_OPTIONAL, False),
        ("score", 2, T.TYPE_DOUBLE, T.LABEL_OPTIONAL, False),
        ("ok", 3, T.TYPE_BOOL, T.LABEL_OPTIONAL, False),
        ("body", 4, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("errors", 5, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("blob", 6, T.TYPE_BYTES, T.LABEL_OPTIONAL, False),
        ("amount", 7, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("big", 8, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("day", 9, T.TYPE_INT32, T.LABEL_OPTIONAL, False),
        ("civil", 10, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("moment", 11, T.TYPE_INT64, T.LABEL_OPTIONAL, False),
        ("clock_at", 12, T.TYPE_STRING, T.LABEL_OPTIONAL, False),
        ("ids", 13, T.TYPE_INT64, T.LABEL_REPEATED, True),
        ("tags", 14, T.TYPE_STRING, T.LABEL_REPEATED, False),
    ]
    assert message_class(schema)  # a valid, self-contained proto2 message


def test_missing_columns_and_empty_batches() -> None:
    schema = [
        SchemaField("absent", "STRING"),
        SchemaField("id", "INT64"),
        SchemaField("none_here", "INT64", mode="REPEATED"),
        SchemaField("no_words", "STRING", mode="REPEATED"),
    ]
    batch = pa.record_batch({"extra": pa.array(["ignored", "too"]), "id": pa.array([None, 5])})
    assert serialize(batch, schema) == [b"", b"\x10\x05"]
    assert serialize(batch.slice(0, 0), schema) == []
    assert serialize(pa.record_batch({"x": pa.array([1, 2])}), schema) == [b"", b""]
    only_lists = pa.record_batch(
        {
            "none_here": pa.array([None, [], []], pa.list_(pa.int64())),
            "no_words": pa.array([[], None, []], pa.list_(pa.string())),
        }
    )
    assert serialize(only_lists, schema) == [b"", b"", b""]


def test_duplicate_columns_and_out_of_range_timestamps_are_refused() -> None:
    twice = pa.record_batch([pa.array([1]), pa.array([2])], names=["id", "id"])
    with pytest.raises(ValueError, match=r"'id' appears 2 times"):
        serialize(twice, [SchemaField("id", "INT64")])
    far_future = pa.record_batch({"at": pa.array([10**13], pa.timestamp("s"))})  # overflows int64 microseconds
    with pytest.raises(pa.ArrowInvalid):
        serialize(far_future, [SchemaField("at", "TIMESTAMP")])


def test_null_element_in_a_list_names_the_column_and_row() -> None:
    schema = [SchemaField("labels", "STRING", mode="REPEATED")]
    batch = pa.record_batch({"labels": pa.array([["a"], None, ["b", None]])})
    with pytest.raises(ValueError, match=r"'labels'.*row 2.*NULL"):
        serialize(batch, schema)


@pytest.mark.parametrize(
    ("bq_type", "mode", "values"),
    [
        ("INT64", "NULLABLE", pa.array([1], pa.uint64())),
        ("INT64", "NULLABLE", pa.array(["1"])),
        ("STRING", "NULLABLE", pa.array(["a"]).dictionary_encode()),
        ("STRING", "NULLABLE", pa.array([{"a": 1}])),
        ("BYTES", "NULLABLE", pa.array(["text"])),
        ("DATE", "NULLABLE", pa.array([0], pa.date64())),
        ("DATETIME", "NULLABLE", pa.array([0], pa.timestamp("us", tz="UTC"))),
        ("FLOAT64", "REPEATED", pa.array([[{"a": 1}]])),
        ("INT64", "REPEATED", pa.array([1])),
        ("INT64", "NULLABLE", pa.array([[1]])),
    ],
)
def test_unsupported_arrow_types_name_the_column_and_type(bq_type: str, mode: str, values: pa.Array) -> None:
    batch = pa.record_batch({"the_column": values})
    with pytest.raises(TypeError, match=r"'the_column'.*" + re.escape(str(values.type))):
        serialize(batch, [SchemaField("the_column", bq_type, mode=mode)])


@pytest.mark.parametrize("bq_type", ["GEOGRAPHY", "INTERVAL", "RANGE"])
def test_unsupported_bigquery_types_name_the_column(bq_type: str) -> None:
    schema = [SchemaField("odd", bq_type)]
    with pytest.raises(TypeError, match=rf"'odd'.*{bq_type}"):
        descriptor_for(schema)
    with pytest.raises(TypeError, match=rf"'odd'.*{bq_type}"):
        serialize(pa.record_batch({"x": pa.array([1])}), schema)


# ---------------------------------------------------------------------------------------------
# RECORD columns: nested messages from Arrow structs and lists of structs
# ---------------------------------------------------------------------------------------------


class Node(NamedTuple):
    """A schema field with how to feed it: a Spec for a scalar, child nodes for a RECORD."""

    field: SchemaField
    spec: Spec | None
    children: tuple[Node, ...]
    arrow_type: pa.DataType


def scalar_node(name: str, spec: Spec, mode: str, list_type: Callable = pa.list_) -> Node:
    arrow = list_type(spec.arrow_type) if mode == "REPEATED" else spec.arrow_type
    return Node(SchemaField(name, spec.bq_type, mode=mode), spec, (), arrow)


def record_node(name: str, children: list[Node], mode: str, list_type: Callable = pa.list_) -> Node:
    struct = pa.struct([pa.field(c.field.name, c.arrow_type) for c in children])
    field = SchemaField(name, "RECORD", mode=mode, fields=[c.field for c in children])
    return Node(field, None, tuple(children), list_type(struct) if mode == "REPEATED" else struct)


def fill(message: Message, nodes: Sequence[Node], values: dict[str, Any]) -> None:
    """Set ``values`` on a protobuf message the slow, trusted way, recursing into RECORDs."""
    for node in nodes:
        name, value = node.field.name, values.get(node.field.name)
        repeated = node.field.mode == "REPEATED"
        if node.spec is not None:
            if repeated:
                getattr(message, name).extend(node.spec.proto(v) for v in value or [])
            elif value is not None:
                setattr(message, name, node.spec.proto(value))
        elif repeated:
            for element in value or []:
                fill(getattr(message, name).add(), node.children, element)
        elif value is not None:
            getattr(message, name).SetInParent()  # present even when every subfield is NULL
            fill(getattr(message, name), node.children, value)


def tree_wanted(nodes: Sequence[Node], values: dict[str, Any]) -> dict[str, Any]:
    """What decoding must give, computed from the inputs: None = absent, [] = no elements."""
    out = {}
    for node in nodes:
        value = values.get(node.field.name)
        if node.field.mode == "REPEATED":
            out[node.field.name] = [value_wanted(node, v) for v in value or []]
        else:
            out[node.field.name] = None if value is None else value_wanted(node, value)
    return comparable_tree(out)


def value_wanted(node: Node, value: Any) -> Any:
    return node.spec.proto(value) if node.spec is not None else tree_wanted(node.children, value)


def tree_decoded(message: Message, nodes: Sequence[Node]) -> dict[str, Any]:
    out = {}
    for node in nodes:
        name = node.field.name
        convert = (lambda v: v) if node.spec is not None else (lambda v, n=node: tree_decoded(v, n.children))
        if node.field.mode == "REPEATED":
            out[name] = [convert(v) for v in getattr(message, name)]
        else:
            out[name] = convert(getattr(message, name)) if message.HasField(name) else None
    return comparable_tree(out)


def comparable_tree(value: Any) -> Any:
    """``comparable`` through records and lists of records."""
    if isinstance(value, dict):
        return {k: comparable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable_tree(v) for v in value]
    return comparable(value)


def check_tree(nodes: Sequence[Node], batch: pa.RecordBatch, rows: list[dict[str, Any]]) -> None:
    """serialize(batch) equals protobuf's own serialization of ``rows`` and decodes back to them."""
    schema = [n.field for n in nodes]
    row_class = message_class(schema)
    encoded = serialize(batch, schema)
    assert len(encoded) == len(rows)
    for index, (raw, row) in enumerate(zip(encoded, rows, strict=True)):
        expected = row_class()
        fill(expected, nodes, row)
        assert raw == expected.SerializeToString(), index
        assert tree_decoded(row_class.FromString(raw), nodes) == tree_wanted(nodes, row), index


@st.composite
def schema_nodes(draw: st.DrawFn, depth: int, max_fields: int) -> list[Node]:
    """Up to ``max_fields`` fields, some of them RECORDs (NULLABLE, REQUIRED or REPEATED) ``depth`` deep."""
    nodes = []
    for i in range(draw(st.integers(1, max_fields))):
        mode = draw(st.sampled_from(["NULLABLE", "REQUIRED", "REPEATED"]))
        list_type = draw(st.sampled_from([pa.list_, pa.large_list]))
        if depth > 0 and draw(st.booleans()):
            children = draw(schema_nodes(depth - 1, max_fields))
            nodes.append(record_node(f"r{i}", children, mode, list_type))
        else:
            spec = draw(st.sampled_from(SPECS))
            nodes.append(scalar_node(f"c{i}_{spec.bq_type.lower()}", spec, mode, list_type))
    return nodes


def node_values(node: Node, nullable: bool = True) -> st.SearchStrategy[Any]:
    """Python values for one field: a RECORD is a dict (missing keys are NULL), REPEATED a list."""
    if node.spec is not None:
        one = node.spec.values
    else:
        one = st.fixed_dictionaries({}, optional={c.field.name: node_values(c) for c in node.children})
    many = st.lists(one, max_size=3) if node.field.mode == "REPEATED" else one
    return st.none() | many if nullable else many


NestedTable = tuple[list[Node], pa.RecordBatch, list[dict[str, Any]]]


@st.composite
def nested_tables(draw: st.DrawFn, depth: int = 2, max_fields: int = 4) -> NestedTable:
    """A nested schema, a batch of it (sometimes a slice of a longer one) and its rows as Python values."""
    nodes = draw(schema_nodes(depth, max_fields))
    n_rows = draw(st.integers(0, 6))
    skip_front, skip_back = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    total = skip_front + n_rows + skip_back
    arrays = {n.field.name: draw(st.lists(node_values(n), min_size=total, max_size=total)) for n in nodes}
    order = draw(st.permutations(nodes))
    batch = pa.record_batch({n.field.name: pa.array(arrays[n.field.name], n.arrow_type) for n in order})
    rows = [{name: values[skip_front + r] for name, values in arrays.items()} for r in range(n_rows)]
    return nodes, batch.slice(skip_front, n_rows), rows


@settings(QUICK, max_examples=150)
@given(table=nested_tables())
def test_nested_records_round_trip(table: NestedTable) -> None:
    check_tree(*table)


@settings(QUICK, max_examples=40)
@given(table=nested_tables(depth=4, max_fields=2))
def test_deeply_nested_records_round_trip(table: NestedTable) -> None:
    check_tree(*table)


def contacts_nodes() -> list[Node]:
    """The RECORD columns of Glific's contacts table (see shared/reference/glific-bigquery-schema.json)."""
    by_type = {(s.bq_type, str(s.arrow_type)): s for s in SPECS}
    text, civil_at = by_type[("STRING", "string")], by_type[("DATETIME", "timestamp[us]")]
    return [
        scalar_node("id", by_type[("INT64", "int64")], "REQUIRED"),
        record_node(
            "fields",
            [scalar_node("label", text, "NULLABLE"), scalar_node("value", text, "NULLABLE"),
             scalar_node("type", text, "NULLABLE"), scalar_node("inserted_at", civil_at, "NULLABLE")],
            "REPEATED",
        ),
        record_node(
            "settings",
            [scalar_node("label", text, "NULLABLE"),
             record_node("values", [scalar_node("key", text, "NULLABLE"), scalar_node("value", text, "NULLABLE")],
                         "REPEATED")],
            "NULLABLE",
        ),
        record_node("groups", [scalar_node("label", text, "REQUIRED"), scalar_node("description", text, "NULLABLE")],
                    "REPEATED"),
        record_node("tags", [scalar_node("label", text, "REQUIRED")], "REPEATED"),
    ]


CONTACT_ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "fields": [
            {"label": "Age Group", "value": "19 or above", "type": "string",
             "inserted_at": dt.datetime(2024, 3, 31, 23, 59, 59, 999999)},
            {"label": "नाम", "value": "प्रिया 🙏🏽", "type": None, "inserted_at": dt.datetime(1, 1, 1)},
            {},
        ],
        "settings": {"label": "languages", "values": [{"key": "hi", "value": "हिन्दी"}, {"key": "", "value": None}]},
        "groups": [{"label": "Optin", "description": 'say "hi" \\ 😀'}, {"label": "", "description": None}],
        "tags": [{"label": "vip"}],
    },
    {"id": 2, "fields": [], "settings": {"label": None, "values": []}, "groups": None, "tags": []},
    {"id": 3, "fields": None, "settings": None, "groups": [], "tags": None},
    {"id": 4, "fields": [{"label": LONG_TEXT, "inserted_at": dt.datetime(9999, 12, 31, 23, 59, 59, 999999)}],
     "settings": {"values": [{}]}, "groups": [{"label": "\x00"}], "tags": [{"label": "a"}, {"label": "b"}]},
]


def test_contacts_records_match_protobuf_byte_for_byte() -> None:
    nodes = contacts_nodes()
    batch = pa.record_batch({n.field.name: pa.array([r[n.field.name] for r in CONTACT_ROWS], n.arrow_type)
                             for n in nodes[::-1]})
    check_tree(nodes, batch, CONTACT_ROWS)
    check_tree(nodes, batch.slice(1, 2), CONTACT_ROWS[1:3])


def test_exact_wire_format_of_a_known_nested_row() -> None:
    """Spelled-out bytes of embedded messages, independent of any protobuf library."""
    schema = [
        SchemaField("id", "INT64"),
        SchemaField("fields", "RECORD", mode="REPEATED", fields=[SchemaField("label", "STRING"),
                                                                 SchemaField("n", "INT64")]),
        SchemaField("settings", "RECORD", fields=[SchemaField("label", "STRING")]),
        SchemaField("gone", "RECORD", fields=[SchemaField("label", "STRING")]),
    ]
    batch = pa.Table.from_pylist(
        [
            {"id": 7, "fields": [{"label": "a", "n": 300}, {"label": None, "n": None}], "settings": {"label": None},
             "gone": None},
            {"id": 8, "fields": [], "settings": None, "gone": None},
        ],
        schema=arrow_schema(schema),
    ).to_batches()[0]
    assert serialize(batch, schema) == [
        b"\x08\x07"  # 1: id 7
        + b"\x12\x06" + b"\x0a\x01a" + b"\x10\xac\x02"  # 2: first element, 6 bytes: label "a", n 300
        + b"\x12\x00"  # 2: second element, every subfield NULL: present and empty
        + b"\x1a\x00",  # 3: a struct whose subfields are all NULL is an empty message; 4: NULL, omitted
        b"\x08\x08",  # empty list and NULL structs: omitted
    ]


def test_nested_descriptor_is_self_contained_with_relative_type_names() -> None:
    schema = [
        SchemaField("fields", "RECORD", mode="REPEATED", fields=[SchemaField("label", "STRING")]),
        SchemaField("FieldsRecord", "STRING"),  # the name the nested type would take: it steps aside
        SchemaField("settings", "RECORD", mode="REQUIRED", fields=[
            SchemaField("values", "RECORD", mode="REPEATED", fields=[SchemaField("key", "STRING")]),
            SchemaField("ids", "INT64", mode="REPEATED"),
        ]),
    ]
    descriptor = descriptor_for(schema)
    T = FieldProto
    assert [(f.name, f.number, f.type, f.type_name, f.label) for f in descriptor.field] == [
        ("fields", 1, T.TYPE_MESSAGE, "FieldsRecord_", T.LABEL_REPEATED),
        ("FieldsRecord", 2, T.TYPE_STRING, "", T.LABEL_OPTIONAL),
        ("settings", 3, T.TYPE_MESSAGE, "SettingsRecord", T.LABEL_OPTIONAL),
    ]
    assert [n.name for n in descriptor.nested_type] == ["FieldsRecord_", "SettingsRecord"]
    settings_type = descriptor.nested_type[1]
    assert [(f.name, f.type_name, f.options.packed) for f in settings_type.field] == [
        ("values", "ValuesRecord", False),
        ("ids", "", True),
    ]
    assert [n.name for n in settings_type.nested_type] == ["ValuesRecord"]
    # Resolves on its own, in a file with or without a package, as the Storage Write API builds it.
    for package in ["", "some.package"]:
        file_proto = descriptor_pb2.FileDescriptorProto(name=f"{package}row.proto", package=package, syntax="proto2")
        file_proto.message_type.add().CopyFrom(descriptor)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        row = pool.FindMessageTypeByName(f"{package}.Row" if package else "Row")
        assert row.fields_by_name["settings"].message_type.fields_by_name["values"].message_type.name == "ValuesRecord"


def test_record_errors_name_the_nested_column() -> None:
    schema = [SchemaField("settings", "RECORD", fields=[
        SchemaField("values", "RECORD", mode="REPEATED", fields=[SchemaField("key", "STRING")])])]
    good = pa.struct([pa.field("values", pa.list_(pa.struct([pa.field("key", pa.string())])))])

    null_element = pa.array([{"values": []}, {"values": [{"key": "a"}, None]}], good)
    with pytest.raises(ValueError, match=r"'settings\.values'.*row 1.*NULL"):
        serialize(pa.record_batch({"settings": null_element}), schema)
    wrong_leaf = pa.array([{"values": [{"key": 1}]}], pa.struct([pa.field("values", pa.list_(pa.struct(
        [pa.field("key", pa.int64())])))]))
    with pytest.raises(TypeError, match=r"'settings\.values\.key'.*int64.*STRING"):
        serialize(pa.record_batch({"settings": wrong_leaf}), schema)
    not_a_struct = pa.array([{"values": [1]}], pa.struct([pa.field("values", pa.list_(pa.int64()))]))
    with pytest.raises(TypeError, match=r"'settings\.values'.*list of structs"):
        serialize(pa.record_batch({"settings": not_a_struct}), schema)
    with pytest.raises(TypeError, match=r"'settings'.*struct.*string"):
        serialize(pa.record_batch({"settings": pa.array(["{}"])}), schema)
    with pytest.raises(TypeError, match=r"'settings'.*REPEATED"):
        serialize(pa.record_batch({"settings": pa.array([[{"values": []}]], pa.list_(good))}), schema)
    twice = pa.array([{"values": [], "values ": None}], pa.struct([pa.field("values", good[0].type)] * 2))
    with pytest.raises(ValueError, match=r"'settings\.values' appears 2 times"):
        serialize(pa.record_batch({"settings": twice}), schema)

    odd = [SchemaField("settings", "RECORD", fields=[SchemaField("where", "GEOGRAPHY")])]
    for call in (lambda: descriptor_for(odd), lambda: serialize(pa.record_batch({"x": pa.array([1])}), odd),
                 lambda: arrow_schema(odd)):
        with pytest.raises(TypeError, match=r"'settings\.where'.*GEOGRAPHY"):
            call()
    empty = [SchemaField("settings", "RECORD")]
    with pytest.raises(TypeError, match=r"'settings'.*at least one field"):
        descriptor_for(empty)


def test_record_children_are_matched_by_name_and_missing_ones_are_null() -> None:
    schema = [SchemaField("r", "RECORD", fields=[SchemaField("a", "INT64"), SchemaField("b", "STRING")])]
    values = pa.array([{"b": "x", "extra": 1.5}, None, {"b": None, "extra": None}],
                      pa.struct([pa.field("b", pa.string()), pa.field("extra", pa.float64())]))
    assert serialize(pa.record_batch({"r": values}), schema) == [b"\x0a\x03\x12\x01x", b"", b"\x0a\x00"]


def test_values_under_a_null_struct_are_not_written() -> None:
    """A struct's mask hides its children's values (even a NULL list element): nothing of them is written."""
    schema = [SchemaField("r", "RECORD", fields=[SchemaField("n", "INT64"),
                                                 SchemaField("tags", "STRING", mode="REPEATED")])]
    children = [pa.array([1, 2, 3]), pa.array([["a"], ["b", None], ["c"]])]
    values = pa.StructArray.from_arrays(children, names=["n", "tags"], mask=pa.array([False, True, False]))
    batch = pa.record_batch({"r": values})
    assert serialize(batch, schema) == [b"\x0a\x05\x08\x01\x12\x01a", b"", b"\x0a\x05\x08\x03\x12\x01c"]
    repeated = [SchemaField("r", "RECORD", mode="REPEATED", fields=schema[0].fields)]
    with_null_struct = pa.ListArray.from_arrays(pa.array([0, 2, 3], pa.int32()), values)
    with pytest.raises(ValueError, match=r"'r'.*row 0.*NULL element"):
        serialize(pa.record_batch({"r": with_null_struct}), repeated)
    null_list_over_it = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3], pa.int32()), values,
                                                 mask=pa.array([False, True, False]))
    assert serialize(pa.record_batch({"r": null_list_over_it}), repeated) == [
        b"\x0a\x05\x08\x01\x12\x01a", b"", b"\x0a\x05\x08\x03\x12\x01c"
    ]


def test_arrow_types_of_every_bigquery_type() -> None:
    scalars = {
        "INT64": pa.int64(), "INTEGER": pa.int64(), "FLOAT64": pa.float64(), "FLOAT": pa.float64(),
        "BOOL": pa.bool_(), "BOOLEAN": pa.bool_(), "STRING": pa.string(), "JSON": pa.string(),
        "BYTES": pa.binary(), "NUMERIC": pa.decimal128(38, 9), "BIGNUMERIC": pa.decimal256(76, 38),
        "DATE": pa.date32(), "TIME": pa.time64("us"), "DATETIME": pa.timestamp("us"),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    for bq_type, expected in scalars.items():
        assert arrow_type(SchemaField("x", bq_type)) == expected, bq_type
        assert arrow_type(SchemaField("x", bq_type, mode="REQUIRED")) == expected, bq_type
        assert arrow_type(SchemaField("x", bq_type, mode="REPEATED")) == pa.list_(expected), bq_type
    fields = SchemaField("fields", "RECORD", mode="REPEATED", fields=[
        SchemaField("label", "STRING"), SchemaField("inserted_at", "DATETIME")])
    settings_field = SchemaField("settings", "STRUCT", fields=[
        SchemaField("values", "RECORD", mode="REPEATED", fields=[SchemaField("key", "STRING")])])
    assert arrow_schema([SchemaField("id", "INTEGER", mode="REQUIRED"), fields, settings_field]) == pa.schema([
        pa.field("id", pa.int64()),
        pa.field("fields", pa.list_(pa.struct([pa.field("label", pa.string()),
                                               pa.field("inserted_at", pa.timestamp("us"))]))),
        pa.field("settings", pa.struct([pa.field("values", pa.list_(pa.struct([pa.field("key", pa.string())])))])),
    ])


def test_batches_of_arrow_schema_serialize_for_every_type() -> None:
    """What ``arrow_schema`` names, ``serialize`` takes: one row of each type, nested too."""
    columns, values = edge_case_columns()
    record = SchemaField("all", "RECORD", fields=[c.field for c in columns])
    schema = [*(c.field for c in columns), record, SchemaField("many", "RECORD", mode="REPEATED", fields=[record])]
    row = {c.field.name: values[c.field.name][0] for c in columns}
    batch = pa.Table.from_pylist([{**row, "all": row, "many": [{"all": row}, {}]}, {}],
                                 schema=arrow_schema(schema)).to_batches()[0]
    nodes = [Node(c.field, c.spec, (), c.arrow_type) for c in columns]
    all_node = Node(record, None, tuple(nodes), batch.schema.field("all").type)
    many_node = Node(schema[-1], None, (all_node,), batch.schema.field("many").type)
    check_tree([*nodes, all_node, many_node], batch, [{**row, "all": row, "many": [{"all": row}, {}]}, {}])


# ---------------------------------------------------------------------------------------------
# End to end: the local BigQuery emulator's Storage Write API
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from glific_bq.local.bigquery_emulator import LocalBigQuery

    emu = LocalBigQuery().start()
    try:
        yield emu
    finally:
        emu.stop()


def append_to_default_stream(
    emu: Any, table: str, descriptor: descriptor_pb2.DescriptorProto, rows: list[bytes]
) -> None:
    """Append serialized rows in one AppendRows request; fail on any error the server reports."""
    import grpc
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import grpc as write_grpc

    dataset, table_id = table.split(".")
    channel = grpc.insecure_channel(emu.grpc_endpoint)
    try:
        client = BigQueryWriteClient(transport=write_grpc.BigQueryWriteGrpcTransport(channel=channel))
        request = types.AppendRowsRequest(
            write_stream=f"projects/{emu.project}/datasets/{dataset}/tables/{table_id}/streams/_default",
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=descriptor),
                rows=types.ProtoRows(serialized_rows=rows),
            ),
        )
        responses = list(client.append_rows(iter([request])))
    finally:
        channel.close()
    assert len(responses) == 1
    assert responses[0].error.code == 0, responses[0].error
    assert not responses[0].row_errors, responses[0].row_errors


def test_rows_land_in_the_bigquery_emulator(emulator: Any, encoder: str) -> None:
    """Every column type survives AppendRows and comes back from a query unchanged.

    BIGNUMERIC is left out: the emulator maps it to DuckDB DECIMAL(76, 38) and cannot even
    create such a table (DuckDB decimals stop at 38 digits). Its encoding is the same decimal
    text as NUMERIC, covered by the unit tests above.
    """
    import google.auth.credentials
    from google.cloud import bigquery

    columns, values = edge_case_columns()
    client = bigquery.Client(
        project=emulator.project,
        credentials=google.auth.credentials.AnonymousCredentials(),
        client_options={"api_endpoint": emulator.rest_url},
    )
    schema = [SchemaField("row_no", "INT64", mode="REQUIRED"), SchemaField("doc", "JSON")]
    schema += [c.field for c in columns]
    client.create_dataset("protorows_e2e", exists_ok=True)
    table = f"all_types_{encoder}"
    client.create_table(bigquery.Table(f"{emulator.project}.protorows_e2e.{table}", schema=schema))

    rows_total = len(values["id"])
    docs = ['{"a": [1, "x", null], "b": {"c": "😀"}}', '"text"', None, "[]", "{}", "3.5", "true", '{"q": "\\""}', None]
    batch = pa.record_batch(
        {
            "row_no": pa.array(range(rows_total)),
            "doc": pa.array(docs),
            **{c.field.name: pa.array(values[c.field.name], c.arrow_type) for c in columns},
        }
    )
    append_to_default_stream(emulator, f"protorows_e2e.{table}", descriptor_for(schema), serialize(batch, schema))

    query = f"SELECT * FROM `{emulator.project}.protorows_e2e.{table}` ORDER BY row_no"
    result = [dict(row) for row in client.query(query).result()]
    assert [row["row_no"] for row in result] == list(range(rows_total))

    def as_timestamp(micros: int) -> dt.datetime:
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)

    def expected(column: Column, value: Any) -> Any:
        """The Python value the BigQuery client returns; NULL arrays read back as []."""
        convert = as_timestamp if column.field.field_type == "TIMESTAMP" else same
        if column.field.mode == "REPEATED":
            return [convert(v) for v in value or []]
        return None if value is None else convert(value)

    for row_no, row in enumerate(result):
        doc = docs[row_no]
        assert comparable(row["doc"]) == comparable(None if doc is None else json.loads(doc)), row_no
        for column in columns:
            name = column.field.name
            # NUMERIC compares as Decimal, so 1E-9 equals 0.000000001; floats compare by bits.
            assert comparable(row[name]) == comparable(expected(column, values[name][row_no])), (row_no, name)


# ---------------------------------------------------------------------------------------------
# Pages: what a Storage Write append sends (writes.append_requests, protorows.proto_rows of a table)
# ---------------------------------------------------------------------------------------------

STREAM = "projects/p/datasets/d/tables/messages/streams/_default"


def page_nodes_and_rows() -> tuple[list[Node], list[dict[str, Any]]]:
    """Every type the schema mapping produces on nine rows: the edge cases (each scalar type with
    NULLs, NaN/inf, non-ASCII and empty text, DATE, DATETIME, TIMESTAMP, REPEATED lists), JSON, a
    column NULL in every row, one empty in every row, and the contacts' nested RECORDs."""
    columns, values = edge_case_columns()
    by_type = {(s.bq_type, str(s.arrow_type)): s for s in SPECS}
    text = by_type[("STRING", "string")]
    nodes = [Node(c.field, c.spec, (), c.arrow_type) for c in columns]
    nodes += [
        scalar_node("errors", by_type[("JSON", "string")], "NULLABLE"),
        scalar_node("nothing", text, "NULLABLE"),
        scalar_node("nothing_numeric", by_type[("INT64", "int64")], "NULLABLE"),
        scalar_node("empty", text, "NULLABLE"),
        *contacts_nodes()[1:4],  # fields, settings, groups (the edge cases have an id and tags)
    ]
    errors = ['{"message": "Re-engagement required", "code": 470}', "{}", None, '{"é": "😀"}', "", None,
              "[]", '{"a": [1, 2.5, null]}', "null"]
    rows = []
    for r in range(9):
        row = {name: column[r] for name, column in values.items()}
        row.update(errors=errors[r], nothing=None, nothing_numeric=None, empty="")
        row.update({k: v for k, v in CONTACT_ROWS[r % len(CONTACT_ROWS)].items() if k in ("fields", "settings", "groups")})
        rows.append(row)
    return nodes, rows


def page_table(nodes: list[Node], rows: list[dict[str, Any]]) -> pa.Table:
    """``rows`` as a table of several record batches (slices of one batch, an empty one among them)."""
    batch = pa.record_batch({n.field.name: pa.array([r[n.field.name] for r in rows], n.arrow_type)
                             for n in nodes[::-1]})
    return pa.Table.from_batches([batch.slice(0, 2), batch.slice(2, 0), batch.slice(2, 5), batch.slice(7, 2)])


def expected_rows(nodes: list[Node], rows: list[dict[str, Any]]) -> list[bytes]:
    """Each row serialized the slow, trusted way: protobuf's message class built from the descriptor."""
    row_class = message_class([n.field for n in nodes])
    out = []
    for row in rows:
        message = row_class()
        fill(message, nodes, row)
        out.append(message.SerializeToString())
    return out


def test_a_page_in_chunks_decodes_to_its_rows_and_matches_protobuf_byte_for_byte() -> None:
    from google.cloud.bigquery_storage_v1 import types

    from glific_bq.protorows import proto_rows

    nodes, rows = page_nodes_and_rows()
    schema = [n.field for n in nodes]
    table = page_table(nodes, rows)
    row_class = message_class(schema)
    wanted_rows = expected_rows(nodes, rows)
    longest = max(map(len, wanted_rows))
    for limit in (1, longest, 3 * longest, 10**9):
        chunks = proto_rows(table, schema, limit)
        encoded = [r for chunk, _ in chunks for r in types.ProtoRows.pb().FromString(chunk).serialized_rows]
        assert encoded == wanted_rows, limit
        for index, (raw, row) in enumerate(zip(encoded, rows, strict=True)):
            assert tree_decoded(row_class.FromString(raw), nodes) == tree_wanted(nodes, row), (limit, index)
        # The same chunks as the table's batches one by one: none spans two batches.
        assert chunks == [c for b in table.to_batches() for c in proto_rows(b, schema, limit)], limit
        assert all(len(chunk) <= limit or count == 1 for chunk, count in chunks), limit


def test_null_slots_holding_bytes_write_nothing() -> None:
    """Arrow lets a NULL string keep bytes in its slot (``if_else``, ``replace_with_mask`` outputs
    may); the row must still omit the field."""
    from glific_bq.protorows import proto_rows

    values = pa.array(["keep", "dropped", "", "dropped too", "é😀"])
    validity = pa.array([True, False, True, False, True]).buffers()[1]
    ghost = pa.Array.from_buffers(pa.string(), 5, [validity, *values.buffers()[1:]], null_count=2)
    spec = {(s.bq_type, str(s.arrow_type)): s for s in SPECS}[("STRING", "string")]
    nodes = [scalar_node("ghost", spec, "NULLABLE"), scalar_node("n", SPECS[0], "NULLABLE")]
    rows = [{"ghost": g, "n": i} for i, g in enumerate(ghost.to_pylist())]
    batch = pa.record_batch({"n": pa.array(range(5)), "ghost": ghost})
    check_tree(nodes, batch, rows)
    chunks = proto_rows(pa.Table.from_batches([batch]), [n.field for n in nodes], 10**9)
    assert b"dropped" not in chunks[0][0]


def reference_request(descriptor: descriptor_pb2.DescriptorProto, rows: list[bytes]) -> bytes:
    """An AppendRowsRequest built field by field by protobuf itself."""
    from google.cloud.bigquery_storage_v1 import types

    request = types.AppendRowsRequest.pb()(write_stream=STREAM)
    request.proto_rows.writer_schema.proto_descriptor.CopyFrom(descriptor)
    request.proto_rows.rows.serialized_rows.extend(rows)
    return request.SerializeToString()


#: SHA-256 of the serialized requests ``append_requests`` made for ``page_table`` before it
#: encoded pages in one pass (commit e61095c, batch by batch): the bytes must not change.
PAGE_REQUESTS_SHA256 = "2bd7f141de75d6cf358838b7f9055b1d56e84d6deffe46abbef0f32547c6a711"


def test_append_requests_of_a_page_are_the_reference_requests() -> None:
    import hashlib

    from google.cloud.bigquery_storage_v1 import types

    from glific_bq.warehouse.writes import append_requests

    nodes, rows = page_nodes_and_rows()
    schema = tuple(n.field for n in nodes)
    table = page_table(nodes, rows)
    requests = append_requests(STREAM, schema, table)
    serialized = [types.AppendRowsRequest.pb(request).SerializeToString() for request, _ in requests]
    wanted_rows = expected_rows(nodes, rows)
    descriptor = descriptor_for(schema)
    # One request per non-empty record batch here (all far below the request size limit).
    sizes = [b.num_rows for b in table.to_batches() if b.num_rows]
    assert [count for _, count in requests] == sizes
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert serialized == [reference_request(descriptor, wanted_rows[s : s + n]) for s, n in zip(starts, sizes)]
    assert hashlib.sha256(b"".join(serialized)).hexdigest() == PAGE_REQUESTS_SHA256


# ---------------------------------------------------------------------------------------------
# The small-page path (row by row in Python) against the vectorized one
# ---------------------------------------------------------------------------------------------


def assert_paths_agree(schema: list[SchemaField], batch: pa.RecordBatch) -> None:
    """``serialize`` and ``proto_rows`` (of the batch, and of it cut into a table of three batches,
    at several size limits) give the same bytes and chunks on both paths."""
    with path("vectorized"):
        rows = serialize(batch, schema)
    with path("small"):
        assert serialize(batch, schema) == rows
    cut = batch.num_rows // 3
    table = pa.Table.from_batches([batch.slice(0, cut), batch.slice(cut, 0), batch.slice(cut)])
    longest = max(map(len, rows), default=0)
    for limit in (1, longest + 3, 3 * longest + 10, 10**9):
        for pages in (batch, table):
            with path("vectorized"):
                chunks = protorows.proto_rows(pages, schema, limit)
            with path("small"):
                assert protorows.proto_rows(pages, schema, limit) == chunks, limit


@settings(QUICK, max_examples=100)
@given(table=tables(SPECS, max_columns=8))
def test_the_small_path_writes_the_vectorized_bytes_and_chunks(table: Table) -> None:
    columns, batch, _ = table
    assert_paths_agree([c.field for c in columns], batch)


@settings(QUICK, max_examples=100)
@given(table=nested_tables())
def test_the_small_path_writes_the_vectorized_bytes_and_chunks_of_records(table: NestedTable) -> None:
    nodes, batch, _ = table
    assert_paths_agree([n.field for n in nodes], batch)


def test_pages_either_side_of_the_threshold_write_the_same_rows() -> None:
    """``SMALL_PAGE_ROWS`` + 1 rows (vectorized) are the first ``SMALL_PAGE_ROWS`` (row by row) and the last."""
    nodes, rows = page_nodes_and_rows()
    schema = [n.field for n in nodes]
    limit = protorows.SMALL_PAGE_ROWS = 32
    many = (rows * 4)[: limit + 1]
    batch = pa.record_batch({n.field.name: pa.array([r[n.field.name] for r in many], n.arrow_type) for n in nodes})
    assert serialize(batch, schema) == serialize(batch.slice(0, limit), schema) + serialize(batch.slice(limit), schema)
    assert_paths_agree(schema, batch)
