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

Then the whole ``writes.append_requests`` (encoding, 8 MB chunks, AppendRowsRequests: what a Storage
Write append does before the network) on a 20,000-row page of Glific ``messages`` as the sync
hands it over, in both layouts (``--page raw glific``): the raw layout's 35 columns and the Glific
layout's 39 (its reference schema), with the types, NULL shares, value lengths and record batches
(three per page: 42 + 10,021 + 9,937 rows, 9,757 + 9,882 + 361) of pages extracted from
bench_datapath's table. It is timed in CPU seconds (``time.process_time``, best of N) against the
encoder of ``--baseline`` (a git revision: its ``protorows.py`` and its ``append_requests``, run from
``git show``), and both must produce byte-identical requests.

Run: ``.venv/bin/python bench/bench_protorows.py [--rows 200000] [--repeat 5] [--batch messages|contacts|none]
[--page raw glific] [--baseline e61095c]``

``--small`` instead compares, in one run, ``proto_rows`` on pages of 1 to 1,000 rows of a 41-column
Glific-like schema (the Glific layout's messages plus a REPEATED RECORD and a NULLABLE RECORD)
encoded row by row in Python (the small-page path) and vectorized, in CPU ms per page, and checks
that both give the same chunks: the measurement behind ``protorows.SMALL_PAGE_ROWS``.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import types as pytypes
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# A page of messages as the sync encodes it: writes.append_requests, before and after
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: The encoder before protorows encoded a page in one pass (the commit this bench compares to).
BASELINE = "e61095c"
STREAM = "projects/p/datasets/d/tables/messages/streams/_default"
#: Record batches of a 20,000-row page as extracted (pages of bench_datapath's table).
PAGE_BATCHES = {"raw": (42, 10_021, 9_937), "glific": (9_757, 9_882, 361)}

RAW_MESSAGES = [
    SchemaField(name, kind) for name, kind in [
        ("id", "INT64"), ("uuid", "STRING"), ("body", "STRING"), ("type", "STRING"), ("is_hsm", "BOOL"),
        ("flow", "STRING"), ("status", "STRING"), ("bsp_message_id", "STRING"), ("bsp_status", "STRING"),
        ("errors", "STRING"), ("message_number", "INT64"), ("sender_id", "INT64"), ("receiver_id", "INT64"),
        ("contact_id", "INT64"), ("user_id", "INT64"), ("media_id", "INT64"), ("send_at", "DATETIME"),
        ("sent_at", "DATETIME"), ("organization_id", "INT64"), ("inserted_at", "DATETIME"),
        ("updated_at", "DATETIME"), ("session_uuid", "STRING"), ("flow_label", "STRING"), ("flow_id", "INT64"),
        ("group_id", "INT64"), ("context_id", "STRING"), ("context_message_id", "INT64"),
        ("interactive_content", "STRING"), ("group_message_id", "INT64"), ("template_id", "INT64"),
        ("interactive_template_id", "INT64"), ("message_broadcast_id", "INT64"), ("profile_id", "INT64"),
        ("bq_uuid", "STRING"), ("bq_inserted_at", "TIMESTAMP"),
    ]
]


def page_schema(layout: str) -> list[SchemaField]:
    if layout == "raw":
        return RAW_MESSAGES
    from glific_bq.layouts import glific

    return list(glific.reference_schema()["messages"])


def _page_batch(schema: list[SchemaField], rows: int, first_id: int, rng: np.random.Generator) -> pa.RecordBatch:
    """``rows`` messages in ``schema``'s columns; a column not modelled here is NULL in every row
    (as most of Glific's optional foreign keys are in bench_datapath's table)."""

    def nulls(share: float) -> np.ndarray | None:
        return rng.random(rows) < share if share else None

    def choice(options: list[str], share: float = 0.0) -> pa.Array:
        return pa.array(np.array(options, dtype=object)[rng.integers(0, len(options), rows)], pa.string(),
                        mask=nulls(share))

    def ints(low: int, high: int, share: float = 0.0) -> pa.Array:
        return pa.array(rng.integers(low, high, rows), mask=nulls(share))

    def uuids(share: float = 0.0) -> pa.Array:
        return pa.array([f"{a:08x}-{b:04x}-4{c:03x}-8{d:03x}-{e:012x}" for a, b, c, d, e in zip(
            *(rng.integers(0, 16**k, rows).tolist() for k in (8, 4, 3, 3, 12)))], mask=nulls(share))

    def wamids(share: float) -> pa.Array:
        return pa.array([f"wamid.HBgM{n:024X}" for n in rng.integers(0, 2**62, rows).tolist()], mask=nulls(share))

    def moments(share: float = 0.0, later: int = 0) -> pa.Array:
        return pa.array(inserted + later, pa.timestamp("us"), mask=nulls(share))

    inserted = 1_700_000_000_000_000 + first_id * 1_000_000 + np.arange(rows) * 1_000_000
    long_bodies = BODIES + [("Dear parent, your child's weekly report is ready 📊. " * 20)[:1000], "नमस्ते 🙏 " * 400]
    phones = [f"9198000{n:05d}" for n in range(1001, 1201)]
    error_texts = ["{}"] * 60 + ['{"message": "Re-engagement required", "code": 470}', json_error := (
        '{"payload": {"code": 131026, "title": "Message undeliverable", "href": "https://developers.facebook.com/'
        'docs/whatsapp/cloud-api/support/error-codes/"}, "message": "Message undeliverable"}')]
    columns = {
        "id": pa.array(np.arange(first_id, first_id + rows)),
        "uuid": uuids(0.03),
        "bq_uuid": uuids(),
        "body": choice(BODIES * 40 + long_bodies, 0.075),
        "type": choice(["text"] * 6 + ["image", "audio", "video", "document", "sticker", "location", "quick_reply",
                                       "list"]),
        "is_hsm": pa.array(rng.random(rows) < 0.1),
        "flow": choice(["inbound", "outbound"]),
        "status": choice(["sent", "delivered", "read", "received", "error", "enqueued"]),
        "bsp_message_id": wamids(0.098),
        "bsp_status": choice(["sent", "delivered", "read", "received", "error", "enqueued"], 0.098),
        "errors": choice(error_texts, 0.011),
        "message_number": ints(1_000, 2_000),
        "sender_id": ints(1, 201),
        "receiver_id": ints(1, 201),
        "contact_id": ints(2, 201),
        "media_id": ints(1, 101, 0.814),
        "send_at": moments(0.974, 60_000_000),
        "sent_at": moments(0.447, 1_500_000),
        "organization_id": pa.array(np.ones(rows, dtype=np.int64)),
        "inserted_at": moments(),
        "updated_at": moments(later=2_000_000),
        "bq_inserted_at": moments(later=86_400_000_000),
        "session_uuid": uuids(0.601),
        "flow_label": choice(["feedback", "registration", "quiz", "help", "optin"], 0.601),
        "flow_id": ints(1, 6, 0.601),
        "context_id": wamids(0.958),
        "context_message_id": ints(first_id, first_id + rows, 0.958),
        "interactive_content": choice(["{}"] * 200 + ['{"type": "quick_reply", "options": [' + json_error + "]}"]),
        "sender_phone": choice(phones),
        "receiver_phone": choice(phones),
        "contact_phone": choice(phones),
        "contact_name": choice([f"Contact {n} 😀" for n in range(1, 200)]),
        "media_url": choice([f"https://filemanager.gupshup.io/wa/{n:032x}/media.jpg" for n in range(101)], 0.814),
        "tags_label": pa.array([""] * rows),
        "flow_name": choice([f"Flow {n}" for n in range(1, 7)], 0.601),
        "flow_uuid": choice([f"9afa6782-d990-4281-9207-4fb0fd34{n:04d}" for n in range(6)], 0.601),
    }
    arrays = {}
    for field in schema:
        values = columns.get(field.name, pa.nulls(rows))
        arrays[field.name] = values.cast(protorows.arrow_type(field))
    return pa.record_batch(arrays)


def messages_page(layout: str, seed: int = 5) -> tuple[list[SchemaField], pa.Table]:
    """A 20,000-row page of messages in ``layout`` as the sync encodes it (after ``prepare``)."""
    rng = np.random.default_rng(seed)
    schema = page_schema(layout)
    batches, first = [], 21_001
    for rows in PAGE_BATCHES[layout]:
        batches.append(_page_batch(schema, rows, first, rng))
        first += rows
    return schema, pa.Table.from_batches(batches)


def baseline_append_requests(rev: str):
    """``append_requests`` as of git revision ``rev`` (its protorows module and its encoding loop)."""
    source = subprocess.run(["git", "show", f"{rev}:glific_bq/protorows.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = pytypes.ModuleType(f"protorows_{rev}")
    module.__dict__["__name__"] = module.__name__
    exec(compile(source, f"{rev}:glific_bq/protorows.py", "exec"), module.__dict__)

    def append_requests(stream: str, schema, rows: pa.Table) -> list:  # writes.append_requests of e61095c
        descriptor = module.descriptor_for(schema)
        chunks = [c for b in rows.to_batches() for c in module.proto_rows(b, schema, 8 * 1024 * 1024)]
        requests = []
        for chunk, count in chunks:
            request = types.AppendRowsRequest.pb()(write_stream=stream)
            request.proto_rows.writer_schema.proto_descriptor.CopyFrom(descriptor)
            request.proto_rows.rows.MergeFromString(chunk)
            requests.append((types.AppendRowsRequest.wrap(request), count))
        return requests

    return append_requests


def cpu_time(encode, repeat: int) -> tuple[float, list]:
    """Best CPU seconds of ``encode()`` over ``repeat`` runs (after one warm-up run), and its result."""
    result = encode()
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        result = encode()
        best = min(best, time.process_time() - started)
    return best, result


def request_bytes(requests: list) -> list[tuple[bytes, int]]:
    return [(types.AppendRowsRequest.pb(request).SerializeToString(), count) for request, count in requests]


def run_page(layout: str, repeat: int, baseline: str) -> None:
    from glific_bq.warehouse import writes

    schema, page = messages_page(layout)
    before = baseline_append_requests(baseline)
    before_s, theirs = cpu_time(lambda: before(STREAM, schema, page), repeat)
    after_s, ours = cpu_time(lambda: writes.append_requests(STREAM, schema, page), repeat)
    if request_bytes(ours) != request_bytes(theirs):
        raise SystemExit(f"{layout}: append_requests differs from {baseline}'s")
    rows = page.num_rows
    print(f"append_requests, {layout} layout: {rows:,} messages x {len(schema)} columns in "
          f"{page.column(0).num_chunks} record batches, {len(ours)} requests of "
          f"{sum(len(b) for b, _ in request_bytes(ours)) / 1e6:.1f} MB; CPU, best of {repeat}")
    print(f"{'':<30}{'ms/page':>10}{'CPU s/M rows':>14}{'speed-up':>10}")
    for name, seconds in [(f"before ({baseline})", before_s), ("after (this checkout)", after_s)]:
        print(f"{name:<30}{seconds * 1000:>10.1f}{seconds / rows * 1e6:>14.2f}{before_s / seconds:>9.1f}x")


# ---------------------------------------------------------------------------------------------
# Small pages (the minute tick's): row by row in Python against the vectorized encoder
# ---------------------------------------------------------------------------------------------

SMALL_PAGE_SIZES = (1, 4, 20, 64, 100, 200, 400, 1000)


def small_page_schema() -> list[SchemaField]:
    """Glific's messages (the Glific layout, 39 columns) plus a RECORD and a REPEATED column: 41."""
    return [*page_schema("glific"), *(f for f in CONTACTS_SCHEMA if f.name in ("fields", "settings"))]


def small_page(schema: list[SchemaField], rows: int) -> pa.RecordBatch:
    messages = _page_batch(page_schema("glific"), rows, 21_001, np.random.default_rng(rows))
    contacts = contacts_batch(rows)
    return pa.record_batch([*messages.columns, contacts.column("fields"), contacts.column("settings")],
                           names=[f.name for f in schema])


def run_small(repeat: int) -> None:
    """ms per page of ``proto_rows`` on both paths (``SMALL_PAGE_ROWS`` forced each way), same run."""
    schema = small_page_schema()
    print(f"proto_rows per page, {len(schema)} columns (Glific messages + fields, settings), CPU ms, "
          f"best of {repeat}; the small path is used up to SMALL_PAGE_ROWS = {protorows.SMALL_PAGE_ROWS}")
    print(f"{'rows':>6}{'small path':>12}{'vectorized':>12}{'ratio':>8}")
    default = protorows.SMALL_PAGE_ROWS
    try:
        for rows in SMALL_PAGE_SIZES:
            batch = small_page(schema, rows)
            times, results = [], []
            for threshold in (rows, -1):  # the small path, then the vectorized one
                protorows.SMALL_PAGE_ROWS = threshold
                seconds, chunks = cpu_time(lambda b=batch: protorows.proto_rows(b, schema, 8 * 1024 * 1024),
                                           max(1, repeat if rows < 1000 else repeat // 10))
                times.append(seconds)
                results.append(chunks)
            if results[0] != results[1]:
                raise SystemExit(f"{rows} rows: the small path differs from the vectorized one")
            small_s, vector_s = times
            print(f"{rows:>6}{small_s * 1000:>12.2f}{vector_s * 1000:>12.2f}{vector_s / small_s:>7.1f}x")
    finally:
        protorows.SMALL_PAGE_ROWS = default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", choices=[*BATCHES, "all", "none"], default="all")
    parser.add_argument("--page", nargs="*", choices=("raw", "glific"), default=["raw", "glific"])
    parser.add_argument("--baseline", default=BASELINE, help="git revision whose append_requests is 'before'")
    parser.add_argument("--small", action="store_true", help="only the small-page comparison (both paths)")
    args = parser.parse_args()
    if args.small:
        run_small(args.repeat * 20)
        return
    for name in {"all": list(BATCHES), "none": []}.get(args.batch, [args.batch]):
        run(name, args.rows, args.repeat)
        print()
    for layout in args.page:
        run_page(layout, max(args.repeat, 10), args.baseline)
        print()


if __name__ == "__main__":
    main()
