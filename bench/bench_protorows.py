"""Rows/s of ``glific_bq.protorows.serialize`` against a per-row ``message_factory`` encoder.

Two batches:

* ``messages`` imitates Glific's ``messages`` table: 21 columns of ids, short enum-like strings,
  unicode message bodies (some with emoji, some empty, some NULL), JSON errors, booleans,
  DATETIME and TIMESTAMP columns, and sparse foreign keys.
* ``contacts`` imitates Glific's ``contacts`` table with its RECORD columns: 12 scalar columns,
  ``fields`` (REPEATED RECORD of label, value, type, inserted_at: 5 contact fields per row, some
  values NULL, the DATETIME inside the record) and ``settings`` (a NULLABLE RECORD holding a
  REPEATED RECORD).

Both encoders run on the same batch in the same process and must produce identical bytes; each
is timed best-of-N.

Run: ``.venv/bin/python bench/bench_protorows.py [--rows 200000] [--repeat 5] [--batch messages|contacts]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
from google.cloud.bigquery import SchemaField
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from glific_bq import protorows
from glific_bq.protorows import descriptor_for, serialize

ProtoRows = types.ProtoRows.pb()

SCHEMA = [
    SchemaField("id", "INT64", mode="REQUIRED"),
    SchemaField("uuid", "STRING"),
    SchemaField("body", "STRING"),
    SchemaField("flow", "STRING"),
    SchemaField("type", "STRING"),
    SchemaField("status", "STRING"),
    SchemaField("bsp_message_id", "STRING"),
    SchemaField("bsp_status", "STRING"),
    SchemaField("errors", "JSON"),
    SchemaField("message_number", "INT64"),
    SchemaField("sender_id", "INT64"),
    SchemaField("receiver_id", "INT64"),
    SchemaField("contact_id", "INT64"),
    SchemaField("user_id", "INT64"),
    SchemaField("media_id", "INT64"),
    SchemaField("is_hsm", "BOOL"),
    SchemaField("flow_id", "INT64"),
    SchemaField("organization_id", "INT64"),
    SchemaField("inserted_at", "DATETIME"),
    SchemaField("updated_at", "DATETIME"),
    SchemaField("sent_at", "TIMESTAMP"),
]

BODIES = [
    "Hi",
    "",
    "नमस्ते! आपका स्वागत है 🙏",
    "Please reply with 1 for English, 2 for हिन्दी",
    'He said "ok" \\ then left 😀😀',
    "Your appointment is confirmed for tomorrow at 10:30 AM. Reply STOP to unsubscribe. " * 2,
]


def messages_batch(rows: int, seed: int = 7) -> pa.RecordBatch:
    """A deterministic batch shaped like Glific's messages table."""
    rng = np.random.default_rng(seed)

    def nulls(share: float) -> np.ndarray:
        return rng.random(rows) < share

    def ints(low: int, high: int, null_share: float = 0.0) -> pa.Array:
        return pa.array(rng.integers(low, high, rows), mask=nulls(null_share))

    def choice(options: list[str], null_share: float = 0.0) -> pa.Array:
        picked = pa.array(options).take(rng.integers(0, len(options), rows))
        return pa.array(picked.to_pylist(), mask=nulls(null_share))

    start = 1_700_000_000_000_000
    inserted = start + np.sort(rng.integers(0, 90 * 86_400_000_000, rows))
    uuids = [f"{a:016x}-{b:016x}" for a, b in rng.integers(0, 2**62, (rows, 2)).tolist()]
    return pa.record_batch(
        {
            "id": pa.array(np.arange(10_000_000, 10_000_000 + rows)),
            "uuid": pa.array(uuids),
            "body": choice(BODIES, 0.02),
            "flow": choice(["inbound", "outbound"]),
            "type": choice(["text", "image", "audio", "video", "interactive", "location"]),
            "status": choice(["sent", "delivered", "read", "received", "error"]),
            "bsp_message_id": choice([f"gBEGkZFQJ{i:07d}AgmQ" for i in range(500)], 0.3),
            "bsp_status": choice(["sent", "delivered", "read", "enqueued"], 0.1),
            "errors": choice(["{}", '{"message": "Re-engagement required", "code": 470}'], 0.5),
            "message_number": ints(0, 5_000),
            "sender_id": ints(1, 2_000_000),
            "receiver_id": ints(1, 2_000_000),
            "contact_id": ints(1, 2_000_000),
            "user_id": ints(1, 500, 0.7),
            "media_id": ints(1, 1_000_000, 0.9),
            "is_hsm": pa.array(rng.random(rows) < 0.1),
            "flow_id": ints(1, 3_000, 0.4),
            "organization_id": ints(1, 200),
            "inserted_at": pa.array(inserted, pa.timestamp("us")),
            "updated_at": pa.array(inserted + rng.integers(0, 10_000_000, rows), pa.timestamp("us")),
            "sent_at": pa.array(inserted + 1_500_000, pa.timestamp("us", tz="UTC"), mask=nulls(0.2)),
        }
    )


CONTACT_FIELD = [
    SchemaField("label", "STRING"),
    SchemaField("value", "STRING"),
    SchemaField("type", "STRING"),
    SchemaField("inserted_at", "DATETIME"),
]
CONTACTS_SCHEMA = [
    SchemaField("id", "INT64", mode="REQUIRED"),
    SchemaField("name", "STRING"),
    SchemaField("phone", "STRING", mode="REQUIRED"),
    SchemaField("provider_status", "STRING", mode="REQUIRED"),
    SchemaField("status", "STRING", mode="REQUIRED"),
    SchemaField("language", "STRING"),
    SchemaField("contact_optin_method", "STRING"),
    SchemaField("optin_time", "DATETIME"),
    SchemaField("last_message_at", "DATETIME"),
    SchemaField("inserted_at", "DATETIME"),
    SchemaField("updated_at", "DATETIME"),
    SchemaField("fields", "RECORD", mode="REPEATED", fields=CONTACT_FIELD),
    SchemaField("settings", "RECORD", fields=[
        SchemaField("label", "STRING"),
        SchemaField("values", "RECORD", mode="REPEATED", fields=[SchemaField("key", "STRING"),
                                                                 SchemaField("value", "STRING")]),
    ]),
    SchemaField("is_restricted_user", "BOOL"),
]
FIELD_LABELS = ["Name", "Age Group", "Gender", "District", "नाम", "Kaunti", "Escola"]
FIELD_VALUES = ["19 or above", "Female", "प्रिया 🙏🏽", "Nairobi", "São Paulo", "", "12"]
FIELDS_PER_CONTACT = 5


def contacts_batch(rows: int, seed: int = 11) -> pa.RecordBatch:
    """A deterministic batch shaped like Glific's contacts table, RECORD columns included."""
    rng = np.random.default_rng(seed)

    def nulls(n: int, share: float) -> np.ndarray:
        return rng.random(n) < share

    def choice(options: list[str], n: int, null_share: float = 0.0) -> pa.Array:
        return pa.array(pa.array(options).take(rng.integers(0, len(options), n)).to_pylist(), mask=nulls(n, null_share))

    def moments(n: int, null_share: float = 0.0) -> pa.Array:
        micros = 1_700_000_000_000_000 + rng.integers(0, 90 * 86_400_000_000, n)
        return pa.array(micros, pa.timestamp("us"), mask=nulls(n, null_share))

    elements = rows * FIELDS_PER_CONTACT
    field_values = pa.StructArray.from_arrays(
        [
            choice(FIELD_LABELS, elements),
            choice(FIELD_VALUES, elements, 0.1),
            choice(["string", "integer"], elements, 0.3),
            moments(elements, 0.05),
        ],
        fields=[pa.field(f.name, protorows.arrow_type(f)) for f in CONTACT_FIELD],
    )
    offsets = pa.array(np.arange(0, elements + 1, FIELDS_PER_CONTACT, dtype=np.int32))
    setting_values = pa.StructArray.from_arrays(
        [choice(["hi", "en", "sw"], rows), choice(["हिन्दी", "English", "Kiswahili"], rows)], names=["key", "value"]
    )
    settings_type = protorows.arrow_type(CONTACTS_SCHEMA[12])
    settings = pa.StructArray.from_arrays(
        [choice(["languages"], rows), pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32)),
                                                                setting_values)],
        fields=list(settings_type),
        mask=pa.array(nulls(rows, 0.5)),
    )
    return pa.record_batch(
        {
            "id": pa.array(np.arange(1_000, 1_000 + rows)),
            "name": choice(["Priya", "Wanjiru", "João", "", "अमित 😀"], rows, 0.05),
            "phone": pa.array([f"91{n:010d}" for n in rng.integers(0, 10**10, rows).tolist()]),
            "provider_status": choice(["session_and_hsm", "hsm", "none"], rows),
            "status": choice(["valid", "invalid", "blocked"], rows),
            "language": choice(["hi", "en", "sw", "pt"], rows, 0.1),
            "contact_optin_method": choice(["BSP", "URL", "WA"], rows, 0.4),
            "optin_time": moments(rows, 0.3),
            "last_message_at": moments(rows, 0.1),
            "inserted_at": moments(rows),
            "updated_at": moments(rows),
            "fields": pa.ListArray.from_arrays(offsets, field_values),
            "settings": settings,
            "is_restricted_user": pa.array(rng.random(rows) < 0.05),
        }
    )


BATCHES = {"messages": (SCHEMA, messages_batch), "contacts": (CONTACTS_SCHEMA, contacts_batch)}


def message_class(schema: list[SchemaField]) -> type:
    file_proto = descriptor_pb2.FileDescriptorProto(name="bench_row.proto", syntax="proto2")
    file_proto.message_type.add().CopyFrom(descriptor_for(schema))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("Row"))


def serialize_per_row(batch: pa.RecordBatch, schema: list[SchemaField], row_class: type) -> list[bytes]:
    """The baseline: column values to Python once (vectorized casts), then one message per row."""
    columns = {}
    for field in schema:
        column = batch.column(field.name)
        columns[field.name] = column.cast(_python_ready(column.type)).to_pylist()
    names = list(columns)
    out = []
    for values in zip(*columns.values()):
        kwargs = {name: value for name, value in zip(names, values) if value is not None}
        out.append(row_class(**kwargs).SerializeToString())
    return out


def _python_ready(arrow: pa.DataType) -> pa.DataType:
    """The type whose Python values protobuf takes: DATETIME as text, TIMESTAMP as microseconds,
    through structs and lists (message constructors take nested dicts; None means unset)."""
    if pa.types.is_timestamp(arrow):
        return pa.int64() if arrow.tz else pa.string()
    if pa.types.is_struct(arrow):
        return pa.struct([pa.field(f.name, _python_ready(f.type)) for f in arrow])
    if pa.types.is_list(arrow):
        return pa.list_(_python_ready(arrow.value_type))
    return arrow


def best_time(encode, repeat: int) -> tuple[float, list[bytes]]:
    best, result = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        result = encode()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(name: str, rows: int, repeat: int) -> None:
    schema, make_batch = BATCHES[name]
    batch = make_batch(rows)
    row_class = message_class(schema)
    vectorized_s, ours = best_time(lambda: serialize(batch, schema), repeat)
    baseline_s, theirs = best_time(lambda: serialize_per_row(batch, schema, row_class), repeat)
    if ours != theirs:
        raise SystemExit(f"{name}: the two encoders disagree")
    # What a Storage Write append sends: ProtoRows chunks of at most 8 MB (writes.append_requests).
    chunks_s, chunks = best_time(lambda: protorows.proto_rows(batch, schema, 8 * 1024 * 1024), repeat)
    if [r for c, _ in chunks for r in ProtoRows.FromString(c).serialized_rows] != ours:
        raise SystemExit(f"{name}: proto_rows disagrees with serialize")

    mean_bytes = sum(map(len, ours)) / len(ours)
    print(f"{name}: {rows:,} rows x {len(schema)} columns, {mean_bytes:.0f} bytes/row, best of {repeat}")
    print(f"{'encoder':<30}{'seconds':>10}{'rows/s':>14}{'speed-up':>10}")
    for encoder, seconds in [("protorows.proto_rows (chunks)", chunks_s), ("protorows.serialize", vectorized_s),
                             ("per-row message_factory", baseline_s)]:
        print(f"{encoder:<30}{seconds:>10.3f}{rows / seconds:>14,.0f}{baseline_s / seconds:>9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", choices=[*BATCHES, "all"], default="all")
    args = parser.parse_args()
    for name in BATCHES if args.batch == "all" else [args.batch]:
        run(name, args.rows, args.repeat)
        print()


if __name__ == "__main__":
    main()
