"""RECORD columns end to end: Glific's nested contact columns, encoded by ``protorows``, appended to the
BigQuery emulator through the Storage Write API's default stream, and read back by queries (whole
rows, ``UNNEST(fields)``, ``UNNEST(settings.values)``) with every value unchanged.

The schema is contacts' RECORD columns as Glific declares them (shared/reference/glific-bigquery-schema.json);
``profiles.fields`` and ``wa_groups.fields`` have the shape of ``contacts.fields``. The emulator needs
patch 4 of ``glific_bq/local/bigquery_emulator.py`` for any of this: without it every append to a
table with a RECORD column fails.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import google.auth.credentials
import grpc
import pyarrow as pa
import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import grpc as write_grpc

from glific_bq.local.bigquery_emulator import LocalBigQuery
from glific_bq.protorows import arrow_schema, descriptor_for, serialize

FIELDS = SchemaField("fields", "RECORD", mode="REPEATED", fields=[
    SchemaField("label", "STRING"),
    SchemaField("value", "STRING"),
    SchemaField("type", "STRING"),
    SchemaField("inserted_at", "DATETIME"),
])
SETTINGS = SchemaField("settings", "RECORD", fields=[
    SchemaField("label", "STRING"),
    SchemaField("values", "RECORD", mode="REPEATED", fields=[
        SchemaField("key", "STRING"),
        SchemaField("value", "STRING"),
    ]),
])
GROUPS = SchemaField("groups", "RECORD", mode="REPEATED", fields=[
    SchemaField("label", "STRING", mode="REQUIRED"),
    SchemaField("description", "STRING"),
])
TAGS = SchemaField("tags", "RECORD", mode="REPEATED", fields=[SchemaField("label", "STRING", mode="REQUIRED")])
SCHEMA = [
    SchemaField("id", "INTEGER", mode="REQUIRED"),
    SchemaField("name", "STRING"),
    SchemaField("inserted_at", "DATETIME"),
    FIELDS,
    SETTINGS,
    GROUPS,
    TAGS,
]

d = dt.datetime
ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Priya",
        "inserted_at": d(2024, 3, 31, 18, 30, 0, 123456),
        "fields": [
            {"label": "Age Group", "value": "19 or above", "type": "string",
             "inserted_at": d(2024, 3, 31, 23, 59, 59, 999999)},
            {"label": "नाम", "value": "प्रिया 🙏🏽", "type": None, "inserted_at": d(1, 1, 1)},
            {"label": None, "value": None, "type": None, "inserted_at": d(9999, 12, 31, 23, 59, 59, 999999)},
            {},
        ],
        "settings": {"label": "languages", "values": [{"key": "hi", "value": "हिन्दी"}, {"key": "", "value": None}]},
        "groups": [{"label": "Optin", "description": 'say "hi" \\ 😀'}, {"label": "", "description": None}],
        "tags": [{"label": "vip"}],
    },
    {"id": 2, "name": None, "inserted_at": None, "fields": [], "settings": {"label": None, "values": []},
     "groups": None, "tags": []},
    {"id": 3, "name": "", "inserted_at": d(1970, 1, 1), "fields": None, "settings": None, "groups": [], "tags": None},
    {
        "id": 4,
        "name": "Wanjiru",
        "inserted_at": d(2026, 1, 1, 0, 0, 0, 1),
        "fields": [{"label": "Kaunti", "value": "Nairobi " * 500, "type": "string", "inserted_at": d(2026, 1, 1)}],
        "settings": {"label": None, "values": [{}]},
        "groups": [{"label": "Mkulima", "description": "wakulima wa chai ☕"}],
        "tags": [{"label": "vip"}, {"label": "new"}],
    },
]


def complete(field: SchemaField, value: Any) -> Any:
    """What BigQuery returns for an input value: every subfield of a record, NULL lists as []."""
    if field.mode == "REPEATED":
        return [complete(SchemaField(field.name, field.field_type, fields=field.fields), v) for v in value or []]
    if field.field_type != "RECORD" or value is None:
        return value
    return {sub.name: complete(sub, value.get(sub.name)) for sub in field.fields}


@pytest.fixture(scope="module")
def contacts(bigquery_emulator: LocalBigQuery) -> Iterator[tuple[bigquery.Client, str]]:
    """A contacts table with Glific's RECORD columns, holding ROWS appended over the Storage Write API."""
    emulator = bigquery_emulator
    client = bigquery.Client(
        project=emulator.project,
        credentials=google.auth.credentials.AnonymousCredentials(),
        client_options={"api_endpoint": emulator.rest_url},
    )
    dataset = f"nested_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    table = f"{emulator.project}.{dataset}.contacts"
    client.create_table(bigquery.Table(table, schema=SCHEMA))

    batch = pa.Table.from_pylist(ROWS, schema=arrow_schema(SCHEMA)).to_batches()[0]
    stream = f"projects/{emulator.project}/datasets/{dataset}/tables/contacts/streams/_default"
    # Two requests on one connection: the writer schema travels in the first only, as in production.
    requests = [
        types.AppendRowsRequest(
            write_stream=stream,  # the emulator wants it on every request; BigQuery accepts that
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=descriptor_for(SCHEMA)) if first else None,
                rows=types.ProtoRows(serialized_rows=serialize(part, SCHEMA)),
            ),
        )
        for first, part in [(True, batch.slice(0, 2)), (False, batch.slice(2))]
    ]
    channel = grpc.insecure_channel(emulator.grpc_endpoint)
    try:
        writer = BigQueryWriteClient(transport=write_grpc.BigQueryWriteGrpcTransport(channel=channel))
        responses = list(writer.append_rows(iter(requests)))
    finally:
        channel.close()
    assert [(r.error.code, list(r.row_errors)) for r in responses] == [(0, []), (0, [])]
    yield client, table
    client.delete_dataset(dataset, delete_contents=True)
    client.close()


def query(client: bigquery.Client, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in client.query(sql).result()]


def test_whole_rows_read_back_unchanged(contacts: tuple[bigquery.Client, str]) -> None:
    client, table = contacts
    got = [dict(row) for row in client.query(f"SELECT * FROM `{table}` ORDER BY id").result()]
    assert got == [{f.name: complete(f, row.get(f.name)) for f in SCHEMA} for row in ROWS]


def test_unnest_fields_gives_every_element_in_order_with_its_datetime(contacts: tuple[bigquery.Client, str]) -> None:
    client, table = contacts
    got = query(
        client,
        f"SELECT c.id, f.label, f.value, f.type, f.inserted_at "
        f"FROM `{table}` AS c, UNNEST(c.fields) AS f WITH OFFSET AS position ORDER BY c.id, position",
    )
    assert got == [
        (row["id"], element["label"], element["value"], element["type"], element["inserted_at"])
        for row in ROWS
        for element in complete(FIELDS, row["fields"])
    ]
    assert got[0][4] == d(2024, 3, 31, 23, 59, 59, 999999)  # a DATETIME inside a record, to the microsecond


def test_unnest_settings_values_reaches_the_nested_record(contacts: tuple[bigquery.Client, str]) -> None:
    client, table = contacts
    got = query(
        client,
        f"SELECT c.id, c.settings.label, v.key, v.value "
        f"FROM `{table}` AS c, UNNEST(c.settings.values) AS v WITH OFFSET AS position ORDER BY c.id, position",
    )
    assert got == [(1, "languages", "hi", "हिन्दी"), (1, "languages", "", None), (4, None, None, None)]


def test_records_filter_and_aggregate_like_any_column(contacts: tuple[bigquery.Client, str]) -> None:
    client, table = contacts
    tagged = query(
        client,
        f"SELECT id FROM `{table}` WHERE EXISTS (SELECT 1 FROM UNNEST(tags) AS t WHERE t.label = 'vip') ORDER BY id",
    )
    assert tagged == [(1,), (4,)]
    counts = query(
        client,
        f"SELECT id, ARRAY_LENGTH(fields), ARRAY_LENGTH(groups), settings IS NULL FROM `{table}` ORDER BY id",
    )
    assert counts == [(1, 4, 2, False), (2, 0, 0, False), (3, 0, 0, True), (4, 1, 1, False)]
