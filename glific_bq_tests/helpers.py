"""Small helpers the tests share: building tenants and rows, reading BigQuery back."""

from __future__ import annotations

import http.server
import itertools
import json
import threading

import psycopg

from glific_bq.defs.resources import GlificBigQuery
from glific_bq.local import glific_writes
from glific_bq.roster import select_tenants
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse, WarehouseConfig
from glific_bq.warehouse.config import ENVIRONMENT, destination

_names = itertools.count(1)

NOTES_DDL = """
CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES organizations (id),
    body text,
    payload jsonb,
    inserted_at timestamp(0) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC') - interval '1 hour',
    updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC') - interval '1 hour'
)
"""


def add_organization(conn: psycopg.Connection, timezone: str | None = "UTC") -> Organization:
    """An organization created the Glific way (BSP, default language, its own WhatsApp contact)."""
    n = next(_names)
    organization_id = glific_writes.organization(conn, f"Org {n}", f"org{n}", f"9190000{n:05d}", timezone=timezone)
    return get_organization(conn, organization_id)


#: Where simulated watermarks point (tests that move watermarks by hand, without a sync).
SIMULATED = "raw:simulated.dataset"


def everyone(conn: psycopg.Connection) -> dict[int, str]:
    """Every organization as a tenant synced to ``SIMULATED``, for planning and alerting tests
    that move watermarks by hand (``destinations`` for tests whose rows a real sync sent)."""
    return {row[0]: SIMULATED for row in conn.execute("SELECT id FROM organizations ORDER BY id")}


def destinations(conn: psycopg.Connection, config: WarehouseConfig) -> dict[int, str]:
    """The tenants and where their rows go, as the tick plans them (``glific_bq.roster``)."""
    return select_tenants(conn, config).destinations


def destination_of(config: WarehouseConfig, organization: Organization) -> str:
    """Where ``config`` sends ``organization``'s rows (its ``project``: the ``active`` rule's)."""
    return destination(config.layout, config.project, config.dataset_for(organization))


def add_notes(conn: psycopg.Connection, organization: Organization, bodies: list[str | None]) -> list[int]:
    """Insert one note per body; returns their ids."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO notes (organization_id, body, payload) VALUES (%s, %s, '{\"k\": 1}') RETURNING id",
            [(organization.id, body) for body in bodies],
            returning=True,
        )
        ids = []
        while True:
            ids.append(cur.fetchone()[0])
            if not cur.nextset():
                return ids


def warehouse_rows(warehouse: Warehouse, table: str) -> list[dict]:
    """Every row version in the organization's copy of ``table``, by id then send time."""
    return warehouse.query(f"SELECT * FROM `{warehouse.dataset_ref}.{table}` ORDER BY id, bq_inserted_at")


def latest_versions(rows: list[dict]) -> dict[int, dict]:
    """The newest version of each id: the one sent last."""
    latest: dict[int, dict] = {}
    for row in rows:
        current = latest.get(row["id"])
        if current is None or (row["bq_inserted_at"], row["bq_uuid"]) > (current["bq_inserted_at"], current["bq_uuid"]):
            latest[row["id"]] = row
    return latest


def bigquery_resource(config: WarehouseConfig, **overrides) -> GlificBigQuery:
    """The Dagster resource holding exactly ``config`` (the emulator's, in tests)."""
    fields = {name: getattr(getattr(config, name), "value", getattr(config, name)) for name in ENVIRONMENT}
    return GlificBigQuery(**{**{name: value for name, value in fields.items() if value is not None}, **overrides})


class Webhook:
    """A local Slack-like incoming webhook: records every POST."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict] = []
        self.status = status
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append({"path": self.path, "content_type": self.headers["Content-Type"], "json": json.loads(body)})
                reply = b"ok" if hook.status == 200 else b"no_service"
                self.send_response(hook.status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/SECRETPART"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def texts(self) -> list[str]:
        return [post["json"]["text"] for post in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
