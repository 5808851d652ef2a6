"""End-to-end latency under the running schedule: from a row's commit in PostgreSQL to the row in
BigQuery, with the demo stack (embedded PostgreSQL, the emulator, ``dagster dev`` with
``sync_every_minute`` running, the traffic simulator adding load).

A marker message is committed every few seconds for ``--minutes``; each one's latency is the time
from its commit to its ``bq_inserted_at`` (the sync's send time), and to the moment a query first
sees it. The minute cadence bounds it: expect about 30 s on average and a little over 60 s at worst,
plus the run's own start-up.

    python bench/bench_latency.py [--minutes 5] [--every 7]
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

import psycopg
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

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
    client = bigquery.Client(project="glific-local", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": f"http://127.0.0.1:{args.bigquery_port}"})
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}
    try:
        conn = _wait_for(lambda: psycopg.connect(url, autocommit=True), "PostgreSQL")
        deadline = time.time() + args.minutes * 60
        next_marker = time.time()
        n = 0
        while time.time() < deadline or (len(seen) < len(committed) and time.time() < deadline + 150):
            if time.time() >= next_marker and time.time() < deadline:
                body = f"{MARKER}{n}"
                inserted = conn.execute(
                    "INSERT INTO messages (body, type, flow, status, sender_id, receiver_id, contact_id, "
                    "organization_id, inserted_at, updated_at) "
                    "SELECT %s, 'text', 'inbound', 'received', c.id, c.id, c.id, 1, "
                    "now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' FROM contacts c WHERE c.organization_id = 1 LIMIT 1 "
                    "RETURNING id",
                    (body,),
                ).fetchone()
                if inserted:  # none while the demo is still loading its sample data
                    committed[body] = time.time()
                    n += 1
                next_marker += args.every
            try:
                rows = client.query(
                    f"SELECT body, MIN(bq_inserted_at) AS sent FROM `glific-local.glific_1.messages` "
                    f"WHERE STARTS_WITH(body, '{MARKER}') GROUP BY body"
                ).result()
                now = time.time()
                for row in rows:
                    seen.setdefault(row["body"], now)
                    sent.setdefault(row["body"], row["sent"].timestamp())
            except Exception:  # the dataset does not exist before the first sync
                pass
            time.sleep(1)
        missing = sorted(set(committed) - set(seen))
        if missing:  # say why, before the stack goes
            print("not arrived:", missing)
            print("watermark:", conn.execute(
                'SELECT table_id, last_updated_at, last_updated_id, failures, last_error FROM glific_bq_watermarks '
                "WHERE organization_id = 1 AND \"table\" = 'messages'").fetchone())
            print("their rows:", conn.execute(
                "SELECT id, inserted_at, updated_at FROM messages WHERE body = ANY(%s)", (missing,)).fetchall())
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
    to_sent = [sent[b] - committed[b] for b in committed if b in sent]
    to_seen = [seen[b] - committed[b] for b in committed if b in seen]
    print(f"{len(committed)} markers committed over {args.minutes} min, {len(to_seen)} arrived "
          f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, traffic 5 changes/s)")
    for name, values in (("commit → sent (bq_inserted_at)", to_sent), ("commit → visible to a query", to_seen)):
        if values:
            q = statistics.quantiles(values, n=20)
            print(f"{name:32} p50 {statistics.median(values):5.1f} s   p95 {q[18]:5.1f} s   max {max(values):5.1f} s")
    sys.exit(0 if len(to_seen) == len(committed) else 1)


def _wait_for(connect, what: str, seconds: float = 120):
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
