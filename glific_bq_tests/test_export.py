"""Exports against a real PostgreSQL and the BigQuery emulator: what the files hold is the source,
row for row, in its latest state; sheets split at the limit; date ranges; the Dagster job."""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import threading
import tracemalloc
import urllib.parse
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from glific_bq.defs.exports import export_job
from glific_bq.defs.resources import GlificPostgres
from glific_bq.export import (
    EXCEL_MAX_CHARS,
    TRUNCATION_MARKER,
    Destination,
    ExportError,
    export_tenant,
)
from glific_bq.local.sample_data import seed
from glific_bq.registry import TableSpec, table
from glific_bq.schema import reflect_columns, syncable_columns
from glific_bq.sync import sync_table
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse

from .helpers import add_notes, add_organization, bigquery_resource, warehouse_rows

NOTES = TableSpec("notes")
RECENTLY = "now() AT TIME ZONE 'UTC' - interval '1 minute'"  # older than the sync's horizon


def source_rows(conn, organization: Organization, name: str) -> list[dict]:
    """The source rows of one organization as BigQuery holds them (local DATETIMEs, JSON text…), by id."""
    columns, _ = syncable_columns(reflect_columns(conn, name), name)
    select = sql.SQL(", ").join(c.select_expression(sql.Literal(organization.timezone)) for c in columns)
    query = sql.SQL("SELECT {} FROM {} WHERE organization_id = %s ORDER BY id").format(select, sql.Identifier(name))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (organization.id,)).fetchall()


def as_csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def same_xlsx_cell(cell, value) -> bool:
    if isinstance(value, list):
        return cell == json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):  # Excel keeps milliseconds
        return isinstance(cell, datetime) and abs(cell - value) <= timedelta(milliseconds=1)
    return cell == value and type(cell) is type(value)


def sheet_rows(path: str, sheet: str) -> list[tuple]:
    """The sheet's values as Excel reads them. The file format stores control characters as
    ``_xHHHH_`` (and a literal ``_x`` as ``_x005F_x``); Excel decodes that, openpyxl does not."""
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(_xstring(v) for v in row) for row in workbook[sheet].iter_rows(values_only=True)]
    finally:
        workbook.close()


def _xstring(value):
    if not isinstance(value, str):
        return value
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def file_of(result, name: str, fmt: str):
    return next(f for f in result.files if f.table == name and f.format == fmt)


def test_every_format_holds_the_latest_source_rows_exactly(db, source, warehouse_for, tmp_path):
    seed(db, organizations=2, messages_per_org=40, contacts_per_org=10)
    org = get_organization(db, 1)
    warehouse = warehouse_for(org)
    exported = ["contacts", "messages", "flow_contexts"]
    for name in exported:
        sync_table(source, warehouse, org, table(name))
    (contact_id,) = db.execute("SELECT id FROM contacts WHERE organization_id = 1 ORDER BY id OFFSET 1 LIMIT 1").fetchone()
    db.execute(f"UPDATE contacts SET name = 'Zoë 🌱 नई', optin_method = NULL, updated_at = {RECENTLY} WHERE id = %s",
               (contact_id,))
    odd = ["=1+1", "", "  leading, \"quoted\"\nand trailing  ", "ok 👍🏽 ✅ हाँ", None]
    message_ids = [r[0] for r in db.execute("SELECT id FROM messages WHERE organization_id = 1 ORDER BY id LIMIT 5")]
    for message_id, body in zip(message_ids, odd):
        db.execute(f"UPDATE messages SET body = %s, errors = NULL, updated_at = {RECENTLY} WHERE id = %s", (body, message_id))
    for name in exported:
        sync_table(source, warehouse, org, table(name))
    assert [r["name"] for r in warehouse_rows(warehouse, "contacts") if r["id"] == contact_id][-1] == "Zoë 🌱 नई"
    assert len([r for r in warehouse_rows(warehouse, "contacts") if r["id"] == contact_id]) == 2

    result = export_tenant(warehouse, exported, destination=tmp_path)

    for name in exported:
        expected = source_rows(db, org, name)
        header = list(expected[0])
        assert result.rows[name] == len(expected)

        parquet = pq.read_table(file_of(result, name, "parquet").uri)
        assert parquet.column_names == header and parquet.to_pylist() == expected

        csv = pd.read_csv(file_of(result, name, "csv").uri, dtype=str, keep_default_na=False)
        assert list(csv.columns) == header
        assert csv.to_dict("records") == [{k: as_csv_text(v) for k, v in row.items()} for row in expected]

        xlsx = file_of(result, name, "xlsx")
        assert xlsx.sheets == (name,) and xlsx.truncated_cells == 0
        (names, *cells) = sheet_rows(xlsx.uri, name)
        assert list(names) == header and len(cells) == len(expected)
        for row, want in zip(cells, expected):
            mismatched = {k: (cell, v) for cell, (k, v) in zip(row, want.items()) if not same_xlsx_cell(cell, v)}
            assert not mismatched, (want["id"], mismatched)
    assert Path(result.manifest).name == "manifest.json"
    assert json.loads(Path(result.manifest).read_text())["rows"] == result.rows
    assert not list(Path(result.location).glob("*.part"))


def test_a_table_past_the_sheet_limit_continues_on_numbered_sheets(notes, source, warehouse_for, tmp_path):
    org = add_organization(notes)
    ids = add_notes(notes, org, [f"note {i}" for i in range(11)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)

    result = export_tenant(warehouse, [NOTES], formats=["xlsx"], destination=tmp_path, xlsx_max_rows=5)

    xlsx = file_of(result, "notes", "xlsx")
    assert xlsx.sheets == ("notes", "notes (2)", "notes (3)") and xlsx.rows == 11
    sheets = [sheet_rows(xlsx.uri, sheet) for sheet in xlsx.sheets]
    assert [len(rows) for rows in sheets] == [5, 5, 4]  # header + 4, header + 4, header + 3
    assert all(rows[0][:3] == ("id", "organization_id", "body") for rows in sheets)
    assert [row[0] for rows in sheets for row in rows[1:]] == ids


def test_text_past_excels_cell_limit_is_cut_with_a_marker_counted_and_kept_whole_in_csv(notes, source, warehouse_for, tmp_path):
    org = add_organization(notes)
    long = "🙂" + "क" * 40_000
    add_notes(notes, org, [long, "short"])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)

    result = export_tenant(warehouse, [NOTES], formats=["csv", "xlsx"], destination=tmp_path)

    xlsx = file_of(result, "notes", "xlsx")
    assert xlsx.truncated_cells == 1 and result.truncated_cells == 1
    (_, first, second) = sheet_rows(xlsx.uri, "notes")
    cut = first[2]
    assert cut.endswith(TRUNCATION_MARKER) and long.startswith(cut[: -len(TRUNCATION_MARKER)])
    assert len(cut.encode("utf-16-le")) // 2 == EXCEL_MAX_CHARS
    assert second[2] == "short"
    csv = pd.read_csv(file_of(result, "notes", "csv").uri, dtype=str, keep_default_na=False)
    assert list(csv["body"]) == [long, "short"]


def test_a_date_range_keeps_rows_inserted_on_those_local_days(notes, source, warehouse_for, tmp_path):
    org = add_organization(notes, timezone="Asia/Kolkata")  # UTC+05:30
    ids = add_notes(notes, org, ["day 1", "day 2 (UTC day 1)", "day 3", "day 4"])
    utc = ["2026-01-01 12:00", "2026-01-01 20:00", "2026-01-03 18:29:59", "2026-01-03 18:30"]
    for note_id, inserted in zip(ids, utc):
        notes.execute("UPDATE notes SET inserted_at = %s WHERE id = %s", (inserted, note_id))
    notes.execute("DROP TABLE tags CASCADE")  # Glific's, with inserted_at: this test wants a table without
    notes.execute("CREATE TABLE tags (id bigserial PRIMARY KEY, organization_id bigint NOT NULL, label text, "
                  f"updated_at timestamp NOT NULL DEFAULT ({RECENTLY}))")
    notes.execute("INSERT INTO tags (organization_id, label) VALUES (%s, 'a'), (%s, 'b')", (org.id, org.id))
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    sync_table(source, warehouse, org, TableSpec("tags"))

    result = export_tenant(warehouse, [NOTES, "tags"], formats=["csv"], destination=tmp_path,
                           date_from=date(2026, 1, 2), date_to=date(2026, 1, 3))

    csv = pd.read_csv(file_of(result, "notes", "csv").uri, dtype=str, keep_default_na=False)
    assert list(csv["body"]) == ["day 2 (UTC day 1)", "day 3"]
    assert list(csv["inserted_at"]) == ["2026-01-02T01:30:00", "2026-01-03T23:59:59"]
    assert result.whole_tables == ["tags"] and result.rows["tags"] == 2

    nothing = export_tenant(warehouse, [NOTES], formats=["csv", "parquet"], destination=tmp_path,
                            date_from=date(2027, 1, 1))
    assert nothing.rows == {"notes": 0}
    assert Path(file_of(nothing, "notes", "csv").uri).read_text().splitlines()[0].startswith('"id","organization_id"')
    assert pq.read_table(file_of(nothing, "notes", "parquet").uri).num_rows == 0


def test_a_large_table_is_read_in_id_windows_each_id_once_in_its_latest_version(notes, source, warehouse_for, tmp_path,
                                                                                monkeypatch):
    from glific_bq.export import reading

    org = add_organization(notes)
    ids = add_notes(notes, org, [f"n{i}" for i in range(25)])
    warehouse = warehouse_for(org)
    sync_table(source, warehouse, org, NOTES)
    notes.execute(f"UPDATE notes SET body = body || ' edited', updated_at = {RECENTLY} WHERE id = ANY(%s)", (ids[::3],))
    sync_table(source, warehouse, org, NOTES)
    assert len(warehouse_rows(warehouse, "notes")) == 25 + len(ids[::3])
    windows = []  # (first id, end id) of each query that read rows, as BigQuery was asked
    real_query = reading._query

    def observed(warehouse, statement, params, page_size=None):
        bounds = {p.name: p.value for p in params if p.name in ("first_id", "end_id")}
        if page_size is not None:
            windows.append((bounds.get("first_id"), bounds.get("end_id")))
        return real_query(warehouse, statement, params, page_size)

    monkeypatch.setattr(reading, "_query", observed)

    result = export_tenant(warehouse, [NOTES], formats=["parquet"], destination=tmp_path, query_rows=7, page_rows=3)

    rows = pq.read_table(file_of(result, "notes", "parquet").uri).to_pylist()
    assert [r["id"] for r in rows] == ids
    assert [r["body"] for r in rows] == [f"n{i}" + (" edited" if i % 3 == 0 else "") for i in range(25)]
    # 34 versions at 7 a query: 5 windows, adjacent, covering every id exactly once
    assert len(windows) == 5 and windows[0][0] == ids[0] and windows[-1][1] == ids[-1] + 1
    assert all(end == start for (_, end), (start, _) in zip(windows, windows[1:]))


def test_rows_of_another_organization_stop_the_export(notes, source, warehouse_for, tmp_path):
    mine, other = add_organization(notes), add_organization(notes)
    add_notes(notes, other, ["not yours"])
    sync_table(source, warehouse_for(mine), other, NOTES)  # a mis-routed write

    with pytest.raises(ExportError, match="another organization"):
        export_tenant(warehouse_for(mine), [NOTES], destination=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no partial files left


def test_tables_not_in_bigquery_yet_are_skipped_with_a_reason(notes, warehouse_for, tmp_path):
    org = add_organization(notes)

    result = export_tenant(warehouse_for(org), [NOTES], destination=tmp_path)

    assert result.skipped == {"notes": "not in BigQuery yet"} and result.files == []


def test_invalid_options_are_refused_before_anything_is_written(warehouse_for, tmp_path):
    warehouse = warehouse_for(Organization(1, "org", "UTC", True))
    with pytest.raises(ValueError, match="format"):
        export_tenant(warehouse, formats=["pdf"], destination=tmp_path)
    with pytest.raises(ValueError, match="after"):
        export_tenant(warehouse, destination=tmp_path, date_from=date(2026, 2, 1), date_to=date(2026, 1, 1))
    with pytest.raises(ValueError, match="bucket"):
        export_tenant(warehouse, destination="gs://", date_from=None)
    assert not list(tmp_path.iterdir())


def test_cloud_storage_destinations_name_objects_under_dataset_and_timestamp():
    assert Destination.parse("exports") == Destination("exports")
    assert Destination.parse("gs://my-bucket") == Destination("", "my-bucket")
    under = Destination.parse("gs://my-bucket/glific/exports/")
    assert under == Destination("glific/exports", "my-bucket")
    assert under.folder("glific_1", "20260101T000000Z") == "gs://my-bucket/glific/exports/glific_1/20260101T000000Z"
    assert under.object_name("glific_1", "20260101T000000Z", "messages.csv") == "glific/exports/glific_1/20260101T000000Z/messages.csv"
    assert Destination("", "b").object_name("d", "t", "f.csv") == "d/t/f.csv"
    for bad in ("gs://", "gs://UPPER/x", "gs://b/../x", "s3://bucket/x"):
        with pytest.raises(ValueError):
            Destination.parse(bad)


class TokenServer:
    """Google's OAuth token endpoint, locally: a service account's signed assertion buys a token
    naming that account (``token-of-<client_email>``); who asked is recorded."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                email = _jwt_claims(form["assertion"][0])["iss"]
                server.asked.append(email)
                body = json.dumps({"access_token": f"token-of-{email}", "expires_in": 3600,
                                   "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _caller(authorization: str | None) -> str | None:
    """The service account a request authenticated as: a token from ``TokenServer``, or a
    self-signed JWT; None for an anonymous request."""
    if not authorization:
        return None
    token = authorization.removeprefix("Bearer ")
    return token.removeprefix("token-of-") if token.startswith("token-of-") else _jwt_claims(token)["iss"]


@pytest.fixture
def cloud_storage(tmp_path, monkeypatch):
    """The local Cloud Storage (``storage_emulator.LocalStorage``), where the Google client goes."""
    from .storage_emulator import LocalStorage

    storage = LocalStorage(tmp_path / "storage-requests.jsonl")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
    yield storage
    storage.close()


def test_an_export_to_cloud_storage_is_uploaded_with_the_organizations_own_key_in_bounded_chunks(
    notes, source, warehouse_config, cloud_storage, tmp_path, monkeypatch
):
    """Glific's rule: the organization's key, saved in Glific, signs every Cloud Storage request of
    its export, never the platform's (Application Default Credentials, here a key of its own).
    A large file goes up in chunks of ``UPLOAD_CHUNK_BYTES``: memory bounded by the chunk, not
    the file. Scaled down: chunks (and the client's one-request limit) of 1 MiB for a 6 MB file."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.storage import blob as storage_blob

    from glific_bq.cloak import Vault
    from glific_bq.export import destinations
    from glific_bq.local import glific_writes
    from glific_bq.warehouse import clients
    from glific_bq.warehouse import config as warehouse_config_module

    tokens = TokenServer()
    vault_key = base64.b64encode(os.urandom(32)).decode()
    org = add_organization(notes)
    own = {**glific_writes.service_account_key("ngo-exports"), "token_uri": tokens.url,
           "client_email": "exports@ngo-exports.iam.gserviceaccount.com"}
    glific_writes.bigquery_credential(notes, org.id, own, Vault.from_env({"CIPHER_KEY": vault_key}))
    platform_key = tmp_path / "platform.json"
    platform_key.write_text(json.dumps({**own, "client_email": "platform@glific-platform.iam.gserviceaccount.com"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(platform_key))
    config = replace(warehouse_config, organizations="glific", cipher_key=vault_key)
    org = get_organization(notes, org.id)  # with its credential
    add_notes(notes, org, [os.urandom(10_000).hex() for _ in range(300)])  # 20 kB each: a 6 MB CSV
    sync_table(source, Warehouse(config, org), org, NOTES)
    # From here on, the organization's clients as in production: its key's credentials (the emulators
    # take any), not the anonymous ones the emulator configuration gives.
    clients.close_all()
    monkeypatch.setattr(clients, "credentials_for", lambda config, organization: warehouse_config_module.credentials_for(
        replace(config, emulator_host=None), organization))
    admin = storage.Client(project="test", credentials=AnonymousCredentials())
    admin.create_bucket("ngo-exports-bucket")
    monkeypatch.setattr(destinations, "UPLOAD_CHUNK_BYTES", 1024 * 1024)
    monkeypatch.setattr(storage_blob, "_MAX_MULTIPART_SIZE", 1024 * 1024)
    held = {}  # file -> (its size, the most memory its upload held)
    real_publish = destinations._Location.publish

    def measured(location, path, filename):
        size = path.stat().st_size
        tracemalloc.start()
        try:
            return real_publish(location, path, filename)
        finally:
            held[filename] = (size, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(destinations._Location, "publish", measured)
    before = len(cloud_storage.requests())
    warehouse = Warehouse(config, org)
    try:
        result = export_tenant(warehouse, [NOTES], formats=["csv"], destination="gs://ngo-exports-bucket/glific")
    finally:
        clients.close_all()
        tokens.close()

    sent = cloud_storage.requests()[before:]
    assert sent and {_caller(r["authorization"]) for r in sent} == {own["client_email"]}
    assert "platform@glific-platform.iam.gserviceaccount.com" not in tokens.asked
    csv = admin.bucket("ngo-exports-bucket").blob(file_of(result, "notes", "csv").uri.split("/", 3)[3])
    assert csv.download_as_bytes().decode().count("\n") == 301
    size, peak = held["notes.csv"]
    assert size > 6_000_000 and peak < 3 * 1024 * 1024, f"{peak:,} bytes held to upload {size:,}"
    chunks = [r for r in sent if r["method"] == "PUT" and r["content_range"]]
    assert len(chunks) >= size // (1024 * 1024)


def test_export_job_records_each_file_with_its_row_count(db, source, database_url, warehouse_config, warehouse_for, tmp_path):
    seed(db, organizations=1, messages_per_org=20, contacts_per_org=5)
    org = get_organization(db, 1)
    for name in ("contacts", "tickets"):
        sync_table(source, warehouse_for(org), org, table(name))
    resources = {
        "postgres": GlificPostgres(database_url=database_url),
        "bigquery": bigquery_resource(warehouse_config),
    }
    config = {"organization_id": 1, "tables": ["contacts", "tickets"], "formats": ["csv", "xlsx"], "destination": str(tmp_path)}

    result = export_job.execute_in_process(run_config={"ops": {"export_organization": {"config": config}}},
                                           resources=resources, instance=dg.DagsterInstance.ephemeral())

    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    counts = {name: db.execute(f"SELECT count(*) FROM {name} WHERE organization_id = 1").fetchone()[0]
              for name in ("contacts", "tickets")}
    assert metadata["total_rows"].value == sum(counts.values())
    for name, rows in counts.items():
        path = metadata[f"{name}.csv"].value
        assert Path(path).is_file() and len(pd.read_csv(path)) == rows
        assert f"| {name} | csv | {rows:,} | {path} |" in metadata["files"].value
    workbook = metadata[f"{warehouse_config.dataset_for(org)}.xlsx"].value
    assert f"| tickets | xlsx | {counts['tickets']:,} | {workbook} (tickets) |" in metadata["files"].value
    assert Path(metadata["manifest.json"].value).is_file()

    config["tables"] = ["nonexistent"]
    refused = export_job.execute_in_process(run_config={"ops": {"export_organization": {"config": config}}},
                                            resources=resources, raise_on_error=False)
    assert not refused.success
