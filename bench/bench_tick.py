"""What planning one minute tick costs, for 100, 1,000 and 10,000 tenants × 10 tables.

The minute schedule must find the (tenant, table) pairs with rows beyond their watermarks.
glific_bq plans with one query per table (``glific_bq.plan.dirty``): its cost grows with tables,
and with tenants only by two index probes each. The baseline asks per tenant-table, as a cron
that walks the watermark rows one by one does (Glific's minute worker): 2 queries per pair.

Each size gets 10 tables of 20 rows per tenant, watermarks caught up, then 2 % of the pairs
receive a new row or an update. Both planners must find exactly those pairs.

    python bench/bench_tick.py [--tenants 100 1000 10000] [--rows 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import psycopg

from glific_bq import plan, watermarks
from glific_bq.registry import TableSpec

TABLES = tuple(TableSpec(f"t{i}") for i in range(10))
DESTINATION = "raw:bench.dataset"


def tenants_of(conn: psycopg.Connection) -> dict[int, str]:
    """Every organization, as the roster would give them (one destination each)."""
    return {row[0]: DESTINATION for row in conn.execute("SELECT id FROM organizations")}


def build(conn: psycopg.Connection, tenants: int, rows: int) -> None:
    conn.execute("DROP TABLE IF EXISTS glific_bq_watermarks, bigquery_jobs, organizations CASCADE")
    for spec in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {spec.name}")
    conn.execute("CREATE TABLE organizations (id bigint PRIMARY KEY, shortcode text, timezone text, is_active boolean)")
    conn.execute("INSERT INTO organizations SELECT g, 'org' || g, 'UTC', true FROM generate_series(1, %s) g", (tenants,))
    watermarks.ensure_table(conn)
    for spec in TABLES:
        conn.execute(
            f"CREATE TABLE {spec.name} (id bigserial PRIMARY KEY, organization_id bigint NOT NULL, body text, "
            "inserted_at timestamp NOT NULL, updated_at timestamp NOT NULL)"
        )
        # Interleaved ids across tenants, all an hour old.
        conn.execute(
            f"INSERT INTO {spec.name} (organization_id, body, inserted_at, updated_at) "
            "SELECT o, 'row', now() AT TIME ZONE 'UTC' - interval '1 hour', now() AT TIME ZONE 'UTC' - interval '1 hour' "
            "FROM generate_series(1, %s) r, generate_series(1, %s) o",
            (rows, tenants),
        )
        conn.execute(f"CREATE INDEX ON {spec.name} (organization_id, id)")
        conn.execute(f"CREATE INDEX ON {spec.name} (organization_id, updated_at, id)")
        # Caught up: watermarks at each tenant's max id and max (updated_at, id).
        conn.execute(
            'INSERT INTO glific_bq_watermarks (organization_id, "table", destination, table_id, last_updated_at, '
            f"last_updated_id) SELECT organization_id, %s, %s, max(id), max(updated_at), max(id) FROM {spec.name} "
            "GROUP BY organization_id",
            (spec.name, DESTINATION),
        )
        conn.execute(f"ANALYZE {spec.name}")
    conn.execute("ANALYZE glific_bq_watermarks")


def make_dirty(conn: psycopg.Connection, tenants: int, share: float, rng: random.Random) -> set[tuple[str, int]]:
    pairs = [(spec.name, org) for spec in TABLES for org in range(1, tenants + 1)]
    dirty = set(rng.sample(pairs, max(1, int(len(pairs) * share))))
    for name, org in dirty:
        if rng.random() < 0.5:
            conn.execute(
                f"INSERT INTO {name} (organization_id, body, inserted_at, updated_at) "
                "VALUES (%s, 'new', now() AT TIME ZONE 'UTC' - interval '1 minute', now() AT TIME ZONE 'UTC' - interval '1 minute')",
                (org,),
            )
        else:
            conn.execute(
                f"UPDATE {name} SET body = 'changed', updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' "
                f"WHERE id = (SELECT min(id) FROM {name} WHERE organization_id = %s)",
                (org,),
            )
    return dirty


def plan_per_pair(conn: psycopg.Connection) -> set[tuple[str, int]]:
    """The baseline: two queries per (tenant, table) watermark row."""
    found = set()
    jobs = conn.execute('SELECT organization_id, "table", table_id, last_updated_at, last_updated_id FROM glific_bq_watermarks').fetchall()
    for org, name, table_id, last_updated_at, last_updated_id in jobs:
        new = conn.execute(f"SELECT 1 FROM {name} WHERE organization_id = %s AND id > %s LIMIT 1", (org, table_id)).fetchone()
        changed = new or conn.execute(
            f"SELECT 1 FROM {name} WHERE organization_id = %s AND id <= %s AND (updated_at, id) > (%s, %s) "
            "AND updated_at < (now() AT TIME ZONE 'UTC') - interval '5 seconds' LIMIT 1",
            (org, table_id, last_updated_at, last_updated_id),
        ).fetchone()
        if changed:
            found.add((name, org))
    return found


def plan_per_table(conn: psycopg.Connection) -> set[tuple[str, int]]:
    return {(name, org) for name, orgs in plan.dirty(conn, TABLES, tenants_of(conn)).items() for org in orgs}


def timed(fn, conn, repeat: int) -> tuple[float, set]:
    times, result = [], set()
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(conn)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--rows", type=int, default=20, help="rows per tenant per table")
    parser.add_argument("--dirty", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="glific_bq_runtime_"))
    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="bench_tick_"), cleanup_mode="delete")
    print(f"machine: {os.cpu_count()} cores; PostgreSQL (pgserver) on a unix socket; median of {args.repeat}")
    print(f"{'tenants':>8} {'pairs':>7} {'dirty':>6} | {'per-table (glific_bq)':>22} {'queries':>8} | "
          f"{'per-pair baseline':>18} {'queries':>8} | {'speed-up':>8}")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for tenants in args.tenants:
            build(conn, tenants, args.rows)
            dirty = make_dirty(conn, tenants, args.dirty, random.Random(tenants))
            ours, found = timed(plan_per_table, conn, args.repeat)
            base, base_found = timed(plan_per_pair, conn, args.repeat)
            assert found == dirty == base_found, "planners disagree"
            pairs = tenants * len(TABLES)
            print(f"{tenants:>8} {pairs:>7} {len(dirty):>6} | {ours * 1000:>19.1f} ms {2 * len(TABLES):>8} | "
                  f"{base * 1000:>15.1f} ms {2 * pairs:>8} | {base / ours:>7.1f}x")
    server.cleanup()


if __name__ == "__main__":
    main()
