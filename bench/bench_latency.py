"""End-to-end latency under the running schedule: from a row's commit in PostgreSQL to the row in
BigQuery, with the demo stack (embedded PostgreSQL, the emulator, ``dagster dev`` with
``sync_every_minute`` running, the traffic simulator adding load), in the layout the demo runs:
Glific's (the first organization with BigQuery on, its dataset named after its bot's phone, in
its key's project).

A marker message is committed every few seconds for ``--minutes``, once the demo has created
Glific's schema and turned BigQuery on; each one's latency is the time from its commit to its
``bq_inserted_at`` (the sync's send time, in the organization's local time in this layout), and
to the moment a query first sees it. The minute cadence bounds it: expect about 30 s on average
and a little over 60 s at worst, plus the run's own start-up.

    python bench/bench_latency.py [--minutes 5] [--every 7]

Smoke size (``glific_bq_tests/test_bench_smoke.py``): ``--minutes 0.1 --every 3``; it waits for
the first scheduled sync, so it takes about two minutes whatever the size.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glific_bq.layouts import Layout  # noqa: E402
from glific_bq.local import glific_writes  # noqa: E402
from glific_bq.local.sample_data import DEMO_CIPHER_KEY  # noqa: E402
from glific_bq.roster import Tenant, select_tenants  # noqa: E402
from glific_bq.warehouse import WarehouseConfig  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
MARKER = "latency-marker-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--every", type=float, default=7, help="seconds between marker commits")
    parser.add_argument("--port", type=int, default=3300)
    parser.add_argument("--bigquery-port", type=int, default=9350)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    demo = subprocess.Popen(
        [sys.executable, "-m", "glific_bq.local.demo", "--state-dir", str(state), "--port", str(args.port),
         "--bigquery-port", str(args.bigquery_port), "--traffic-rate", "5"],
        cwd=PROJECT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres:@/postgres?host={state / 'postgres'}"
    emulator = f"http://127.0.0.1:{args.bigquery_port}"
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}
    try:
        conn = _wait_for(lambda: _ready(url), "the demo's database (Glific's schema, BigQuery turned on)")
        tenant = _first_tenant(conn, emulator)
        local = ZoneInfo(tenant.organization.timezone)
        bot, contact = conn.execute(
            "SELECT o.contact_id, c.id FROM organizations o JOIN contacts c ON c.organization_id = o.id "
            "AND c.id <> o.contact_id WHERE o.id = %s ORDER BY c.id LIMIT 1", (tenant.id,)).fetchone()
        table = f"`{tenant.project}.{tenant.dataset}.messages`"
        client = bigquery.Client(project=tenant.project, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": emulator})
        print(f"markers into organization {tenant.id} ({tenant.organization.timezone}): {table}", flush=True)
        deadline = time.time() + args.minutes * 60
        next_marker = time.time()
        n = 0
        while time.time() < deadline or (len(seen) < len(committed) and time.time() < deadline + 150):
            if time.time() >= next_marker and time.time() < deadline:
                body = f"{MARKER}{n}"
                glific_writes.message(conn, tenant.id, contact, bot, inbound=True, body=body)
                committed[body] = time.time()  # autocommit: committed when it returns
                n += 1
                next_marker += args.every
            try:
                rows = client.query(
                    f"SELECT body, MIN(bq_inserted_at) AS sent FROM {table} "
                    f"WHERE STARTS_WITH(body, '{MARKER}') GROUP BY body"
                ).result()
                now = time.time()
                for row in rows:
                    seen.setdefault(row["body"], now)
                    sent.setdefault(row["body"], row["sent"].replace(tzinfo=local).timestamp())
            except Exception:  # the dataset does not exist before the first sync
                pass
            time.sleep(1)
        missing = sorted(set(committed) - set(seen))
        if missing:  # say why, before the stack goes
            print("not arrived:", missing)
            print("watermark:", conn.execute(
                'SELECT table_id, last_updated_at, last_updated_id, failures, last_error FROM glific_bq_watermarks '
                "WHERE organization_id = %s AND \"table\" = 'messages'", (tenant.id,)).fetchone())
            print("their rows:", conn.execute(
                "SELECT id, inserted_at, updated_at FROM messages WHERE body = ANY(%s)", (missing,)).fetchall())
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
    to_sent = [sent[b] - committed[b] for b in committed if b in sent]
    to_seen = [seen[b] - committed[b] for b in committed if b in seen]
    print(f"{len(committed)} markers committed over {args.minutes} min, {len(to_seen)} arrived "
          f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, traffic 5 changes/s, "
          "Glific layout)")
    for name, values in (("commit → sent (bq_inserted_at)", to_sent), ("commit → visible to a query", to_seen)):
        if values:
            p95 = statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]
            print(f"{name:32} p50 {statistics.median(values):5.1f} s   p95 {p95:5.1f} s   max {max(values):5.1f} s")
    sys.exit(0 if committed and len(to_seen) == len(committed) else 1)


def _ready(url: str) -> psycopg.Connection:
    """A connection once the demo has created Glific's schema and turned BigQuery on (its sample
    data and credentials are written before the emulator and Dagster start)."""
    conn = psycopg.connect(url, autocommit=True)
    if not conn.execute("SELECT to_regclass('public.credentials') IS NOT NULL").fetchone()[0] \
            or not conn.execute("SELECT EXISTS (SELECT FROM credentials WHERE is_active)").fetchone()[0]:
        conn.close()
        raise RuntimeError("not ready yet")
    return conn


def _first_tenant(conn: psycopg.Connection, emulator: str) -> Tenant:
    """The first organization the demo syncs, and where its rows go (Glific's rule and keys)."""
    config = WarehouseConfig(layout=Layout.GLIFIC, cipher_key=DEMO_CIPHER_KEY, emulator_host=emulator)
    return min(select_tenants(conn, config).tenants, key=lambda t: t.id)


def _wait_for(connect, what: str, seconds: float = 180):
    deadline = time.time() + seconds
    while True:
        try:
            return connect()
        except Exception as error:
            if time.time() > deadline:
                raise RuntimeError(f"{what} did not come up") from error
            time.sleep(1)


if __name__ == "__main__":
    main()
