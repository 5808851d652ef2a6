"""PostgreSQL → BigQuery types: the mapping, and values that must round-trip exactly."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from glific_bq.registry import TableSpec
from glific_bq.schema import Column, bigquery_column_name, reflect_columns, syncable_columns
from glific_bq.sync import sync_table

from .helpers import add_organization, warehouse_rows

ALL_TYPES_DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN phone AS varchar(20);
CREATE TABLE everything (
    id bigserial PRIMARY KEY,
    organization_id bigint NOT NULL,
    i2 smallint, i4 integer, i8 bigint,
    f4 real, f8 double precision,
    n numeric(10, 2), nu numeric, cash money,
    b boolean,
    t text, vc varchar(20), ch char(3), e mood, u uuid, p phone, ip inet,
    j json, jb jsonb,
    d date, tm time, ts timestamp, ts0 timestamp(0), tstz timestamptz,
    by bytea,
    ia integer[], ta text[], ja jsonb[],
    pt point,
    inserted_at timestamp(0) NOT NULL DEFAULT now(),
    updated_at timestamp NOT NULL DEFAULT now()
)
"""

EXPECTED_TYPES = {
    "i2": ("INT64", "NULLABLE"), "i4": ("INT64", "NULLABLE"), "i8": ("INT64", "NULLABLE"),
    "f4": ("FLOAT64", "NULLABLE"), "f8": ("FLOAT64", "NULLABLE"),
    "n": ("NUMERIC", "NULLABLE"), "nu": ("BIGNUMERIC", "NULLABLE"), "cash": ("BIGNUMERIC", "NULLABLE"),
    "b": ("BOOL", "NULLABLE"),
    "t": ("STRING", "NULLABLE"), "vc": ("STRING", "NULLABLE"), "ch": ("STRING", "NULLABLE"),
    "e": ("STRING", "NULLABLE"), "u": ("STRING", "NULLABLE"), "p": ("STRING", "NULLABLE"),
    "ip": ("STRING", "NULLABLE"), "j": ("STRING", "NULLABLE"), "jb": ("STRING", "NULLABLE"),
    "d": ("DATE", "NULLABLE"), "tm": ("TIME", "NULLABLE"), "ts": ("DATETIME", "NULLABLE"),
    "ts0": ("DATETIME", "NULLABLE"), "tstz": ("DATETIME", "NULLABLE"), "by": ("BYTES", "NULLABLE"),
    "ia": ("INT64", "REPEATED"), "ta": ("STRING", "REPEATED"), "ja": ("STRING", "REPEATED"),
    "pt": ("STRING", "NULLABLE"),
}

LONG = "ab😀" * 1667  # ~5,000 characters
TRICKY = "it's \"quoted\", back\\slash, tab\t, new\nline, नमस्ते, Habari, ação 😀🙏"


@pytest.fixture
def everything(db):
    db.execute(ALL_TYPES_DDL)
    return db


def test_every_column_type_maps_to_the_documented_bigquery_type(everything):
    columns, warnings = syncable_columns(reflect_columns(everything, "everything"), "everything")

    mapped = {c.name: (c.bigquery_type, c.schema_field().mode) for c in columns}
    assert {k: mapped[k] for k in EXPECTED_TYPES} == EXPECTED_TYPES
    assert warnings == ["everything.pt: unknown type point; sent as STRING"]


def test_values_round_trip_exactly_but_null_array_elements_and_bignumeric_columns(everything, source, warehouse_for):
    """Every value arrives as PostgreSQL shows it, with two exceptions. NULL elements of arrays
    are dropped: BigQuery arrays cannot hold NULL (docs/how-it-works.md, the type mapping).
    BIGNUMERIC columns (numeric without a precision that fits NUMERIC, money) are left out here:
    the emulator (DuckDB) cannot create them. Their encoding is tested in test_protorows, and
    their round trip only shows against real BigQuery."""
    everything.execute("ALTER TABLE everything DROP COLUMN nu, DROP COLUMN cash")
    org = add_organization(everything, timezone="Asia/Kolkata")
    insert = (
        "INSERT INTO everything (organization_id, i2, i4, i8, f4, f8, n, b, t, vc, ch, e, u, p, ip, "
        "j, jb, d, tm, ts, ts0, tstz, by, ia, ta, ja, pt) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s, %s::jsonb[], %s) RETURNING id"
    )
    full = (
        org.id, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793, Decimal("12345678.91"), True, TRICKY, "ação",
        "ab", "happy", "0e37df36-f698-11e6-8dd4-cb9ced3df976", "+91 98765 43210", "10.0.0.1",
        '{"a": {"b": [1, "ü", null]}}', '{"nested": {"list": [1, 2, {"x": "😀"}], "q": "it\'s"}}',
        date(2026, 3, 1), time(23, 59, 59, 999999), datetime(2026, 3, 1, 10, 0, 0, 123456),
        datetime(2026, 3, 1, 20, 0, 0), datetime.fromisoformat("2026-03-01T10:00:00+00:00"),
        b"\x00\x01\xff", [1, None, 3], ["x", "😀", ""], ['{"a": 1}'], "(1,2)",
    )
    empty = (org.id, 0, 0, 0, 0.0, 0.0, Decimal("0"), False, "", "", "",
             "sad", None, "", "10.1.0.0/16", "{}", "[]", None, None, None, None, None, b"", [], [], [], None)
    nulls = (org.id,) + (None,) * (len(full) - 1)
    ids = [everything.execute(insert, values).fetchone()[0] for values in (full, empty, nulls)]
    everything.execute("INSERT INTO everything (organization_id, t) VALUES (%s, %s)", (org.id, LONG))

    warehouse = warehouse_for(org)
    result = sync_table(source, warehouse, org, TableSpec("everything"))

    assert (result.status, result.inserted) == ("synced", 4)
    rows = {r["id"]: r for r in warehouse_rows(warehouse, "everything")}
    first = rows[ids[0]]
    assert (first["i2"], first["i4"], first["i8"]) == (-32768, 2147483647, -9223372036854775808)
    assert (first["f4"], first["f8"]) == (1.5, 3.141592653589793)
    assert first["n"] == Decimal("12345678.91")
    assert first["b"] is True
    # char(n) padding is not significant in PostgreSQL, and its text form drops it
    assert (first["t"], first["vc"], first["ch"], first["e"]) == (TRICKY, "ação", "ab", "happy")
    assert (first["u"], first["p"], first["ip"]) == ("0e37df36-f698-11e6-8dd4-cb9ced3df976", "+91 98765 43210", "10.0.0.1")
    assert first["j"] == '{"a": {"b": [1, "ü", null]}}'  # json keeps its text
    assert first["jb"] == '{"nested": {"q": "it\'s", "list": [1, 2, {"x": "😀"}]}}'  # jsonb's normal form
    assert (first["d"], first["tm"]) == (date(2026, 3, 1), time(23, 59, 59, 999999))
    # UTC in PostgreSQL, local time of the organization (Asia/Kolkata, +05:30) in BigQuery
    assert first["ts"] == datetime(2026, 3, 1, 15, 30, 0, 123456)
    assert first["ts0"] == datetime(2026, 3, 2, 1, 30, 0)
    assert first["tstz"] == datetime(2026, 3, 1, 15, 30, 0)
    assert first["by"] == b"\x00\x01\xff"
    assert (first["ia"], first["ta"], first["ja"]) == ([1, 3], ["x", "😀", ""], ['{"a": 1}'])  # [1, None, 3]: no NULLs
    assert first["pt"] == "(1,2)"

    second = rows[ids[1]]
    assert (second["t"], second["vc"], second["p"], second["by"], second["ip"]) == ("", "", "", b"", "10.1.0.0/16")
    assert (second["j"], second["jb"], second["ia"], second["ta"]) == ("{}", "[]", [], [])
    assert (second["i8"], second["f8"], second["b"], second["n"]) == (0, 0.0, False, Decimal("0"))

    third = rows[ids[2]]
    synced = [c for c in EXPECTED_TYPES if c in third]
    assert all(third[c] is None for c in synced if EXPECTED_TYPES[c][1] == "NULLABLE")
    assert all(third[c] == [] for c in synced if EXPECTED_TYPES[c][1] == "REPEATED")

    assert [r["t"] for r in rows.values() if r["t"] and len(r["t"]) > 1000] == [LONG]


def test_a_column_bigquery_cannot_name_as_it_is_is_synced_under_a_stable_legal_name(db, source, warehouse_for):
    db.execute('CREATE TABLE fields (id bigserial PRIMARY KEY, organization_id bigint NOT NULL, '
               '"Opt-in Source (web)" text, "bq_uuid" text, "2nd choice" text, '
               'inserted_at timestamp(0) NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now())')
    org = add_organization(db)
    db.execute('INSERT INTO fields (organization_id, "Opt-in Source (web)", bq_uuid, "2nd choice") '
               "VALUES (%s, 'whatsapp link', 'theirs', 'b')", (org.id,))
    warehouse = warehouse_for(org)

    result = sync_table(source, warehouse, org, TableSpec("fields"))

    assert (result.status, result.inserted) == ("synced", 1)
    (row,) = warehouse_rows(warehouse, "fields")
    assert row["Opt_in_Source_web_89c81eed"] == "whatsapp link"
    assert row[bigquery_column_name("2nd choice")] == "b" and bigquery_column_name("2nd choice").startswith("col_2nd_choice_")
    assert row[bigquery_column_name("bq_uuid")] == "theirs" and row["bq_uuid"] != "theirs"


def test_mapped_column_names_depend_on_the_name_alone():
    columns = [Column("id", "int8"), Column("Opt-in Source (web)", "text")]
    mapped, _ = syncable_columns(columns, "fields")
    again, _ = syncable_columns([Column("opt_in_source_web", "text"), *columns], "fields")

    assert mapped[1].target_name == again[2].target_name == "Opt_in_Source_web_89c81eed"
    assert [c.target_name for c in again[:2]] == ["opt_in_source_web", "id"]
