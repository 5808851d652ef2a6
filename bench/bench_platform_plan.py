"""What planning Glific's platform tables costs each tick (``glific_bq.platform.work``): 1,000
organizations, a month of hourly stats for each (720,000 rows), a tracker a day each, 1,000 trial
users, every platform watermark caught up (the usual minute: nothing to do). Prints the median
and worst of 20 calls and the statements each runs (psycopg cursor executions).

    python bench/bench_platform_plan.py [--organizations 1000] [--days 30]
    python bench/bench_platform_plan.py --organizations 10 --days 1   # the smoke size
    NOINDEX=1 python bench/bench_platform_plan.py   # without stats (inserted_at, id), trackers (updated_at, id)

Out of the default test run: this is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pgserver
import psycopg

from glific_bq import plan, platform, watermarks
from glific_bq.local import glific_writes as gw
from glific_bq.local.glific_schema import create_glific_schema
from glific_bq.registry import PLATFORM_TABLES

ORGANIZATIONS, DAYS = 1000, 30
DESTINATION = "glific:project.dataset"

_SEED = [
    """INSERT INTO organizations (name, shortcode, email, bsp_id, default_language_id, timezone, status,
                                  inserted_at, updated_at)
       SELECT 'NGO ' || g, 'ngo' || g, 'admin@example.org', %(bsp)s, %(language)s, 'Asia/Kolkata', 'active',
              %(start)s, %(start)s
       FROM generate_series(1, %(organizations)s) g""",
    "INSERT INTO saas (name, organization_id, phone, inserted_at, updated_at) VALUES ('Tides', 1, '91', now(), now())",
    """INSERT INTO stats (organization_id, period, date, hour, contacts, inserted_at, updated_at)
       SELECT o, 'hour', (%(start)s + h * interval '1 hour')::date, h %% 24, 1,
              %(start)s + h * interval '1 hour', %(start)s + h * interval '1 hour'
       FROM generate_series(1, %(organizations)s) o, generate_series(0, %(hours)s - 1) h""",
    """INSERT INTO trackers (organization_id, period, date, counts, inserted_at, updated_at)
       SELECT o, 'day', (%(start)s + d * interval '1 day')::date, '{}', %(start)s + d * interval '1 day',
              %(start)s + d * interval '1 day'
       FROM generate_series(1, %(organizations)s) o, generate_series(0, %(days)s - 1) d""",
    """INSERT INTO trial_users (username, email, phone, organization_name, inserted_at, updated_at)
       SELECT 'user ' || g, 'user' || g || '@example.org', '91' || g, 'NGO', %(start)s, %(start)s
       FROM generate_series(1, %(organizations)s) g""",
]


def seed(conn: psycopg.Connection, organizations: int = ORGANIZATIONS, days: int = DAYS) -> None:
    create_glific_schema(conn)
    watermarks.ensure_table(conn)
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days + 1)
    values = {"bsp": gw.provider(conn), "language": gw.language(conn), "start": start,
              "organizations": organizations, "hours": days * 24, "days": days}
    for statement in _SEED:
        conn.execute(statement, values)
    if os.environ.get("NOINDEX"):
        conn.execute("DROP INDEX stats_inserted_at_id_index")
        conn.execute("DROP INDEX trackers_updated_at_id_index")
    conn.execute("ANALYZE")
    for spec in PLATFORM_TABLES:  # caught up: every watermark at the newest row
        cursor = spec.cursor_column
        top_id, top_at = conn.execute(f"SELECT max(id), max({cursor}) FROM {spec.source}").fetchone()
        conn.execute('INSERT INTO glific_bq_watermarks (organization_id, "table", destination, table_id, '
                     "last_updated_at, last_updated_id) VALUES (1, %s, %s, %s, %s, %s)",
                     (spec.name, DESTINATION, top_id, top_at, top_id))


class Statements:
    """Counts the statements psycopg cursors execute."""

    count = 0

    @classmethod
    def install(cls) -> None:
        execute = psycopg.Cursor.execute

        def counted(self, *args, **kwargs):
            cls.count += 1
            return execute(self, *args, **kwargs)

        psycopg.Cursor.execute = counted


def timed(label: str, call, calls: int = 20) -> None:
    call()  # warm
    Statements.count, times = 0, []
    for _ in range(calls):
        started = time.perf_counter()
        out = call()
        times.append((time.perf_counter() - started) * 1000)
    print(f"{label}: {statistics.median(times):.1f} ms median, {max(times):.1f} ms worst, "
          f"{Statements.count / calls:.0f} statements; {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--organizations", type=int, default=ORGANIZATIONS)
    parser.add_argument("--days", type=int, default=DAYS, help="days of hourly stats per organization")
    args = parser.parse_args()
    server = pgserver.get_server(tempfile.mkdtemp(prefix="bench_platform_"), cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            seed(conn, args.organizations, args.days)
            rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("organizations", "stats", "trackers", "trial_users")}
            print(f"rows: {rows}; indexes on (cursor, id): {'no' if os.environ.get('NOINDEX') else 'yes'}")
            Statements.install()
            tenants = dict.fromkeys(range(1, args.organizations + 1), DESTINATION)
            timed("platform.work (whole platform plan)", lambda: platform.work(conn, tenants))
            timed("  platform.organization_id", lambda: platform.organization_id(conn))
            for spec in PLATFORM_TABLES:
                timed(f"  dirty {spec.name}", lambda spec=spec: plan.dirty_organizations(conn, spec, {1: DESTINATION}))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
