"""What keeping tables clean costs when 1 % of a year's rows changed: the history-mode refresh
(``glific_bq.clean``) beside a full-table ``ROW_NUMBER()`` rebuild and beside the in-place dedup
(``glific_bq.dedup``), today's whole-table survey and the one pruned to the changed months.

    python bench/bench_clean.py --rows 2000            # smoke size: seconds
    python bench/bench_clean.py [--rows 2000000] [--changed 0.01]

A table of ``--rows`` ids created over twelve months (ids grow with time, as messages' do: one
``inserted_at`` month per twelfth of the ids), each sent once when created; then ``--changed`` of
the ids get a new version sent today: nine in ten among the last month's ids, one in ten among an
old month's (rows re-sent long after their creation, whose versions land in an old partition).
Built in the local emulator with SQL (``INSERT … SELECT`` over ``GENERATE_ARRAY``), three ways:

- history mode: ``<t>_history`` (partitioned by the day of ``bq_inserted_at``, clustered by id)
  with every version, and the clean ``<t>`` (monthly by ``inserted_at``, clustered by id), one row
  per id, refreshed up to just before today's sends; then one ``refresh_table``;
- the full rebuild: ``CREATE OR REPLACE TABLE … AS SELECT * FROM <t>_history QUALIFY
  ROW_NUMBER() …`` (what a ``_latest`` view computes at every dashboard load);
- in place: ``<t>`` holding every version, deduplicated by ``dedup_table`` with the lower bound
  just before today's sends, once without the months (today) and once with them.

The emulator neither bills nor reports bytes, so "read" is counted at BigQuery's billing grain
from the statements' own predicates: the partitions their literal bounds select, and the rows
those partitions hold (on-demand pricing bills the columns read of every partition scanned;
clustering by id can prune further inside a partition, which is not counted). Times are the
emulator's (DuckDB on this machine), not BigQuery's: compare them with each other only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, datetime, timedelta, timezone

import psycopg

from glific_bq import clean, dedup
from glific_bq.layouts import Layout
from glific_bq.local.bigquery_emulator import LocalBigQuery
from glific_bq.registry import TableSpec
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig
from glific_bq.warehouse.config import Versions

TODAY = datetime(2026, 12, 3, 6, 0, tzinfo=timezone.utc)
FIRST_MONTH = date(2025, 12, 1)
OLD_MONTH = 3  # the old month whose rows are re-sent (0 = the first of the twelve)
COLUMNS = ("id INT64, organization_id INT64, body STRING, status STRING, inserted_at DATETIME, "
           "updated_at DATETIME, bq_uuid STRING, bq_inserted_at TIMESTAMP")

#: Every row once: created in month id*12/rows, sent at its creation.
FIRST_SENDS = """
INSERT INTO `{table}` (id, organization_id, body, status, inserted_at, updated_at, bq_uuid, bq_inserted_at)
SELECT id, 1, CONCAT('message ', CAST(id AS STRING)), 'sent', created, created, GENERATE_UUID(),
       TIMESTAMP(created)
FROM (SELECT id, DATETIME_ADD(DATETIME '{first} 00:00:00', INTERVAL DIV((id - 1) * 364, {rows}) DAY) AS created
      FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS id)
"""
#: Today's new versions: the changed ids (``MOD`` picks them evenly within each range).
CHANGES = """
INSERT INTO `{table}` (id, organization_id, body, status, inserted_at, updated_at, bq_uuid, bq_inserted_at)
SELECT id, 1, CONCAT('edited ', CAST(id AS STRING)), 'read', created, DATETIME '{today}', GENERATE_UUID(),
       TIMESTAMP_ADD(TIMESTAMP '{today}+00', INTERVAL MOD(id, 3600) SECOND)
FROM (SELECT id, DATETIME_ADD(DATETIME '{first} 00:00:00', INTERVAL DIV((id - 1) * 364, {rows}) DAY) AS created
      FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS id)
WHERE (id > {recent_from} AND MOD(id, {recent_every}) = 0) OR (id BETWEEN {old_from} AND {old_to} AND MOD(id, {old_every}) = 0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bench_clean_"))
    import pgserver

    with tempfile.TemporaryDirectory() as pg_dir, LocalBigQuery() as emulator:
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as control:
                rows_out = run(emulator, control, args.rows, args.changed)
        finally:
            server.cleanup()
    print_table(args.rows, args.changed, rows_out)


def run(emulator: LocalBigQuery, control: psycopg.Connection, rows: int, changed: float) -> list[tuple]:
    config = WarehouseConfig(project=emulator.project, organizations="active", dataset_template="bench_clean",
                             emulator_host=emulator.rest_url, storage_emulator_host=emulator.grpc_endpoint,
                             layout=Layout.RAW, versions=Versions.HISTORY, deadline_seconds=3600)
    organization = Organization(id=1, shortcode="bench", timezone="UTC", is_active=True)
    warehouse = Warehouse(config, organization)
    client = warehouse.client
    client.create_dataset(warehouse.dataset_ref, exists_ok=True)
    spec = TableSpec("messages")
    ref = warehouse.dataset_ref
    month_rows = rows // 12
    recent_every = max(1, round(month_rows / (0.9 * changed * rows)))
    old_every = max(1, round(month_rows / (0.1 * changed * rows)))
    sql = {"first": FIRST_MONTH.isoformat(), "rows": rows, "today": TODAY.strftime("%Y-%m-%d %H:%M:%S"),
           "recent_from": rows - month_rows, "recent_every": recent_every,
           "old_from": OLD_MONTH * month_rows + 1, "old_to": (OLD_MONTH + 1) * month_rows, "old_every": old_every}

    def ddl(statement: str) -> None:
        client.query(statement, job_retry=None).result(timeout=3600)

    def build(table: str, partition: str) -> None:
        ddl(f"CREATE TABLE `{ref}.{table}` ({COLUMNS}) PARTITION BY {partition} CLUSTER BY id")

    started = time.monotonic()
    build("messages_history", "DATE(bq_inserted_at)")
    build("messages", "DATETIME_TRUNC(inserted_at, MONTH)")
    build("inplace_today", "DATETIME_TRUNC(inserted_at, MONTH)")
    build("inplace_pruned", "DATETIME_TRUNC(inserted_at, MONTH)")
    for table in ("messages_history", "messages", "inplace_today", "inplace_pruned"):
        ddl(FIRST_SENDS.format(table=f"{ref}.{table}", **sql))
    for table in ("messages_history", "inplace_today", "inplace_pruned"):
        ddl(CHANGES.format(table=f"{ref}.{table}", **sql))
    (count,) = client.query(f"SELECT COUNT(*) AS n FROM `{ref}.messages_history`").result()
    versions = count["n"]
    print(f"built {rows:,} ids, {versions - rows:,} changed ({(versions - rows) / rows:.2%}), "
          f"in {time.monotonic() - started:.1f} s")

    before_today = TODAY - timedelta(minutes=5)
    clean.move_mark(control, organization.id, "messages", warehouse.destination, before_today + dedup.SINCE_MARGIN)
    sent: list[str] = []
    query = client.query

    def recording(statement, *args, **kwargs):
        sent.append(statement)
        return query(statement, *args, **kwargs)

    client.query = recording

    def count_rows(table: str, where: str = "TRUE") -> int:
        (row,) = query(f"SELECT COUNT(*) AS n FROM `{ref}.{table}` WHERE {where}").result()
        return row["n"]

    def read(statements: list[str], scopes: dict[str, tuple[str, int, int]]) -> tuple[int, str]:
        """Rows in the partitions the statements scan, per reference to each table: ``scopes``
        maps a table to (the text of its partition filter, rows under it, rows in all)."""
        total, scanned = 0, set()
        for statement in statements:
            for table, (bound, under, everything) in scopes.items():
                references = statement.count(f"`{ref}.{table}`")
                pruned = bound in statement
                total += references * (under if pruned else everything)
                if references:
                    scanned.add(f"{table} {'pruned' if pruned else 'all'}")
        return total, ", ".join(sorted(scanned))

    results = []
    # 1. The history-mode refresh.
    sent.clear()
    started = time.monotonic()
    refreshed = clean.refresh_table(control, warehouse, spec, now=TODAY + timedelta(hours=2))
    seconds = time.monotonic() - started
    statements = list(sent)
    day = refreshed.since.replace(hour=0, minute=0, second=0, microsecond=0)
    history_days = (TODAY.date() - day.date()).days + 1
    months = [date.fromisoformat(m + "-01") for m in refreshed.months]
    in_months = dedup.month_filter("inserted_at", "DATETIME", months)
    scopes = {"messages_history": ("bq_inserted_at >=", count_rows("messages_history", f"bq_inserted_at >= TIMESTAMP '{day:%Y-%m-%d} 00:00:00+00'"), versions),
              "messages": ("`inserted_at` >=", count_rows("messages", in_months), rows)}
    total, where = read(statements, scopes)
    assert refreshed.ids == versions - rows, refreshed
    results.append(("history: refresh (CHANGES + MERGE)", total, len(statements),
                    f"history {history_days} of 366 days, clean {len(months)} of 12 months", seconds,
                    f"{refreshed.merged:,} merged"))
    (check,) = query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids, COUNTIF(status = 'read') AS edited "
                     f"FROM `{ref}.messages`").result()
    assert (check["n"], check["ids"], check["edited"]) == (rows, rows, versions - rows), dict(check)

    # 2. The full rebuild.
    started = time.monotonic()
    query(f"CREATE OR REPLACE TABLE `{ref}.rebuilt` AS SELECT * FROM `{ref}.messages_history` "
          f"QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY {dedup.NEWEST_FIRST}) = 1",
          job_retry=None).result(timeout=3600)
    results.append(("full ROW_NUMBER() rebuild", versions, 1, "history all 366 days",
                    time.monotonic() - started, f"{rows:,} written"))

    # 3. The in-place dedup, today's (whole-table survey) and pruned to the recorded months.
    for table, label, with_months in (("inplace_today", "in place: dedup as before (no months)", None),
                                      ("inplace_pruned", "in place: dedup pruned to the months", months)):
        scopes = {table: ("`inserted_at` >=", count_rows(table, in_months), versions)}
        sent.clear()
        started = time.monotonic()
        done = dedup.dedup_table(warehouse, TableSpec(table), since=before_today + dedup.SINCE_MARGIN,
                                 now=TODAY + timedelta(hours=2), months=with_months)
        seconds = time.monotonic() - started
        total, where = read(list(sent), scopes)
        scanned = "12 of 12 months" if with_months is None else f"{len(months)} of 12 months"
        results.append((label, total, len(sent), scanned, seconds, f"{done.deleted:,} deleted"))
        assert done.deleted == versions - rows, done
    return results


def print_table(rows: int, changed: float, results: list[tuple]) -> None:
    print(f"\n{rows:,} ids over 12 months, {changed:.1%} changed; rows read = rows of the partitions each "
          "statement scans, summed over the statements (BigQuery's billing grain, before clustering)\n")
    header = ("mechanism", "rows read", "statements", "partitions read", "seconds", "result")
    table = [header, *[(name, f"{read:,}", str(n), partitions, f"{seconds:.2f}", result)
                       for name, read, n, partitions, seconds, result in results]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("| " + " | ".join(c.rjust(w) if i in (1, 2, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
