"""Dagster's event log at the minute tick's rate: bytes per materialization event and per run in
the instance's storage (SQLite, the local default; PostgreSQL, production, on a pgserver
database), the growth per day extrapolated to 3,300 materializations a minute, and how the
asset page's queries respond with that many events of one asset, before and after a retention
pass (glific_bq.defs.retention).

Each run is a real ``execute_in_process`` run of a job logging ``--per-run`` materializations of
``bigquery/messages`` (one per tenant partition, metadata shaped like the tick's
``materialization()``).

    python bench/bench_event_log.py [--runs 20] [--per-run 1000] [--storage sqlite,postgres]
    smoke: python bench/bench_event_log.py --runs 3 --per-run 20

``--synthetic 1000000,5000000``: the event log at production size (14 days of the tick is ~66 M
events), on PostgreSQL only. One real run writes the tick's materializations (the real
``glific_bq.defs.assets.materialization`` metadata, every ``bigquery/<table>`` asset, a few
tenants); SQL then multiplies that run into runs of ``--per-run`` materializations (the 33 assets
times a rotating tenth of ``--orgs`` tenants), rows as Dagster writes them (runs, event_logs,
asset_keys, the "tenants" dynamic partitions), spread evenly over ``--days``. At each size it
times, median of 5 (and the first, cold call apart), the GraphQL queries the asset pages issue
against the real definitions (``glific_bq.definitions``, in process), the instance calls
retention uses, and one retention pass deleting the oldest day's runs. See
bench/event_log_synthetic.py.

    python bench/bench_event_log.py --synthetic 1000000,5000000
    smoke: python bench/bench_event_log.py --synthetic 20000 --synthetic-per-run 330 --orgs 100

Out of the default test run: this is a script, not a test.
"""

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

PER_MINUTE = 3_300
KEY = dg.AssetKey(["bigquery", "messages"])


class Emit(dg.Config):
    partitions: int


@dg.op(out={})
def emit(context: dg.OpExecutionContext, config: Emit):
    for p in range(config.partitions):
        context.log_event(dg.AssetMaterialization(asset_key=KEY, partition=str(p), metadata={
            "dataset": f"org_{p}", "rows_inserted": dg.MetadataValue.int(7), "rows_updated": dg.MetadataValue.int(3),
            "rows_set_aside": dg.MetadataValue.int(0), "rows_refreshed": dg.MetadataValue.int(0),
            "seconds": dg.MetadataValue.float(0.123), "lag_seconds": dg.MetadataValue.float(61.0),
            "table_id_before": dg.MetadataValue.int(1000), "table_id_after": dg.MetadataValue.int(1010),
            "last_updated_at_before": "2026-12-03T08:00:00+00:00", "last_updated_at_after": "2026-12-03T08:01:00+00:00",
            "summary": dg.MetadataValue.md("**7** rows inserted, **3** updated in 0.1 s; lag 61 s. Watermark: id 1010, "
                                           "updated_at 2026-12-03 08:01:00 UTC."),
        }))


@dg.job(name="sync_job")
def sync_job():
    emit()


def sqlite_bytes(home: Path) -> int:
    return sum(f.stat().st_size for f in home.rglob("*") if f.is_file())


def measure(instance, size, runs: int, per_run: int) -> dict:
    before = size()
    started = time.perf_counter()
    for _ in range(runs):
        sync_job.execute_in_process(instance=instance, run_config={"ops": {"emit": {"config": {"partitions": per_run}}}})
    write_s = time.perf_counter() - started
    grown = size() - before
    per_event = grown / (runs * per_run)
    queries = {}
    for name, call in (("get_latest_materialization_event", lambda: instance.get_latest_materialization_event(KEY)),
                       ("get_materialized_partitions", lambda: instance.get_materialized_partitions(KEY)),
                       ("fetch_materializations(limit=25)", lambda: instance.fetch_materializations(KEY, limit=25))):
        t = time.perf_counter()
        call()
        queries[name] = round((time.perf_counter() - t) * 1000, 1)
    from glific_bq.defs.retention import RetentionPolicy, prune_runs

    t = time.perf_counter()
    pruned = prune_runs(instance, RetentionPolicy(), now=datetime.now(UTC) + timedelta(days=20))
    prune_s = time.perf_counter() - t
    return {"events": runs * per_run, "bytes": grown, "bytes_per_event": round(per_event),
            "bytes_per_run_of_this_size": round(grown / runs), "write_s": round(write_s, 1),
            "GB_per_day_at_3300_a_minute": round(per_event * PER_MINUTE * 1440 / 1e9, 2),
            "query_ms": queries, "retention_pass_s": round(prune_s, 2), "runs_deleted": len(pruned.deleted),
            "ms_per_run_deleted": round(prune_s * 1000 / max(1, len(pruned.deleted)), 1),
            "bytes_after_retention": size()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--per-run", type=int, default=1_000)
    parser.add_argument("--storage", default="sqlite,postgres")
    parser.add_argument("--synthetic", help="event-log sizes to grow to and measure, e.g. 1000000,5000000")
    parser.add_argument("--synthetic-per-run", type=int,
                        default=3_300, help="materializations per synthetic run (the tick's a minute)")
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--keep", help="directory for the PostgreSQL data, kept afterwards (default: temporary)")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
    if args.synthetic:
        from event_log_synthetic import run_synthetic  # bench/, beside this script

        run_synthetic([int(n) for n in args.synthetic.split(",")], per_run=args.synthetic_per_run,
                      orgs=args.orgs, days=args.days, keep=args.keep)
        return
    for storage in args.storage.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            if storage == "sqlite":
                with dg.instance_for_test(temp_dir=str(home)) as instance:
                    result = measure(instance, lambda home=home: sqlite_bytes(home), args.runs, args.per_run)
            else:
                import pgserver
                import sqlalchemy as sa

                server = pgserver.get_server(str(home / "pg"), cleanup_mode="stop")
                url = server.get_uri().replace("postgresql://", "postgresql+psycopg2://")
                engine = sa.create_engine(url)

                def size(engine=engine):
                    with engine.connect() as conn:
                        return conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
                (home / "dh").mkdir()
                overrides = {"storage": {"postgres": {"postgres_url": url}}}
                with dg.instance_for_test(temp_dir=str(home / "dh"), overrides=overrides) as instance:
                    result = measure(instance, size, args.runs, args.per_run)
                engine.dispose()
            print(storage, result, flush=True)


if __name__ == "__main__":
    main()
