"""The local demo: everything glific_bq needs, on one machine, in one command.

Starts an embedded PostgreSQL (pgserver) with Glific's schema and sample data for four
organizations (two turned BigQuery on, each with a key of its own project, encrypted with a demo
``CIPHER_KEY``; one turned it off again; one never turned it on), the BigQuery emulator, a traffic simulator that keeps inserting and updating
rows, and ``dagster dev`` with the minute sync schedule and the tenant sensor running. Ctrl-C
stops everything. All state lives under ``.local/`` (git-ignored); ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg

PROJECT = Path(__file__).resolve().parents[2]
log = logging.getLogger("glific_bq.demo")


def start_postgres(data_dir: Path):
    """An embedded PostgreSQL server on ``data_dir`` (created on first use)."""
    import pgserver

    if "XDG_RUNTIME_DIR" not in os.environ:
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="glific_bq_runtime_")
    data_dir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(str(data_dir), cleanup_mode="stop")


def start_dagster(env: dict[str, str], port: int, **popen: object) -> subprocess.Popen:
    """``dagster dev`` on the project's workspace, in its own session so it can be stopped whole."""
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT, env=env, start_new_session=True, **popen,
    )


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGTERM to the process's whole group (``dagster dev`` takes it as Ctrl-C), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def prepare_database(url: str) -> dict[str, int]:
    """Glific's schema, the watermark table, sample data and BigQuery settings (only into an
    empty database)."""
    from glific_bq import watermarks
    from glific_bq.local.sample_data import create_schema, enable_bigquery, seed

    with psycopg.connect(url, autocommit=True) as conn:
        create_schema(conn)
        watermarks.ensure_table(conn)
        counts = seed(conn, organizations=4)
        enable_bigquery(conn)
        return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=PROJECT / ".local")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--bigquery-port", type=int, default=9050, help="emulator REST port (gRPC: +10)")
    parser.add_argument("--traffic-rate", type=float, default=5.0, help="simulated changes per second (0: none)")
    parser.add_argument("--fresh", action="store_true", help="delete the state directory first")
    args = parser.parse_args(argv)

    from glific_bq.local import traffic
    from glific_bq.local.bigquery_emulator import LocalBigQuery

    if args.fresh and args.state_dir.exists():
        shutil.rmtree(args.state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    postgres = start_postgres(args.state_dir / "postgres")
    url = postgres.get_uri()
    counts = prepare_database(url)

    bigquery = LocalBigQuery(
        args.state_dir / "bigquery", rest_port=args.bigquery_port, grpc_port=args.bigquery_port + 10
    ).start()
    # after the emulator, which reconfigures logging when it starts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    log.info("PostgreSQL ready at %s: %s", url, counts)
    log.info("BigQuery emulator: REST %s, gRPC %s", bigquery.rest_url, bigquery.grpc_endpoint)

    dagster_home = args.state_dir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "dagster.yaml", dagster_home / "dagster.yaml")
    from glific_bq.local.sample_data import DEMO_CIPHER_KEY

    env = {**os.environ, **bigquery.environment(), "GLIFIC_DATABASE_URL": url, "DAGSTER_HOME": str(dagster_home),
           "CIPHER_KEY": DEMO_CIPHER_KEY}

    simulator = None
    if args.traffic_rate > 0:
        simulator = threading.Thread(
            target=traffic.run, args=(url, stop, args.traffic_rate), name="traffic", daemon=True
        )
        simulator.start()

    dagster = start_dagster(env, args.port)
    log.info("Dagster UI: http://127.0.0.1:%s (Ctrl-C stops everything)", args.port)
    try:
        while not stop.wait(1):
            if dagster.poll() is not None:
                log.error("dagster dev exited with %s", dagster.returncode)
                break
    finally:
        stop.set()
        stop_process_group(dagster)
        if simulator:
            simulator.join(10)
        bigquery.stop()
        postgres.cleanup()
        log.info("stopped")


if __name__ == "__main__":
    main()
