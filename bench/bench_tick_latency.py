"""One minute tick at a real distance: N organizations × 3 dirty tables, BigQuery behind a proxy
that adds latency (REST and gRPC), with tenant concurrency off (one pair after another, the
original behaviour) and on.

Stack: an embedded PostgreSQL (pgserver), the BigQuery emulator in its own process, and
``bench/latency_proxy.py`` in its own process in front of both of its ports (so neither competes
with the sync for the GIL). Every organization (three timezones) gets new and changed rows in
contacts, messages and flow_results before each tick.

A tick is what ``sync_job``'s op does (``glific_bq.plan.dirty``, then every dirty pair synced),
run through the plain-Python path in a fresh process, as a Dagster run is. Each process runs
``--ticks`` ticks: the first with empty per-process caches (what every Dagster run sees), the
next ones warm (what a long-lived worker sees). Before the measurements, one tick at 0 ms
creates every dataset and table (not measured: "once metadata is known").

Printed per (concurrency, delay, tick): seconds, pairs synced, round trips per pair counted at
the proxy (HTTP requests + gRPC calls + connections × handshake round trips), the added
seconds per pair over the same tick at 0 ms expressed in round trips ("sequential round
trips per pair": ~the critical path), and the child process's peak RSS.

    python bench/bench_tick_latency.py [--organizations 200] [--delay-ms 50] [--workers 8]
        [--handshake-rtts 2] [--ticks 2] [--rows 5] [--skip-baseline]

Out of the default test run: this is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEZONES = ("Asia/Kolkata", "Africa/Nairobi", "America/Sao_Paulo")
DIRTY_TABLES = ("contacts", "messages", "flow_results")


# ---------------------------------------------------------------------------------------------
# Data: the only part that knows the source schema (through glific_bq.local.glific_writes).
# ---------------------------------------------------------------------------------------------


def build_organizations(conn, organizations: int) -> None:
    """``organizations`` tenants in three timezones (Glific's schema, written as Glific writes),
    each with one flow, then a first round of dirty rows."""
    from glific_bq import watermarks
    from glific_bq.local import glific_writes
    from glific_bq.local.glific_schema import create_glific_schema

    create_glific_schema(conn)
    watermarks.ensure_table(conn)
    for n in range(1, organizations + 1):
        organization_id = glific_writes.organization(
            conn, f"bench org {n}", f"bench{n}", f"9100{n:08d}", timezone=TIMEZONES[n % 3]
        )
        glific_writes.flow(conn, organization_id, "registration")
    make_dirty(conn, rows=5)


def make_dirty(conn, rows: int) -> None:
    """``rows`` new and ``rows`` changed rows in contacts, messages and flow_results of every
    organization, stamped a minute ago (past the sync's 5 s horizon)."""
    from datetime import timedelta

    from glific_bq.local import glific_writes

    at = glific_writes.utc_now() - timedelta(minutes=1)
    tenants = conn.execute(
        "SELECT o.id, o.contact_id, f.id, f.uuid FROM organizations o JOIN flows f ON f.organization_id = o.id "
        "ORDER BY o.id"
    ).fetchall()
    with conn.transaction():
        for organization_id, bot, flow_id, flow_uuid in tenants:
            contacts = [
                glific_writes.contact(
                    conn,
                    organization_id,
                    f"{organization_id}{uuid.uuid4().int % 10**9:09d}",
                    name=f"contact {k}",
                    at=at,
                )
                for k in range(rows)
            ]
            glific_writes.insert(
                conn,
                "messages",
                [
                    glific_writes.message_row(
                        organization_id, contacts[k], bot, inbound=True, body=f"message {k} ✓ नमस्ते"
                    )
                    for k in range(rows)
                ],
                at=at,
            )
            glific_writes.insert(
                conn,
                "flow_results",
                [
                    {
                        "results": {"age": k},
                        "contact_id": contacts[k],
                        "flow_id": flow_id,
                        "flow_uuid": flow_uuid,
                        "organization_id": organization_id,
                    }
                    for k in range(rows)
                ],
                at=at,
            )
            for table, change in (
                ("contacts", {"name": "changed"}),
                ("messages", {"is_hsm": True}),
                ("flow_results", {"flow_version": 2}),
            ):
                ids = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM {table} WHERE organization_id = %s ORDER BY id LIMIT %s",
                        (organization_id, rows),
                    )
                ]
                glific_writes.update(conn, table, ids, at=at, **change)


# ---------------------------------------------------------------------------------------------
# Child: one process, several ticks (a Dagster run is a fresh process).
# ---------------------------------------------------------------------------------------------


def run_tick(database_url: str, config, workers: int) -> list:
    """One tick through the plain-Python path; returns the per-pair results."""
    try:
        from glific_bq import tick
    except ImportError:  # before glific_bq.tick: the loop sync_partitions ran
        tick = None
    if tick is not None:
        return tick.run_tick(database_url, config, tick.TickOptions(workers=workers)).results
    from collections import defaultdict

    from glific_bq import plan, watermarks
    from glific_bq.registry import TABLES, table
    from glific_bq.source import Source
    from glific_bq.sync import sync_tenant
    from glific_bq.warehouse import Warehouse

    if workers != 1:
        raise SystemExit("this checkout has no glific_bq.tick: only --workers 1 (concurrency off) exists")
    results = []
    with Source(database_url) as source:
        watermarks.ensure_table(source.control)
        dirty = plan.dirty(source.control, TABLES)
        by_tenant: dict[int, list] = defaultdict(list)
        for name, org_ids in dirty.items():
            for org_id in org_ids:
                by_tenant[org_id].append(table(name))
        for org_id, specs in by_tenant.items():
            results.extend(sync_tenant(source, lambda o: Warehouse(config, o), org_id, specs))
    return results


def child(spec: dict) -> dict:
    import psycopg

    sys.path.insert(0, str(ROOT / "bench"))
    from latency_proxy import ProxyControl

    from glific_bq.warehouse import WarehouseConfig

    config = WarehouseConfig(**spec["warehouse"])
    control = ProxyControl(spec["control_port"])
    control.command(f"delay {spec['delay_ms']}")
    ticks = []
    for _ in range(spec["ticks"]):
        with psycopg.connect(spec["database_url"], autocommit=True) as conn:
            make_dirty(conn, spec["rows"])
        time.sleep(0.2)  # let the proxy's previous connections settle before counting
        control.command("reset")
        started = time.monotonic()
        results = run_tick(spec["database_url"], config, spec["workers"])
        seconds = time.monotonic() - started
        stats = control.command("stats")
        statuses: dict[str, int] = {}
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        ticks.append(
            {
                "seconds": seconds,
                "pairs": len(results),
                "statuses": statuses,
                "rows": sum(r.inserted + r.updated for r in results),
                "set_aside": sum(r.set_aside for r in results),
                "failures": [f"{r.organization_id}/{r.table}: {r.message}" for r in results if r.status != "synced"][
                    :3
                ],
                "proxy": stats["routes"],
                "round_trips": sum(route["round_trips"] for route in stats["routes"].values()),
            }
        )
    control.close()
    return {"ticks": ticks, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], ready: str) -> subprocess.Popen:
    """A helper process in its own session; returns once it printed its ready line."""
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    for line in proc.stdout:
        if ready in line:
            break
    else:
        proc.kill()
        raise SystemExit(f"{command[1:3]} did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    return proc


def spawn(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode:
        raise SystemExit(f"tick {spec['workers']} workers, {spec['delay_ms']} ms failed:\n{proc.stderr[-5000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--organizations", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay (round trip is twice this)")
    parser.add_argument("--workers", type=int, default=8, help="tenant concurrency of the 'on' runs")
    parser.add_argument(
        "--handshake-rtts",
        type=int,
        default=2,
        help="round trips a new connection pays (2: TCP + TLS 1.3, as HTTPS to BigQuery)",
    )
    parser.add_argument("--ticks", type=int, default=2, help="ticks per process (the first with cold caches)")
    parser.add_argument("--rows", type=int, default=5, help="new and changed rows per table and organization")
    parser.add_argument("--skip-baseline", action="store_true", help="only concurrency on")
    parser.add_argument("--baseline-only", action="store_true", help="only concurrency off")
    parser.add_argument("--verbose", action="store_true", help="REST requests by method and resource")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    if "XDG_RUNTIME_DIR" not in os.environ:
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="glific_bq_bench_runtime_")
    import pgserver
    import psycopg

    rest, grpc, proxy_rest, proxy_grpc, control = (free_port() for _ in range(5))
    helpers = []
    server = pgserver.get_server(tempfile.mkdtemp(prefix="bench_tick_latency_pg_"), cleanup_mode="stop")
    try:
        base = server.get_uri()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_tick")
        url = base.replace("/postgres?", "/bench_tick?", 1)
        helpers.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "glific_bq.local.bigquery_emulator",
                    "--rest-port",
                    str(rest),
                    "--grpc-port",
                    str(grpc),
                ],
                "BigQuery emulator",
            )
        )
        helpers.append(
            start(
                [
                    sys.executable,
                    "bench/latency_proxy.py",
                    "--route",
                    f"{proxy_rest}:127.0.0.1:{rest}",
                    "--route",
                    f"{proxy_grpc}:127.0.0.1:{grpc}",
                    "--delay-ms",
                    "0",
                    "--handshake-rtts",
                    str(args.handshake_rtts),
                    "--control-port",
                    str(control),
                ],
                "latency proxy",
            )
        )
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            build_organizations(conn, args.organizations)
        print(
            f"{args.organizations} organizations built in {time.monotonic() - started:.1f} s; "
            f"{len(DIRTY_TABLES)} dirty tables each, {args.rows} new + {args.rows} changed rows per table",
            flush=True,
        )
        base_spec = {
            "database_url": url,
            "control_port": control,
            "rows": args.rows,
            "warehouse": {
                "organizations": "active",
                "project": "glific-local",
                "dataset_template": f"b{uuid.uuid4().hex[:6]}_{{organization_id}}",
                "emulator_host": f"http://127.0.0.1:{proxy_rest}",
                "storage_emulator_host": f"127.0.0.1:{proxy_grpc}",
            },
        }
        first = spawn({**base_spec, "workers": 1 if args.baseline_only else args.workers, "delay_ms": 0, "ticks": 1})
        tick = first["ticks"][0]
        print(
            f"first tick (creates {tick['pairs']} tables, not measured): {tick['seconds']:.1f} s, "
            f"{tick['round_trips'] / max(tick['pairs'], 1):.1f} round trips per pair",
            flush=True,
        )
        if tick["statuses"].get("synced", 0) != tick["pairs"]:
            raise SystemExit(f"first tick: {tick['statuses']}: {tick['failures']}")

        variants = []
        if not args.skip_baseline:
            variants.append(("off (1 worker)", 1))
        if not args.baseline_only:
            variants.append((f"on ({args.workers} workers)", args.workers))
        rtt = 2 * args.delay_ms / 1000
        print(f"\nround trip {2 * args.delay_ms:.0f} ms, new connections pay {args.handshake_rtts} round trips\n")
        header = (
            f"{'concurrency':<18} {'delay':>6} {'tick':>4} {'seconds':>8} {'pairs':>5} {'rows':>6} "
            f"{'RT/pair':>7} {'REST':>5} {'gRPC':>5} {'conns':>5} {'seq RT/pair':>11} {'peak MB':>7}"
        )
        print(header)
        print("-" * len(header))
        for label, workers in variants:
            at_zero = None
            for delay in (0.0, args.delay_ms):
                result = spawn({**base_spec, "workers": workers, "delay_ms": delay, "ticks": args.ticks})
                for n, tick in enumerate(result["ticks"], 1):
                    pairs = max(tick["pairs"], 1)
                    routes = list(tick["proxy"].values())
                    rest_calls, grpc_calls = routes[0]["http_requests"], routes[1]["grpc_calls"]
                    connections = sum(route["connections"] for route in routes)
                    sequential = ""
                    if delay == 0:
                        at_zero = at_zero or {}
                        at_zero[n] = tick["seconds"]
                    elif at_zero and n in at_zero:
                        sequential = f"{(tick['seconds'] - at_zero[n]) / rtt / pairs * workers:.2f}"
                    print(
                        f"{label:<18} {2 * delay:>4.0f}ms {n:>4} {tick['seconds']:>8.1f} {tick['pairs']:>5} "
                        f"{tick['rows']:>6} {tick['round_trips'] / pairs:>7.2f} {rest_calls:>5} {grpc_calls:>5} "
                        f"{connections:>5} {sequential:>11} {result['peak_rss_mb']:>7.0f}",
                        flush=True,
                    )
                    if tick["statuses"].get("synced", 0) != tick["pairs"] or tick["set_aside"]:
                        print(
                            f"   statuses {tick['statuses']}, {tick['set_aside']} rows set aside: {tick['failures']}",
                            flush=True,
                        )
                    if args.verbose:
                        print(f"   REST by method: {routes[0]['by_method']}", flush=True)
        print(
            "\nRT/pair: round trips counted at the proxy per pair (REST requests + gRPC calls + connections × "
            "handshake).\nseq RT/pair: (seconds − seconds at 0 ms) / round trip / pairs × workers: the round trips "
            "each worker waits for, per pair."
        )
    finally:
        for proc in helpers:
            proc.terminate()
            proc.wait(timeout=10)
        server.cleanup()


if __name__ == "__main__":
    main()
