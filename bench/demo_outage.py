"""The demo under the running schedules, with BigQuery going away for a while.

Starts the demo's pieces itself — embedded PostgreSQL with sample data, the BigQuery emulator as
its own process, the traffic simulator, ``dagster dev`` with every schedule and sensor running,
and a local HTTP server standing in for the Slack webhook — then stops the emulator for a few
minutes and starts it again. At the end it checks, per tenant and table, that every source row
reached BigQuery, runs the dedup job's pass and checks one version per id, and prints the
webhook messages received: one alert when the outage is noticed, one recovery after it.

    python bench/demo_outage.py [--minutes 15] [--outage-at 4] [--outage-minutes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from glific_bq.dedup import dedup_tenant
from glific_bq.local import traffic
from glific_bq.local.demo import PROJECT, prepare_database, start_dagster, start_postgres, stop_process_group
from glific_bq.reconcile import compare_ids
from glific_bq.registry import TABLES
from glific_bq.source import Source
from glific_bq.tenants import list_organizations
from glific_bq.warehouse import Warehouse, WarehouseConfig

REST, GRPC, UI = 9450, 9460, 3400


def start_emulator(data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "glific_bq.local.bigquery_emulator", "--data-dir", str(data_dir),
         "--rest-port", str(REST), "--grpc-port", str(GRPC)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--outage-at", type=float, default=4)
    parser.add_argument("--outage-minutes", type=float, default=5)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="demo_outage_"))
    received: list[dict] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"at": time.time(), "text": body["text"]})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    webhook = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()

    postgres = start_postgres(state / "postgres")
    url = postgres.get_uri()
    prepare_database(url)
    emulator = start_emulator(state / "bigquery")
    dagster_home = state / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ, "GLIFIC_DATABASE_URL": url, "GLIFIC_BQ_PROJECT": "glific-local", "DAGSTER_HOME": str(dagster_home),
        "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{REST}", "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{GRPC}",
        "GLIFIC_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_port}/hook",
        "GLIFIC_ALERT_STALL_MINUTES": "3", "GLIFIC_ALERT_FAILURES": "2",
    }
    dagster = start_dagster(env, UI, stdout=open(state / "dagster.log", "w"), stderr=subprocess.STDOUT)
    halt = threading.Event()
    writer = threading.Thread(target=traffic.run, args=(url, halt, 3.0), daemon=True)
    writer.start()
    started = time.time()
    timeline = []
    try:
        outage_start = started + args.outage_at * 60
        outage_end = outage_start + args.outage_minutes * 60
        down = False
        while time.time() < started + args.minutes * 60:
            now = time.time()
            if not down and outage_start <= now < outage_end:
                stop_process_group(emulator)
                down = True
                timeline.append((now - started, "emulator stopped"))
            elif down and now >= outage_end:
                emulator = start_emulator(state / "bigquery")
                down = False
                timeline.append((now - started, "emulator started again"))
            time.sleep(2)
        halt.set()
        writer.join(30)
        timeline.append((time.time() - started, "traffic stopped; waiting for the last ticks"))
        time.sleep(150)
    finally:
        stop_process_group(dagster)

    config = WarehouseConfig(organizations="active", project="glific-local", emulator_host=env["BIGQUERY_EMULATOR_HOST"],
                             storage_emulator_host=env["BIGQUERY_STORAGE_EMULATOR_HOST"])
    problems = 0
    with Source(url) as source:
        for organization in list_organizations(source.control):
            warehouse = Warehouse(config, organization)
            dedup_tenant(warehouse, TABLES, since=None)
            for spec in TABLES:
                diff = compare_ids(source, warehouse, organization.id, spec.name)
                (row,) = warehouse.query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM `{warehouse.dataset_ref}.{spec.name}`")
                duplicates = row["n"] - row["ids"]
                extra = len(diff.gone) if spec.deletes.value == "propagate" else 0
                problems += len(diff.missing) + duplicates + extra
                print(f"organization {organization.id} {spec.name:18} source {diff.source_rows:6}  bigquery ids {row['ids']:6}  "
                      f"missing {len(diff.missing)}  duplicated after dedup {duplicates}")
            warehouse.close()
        failing = source.control.execute("SELECT count(*) FROM glific_bq_watermarks WHERE failures > 0").fetchone()[0]
    stop_process_group(emulator)
    postgres.cleanup()
    for at, what in timeline:
        print(f"{at / 60:5.1f} min  {what}")
    print(f"webhook messages: {len(received)}")
    for message in received:
        print(f"--- at {(message['at'] - started) / 60:.1f} min\n{message['text']}")
    print(f"tenant-tables still failing: {failing}; missing + duplicated rows: {problems}")
    sys.exit(0 if problems == 0 and failing == 0 else 1)


if __name__ == "__main__":
    main()
