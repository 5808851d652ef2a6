"""RECORD columns: the extract produces them as JSON text (PostgreSQL builds the array of
objects); here they become Arrow structs and lists of structs, typed by the BigQuery schema.

A DATETIME inside a record (Glific's ``fields[].inserted_at``) arrives as the ISO-8601 text the
source stores (UTC, ``Z`` or an offset, or naive UTC) and is converted to the organization's
local time; text that does not parse becomes NULL, as in Glific.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
from google.cloud.bigquery import SchemaField

from glific_bq.protorows import arrow_type


def decode(rows: pa.Table, schema: Sequence[SchemaField], names: Sequence[str], timezone_name: str) -> pa.Table:
    """``rows`` with each column of ``names`` (JSON text) replaced by its RECORD value."""
    if not names:
        return rows
    by_name = {f.name: f for f in schema}
    zone = ZoneInfo(timezone_name)
    for name in names:
        field = by_name[name]
        index = rows.schema.get_field_index(name)
        values = [_value(text, field, zone) for text in rows.column(name).to_pylist()]
        rows = rows.set_column(index, name, pa.array(values, type=arrow_type(field)))
    return rows


def _value(text: str | None, field: SchemaField, zone: ZoneInfo):
    if text is None:
        return [] if field.mode == "REPEATED" else None
    value = json.loads(text)
    if field.mode == "REPEATED":
        return [_record(v, field.fields, zone) for v in (value if isinstance(value, list) else [value])]
    return _record(value, field.fields, zone)


def _record(value, fields: Sequence[SchemaField], zone: ZoneInfo) -> dict | None:
    if not isinstance(value, dict):
        return None
    record = {}
    for field in fields:
        item = value.get(field.name)
        if field.field_type in ("RECORD", "STRUCT"):
            items = item if isinstance(item, list) else ([] if item is None else [item])
            record[field.name] = ([_record(v, field.fields, zone) for v in items] if field.mode == "REPEATED"
                                  else _record(item, field.fields, zone))
        elif field.field_type == "DATETIME":
            record[field.name] = _local_datetime(item, zone)
        elif item is None or isinstance(item, str):
            record[field.name] = item
        else:
            record[field.name] = json.dumps(item, ensure_ascii=False) if field.field_type == "STRING" else item
    return record


def _local_datetime(text, zone: ZoneInfo) -> datetime | None:
    """ISO-8601 text (UTC unless it says otherwise) as a naive local datetime; None if unparseable."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).replace(tzinfo=None)
