"""Dagster's PostgreSQL event log at production size, for bench_event_log.py ``--synthetic``.

Writing millions of materializations through Dagster costs tens of milliseconds each, so one
real ``execute_in_process`` run records the tick's materializations (``materialization()`` of
glific_bq.defs.assets, for every ``bigquery/<table>`` asset and a few tenants), and SQL copies
that run into many: new run ids, partitions rotating over ``orgs`` tenants, timestamps spread
evenly over ``days``, with the rows Dagster's own writes would leave (``runs``, ``event_logs``,
``asset_keys``' latest materialization, the "tenants" dynamic partitions; the tick's
materializations carry no tags, so ``asset_event_tags`` stays empty, as it does in production).

At each size it times what the UI's asset pages ask for (GraphQL, in process, against
``glific_bq.definitions``), the instance calls retention uses, and one retention pass over the
oldest day. Medians of 5; the first call apart ("cold": the partition status cache is cleared
after each growth, as after a long gap without anyone opening the page).

Measured (2026-12-03, 2 shared cores, pgserver defaults; ``--synthetic 1000000,3000000,6000000``):
1.63 KB per event on disk (heap 1.08, indexes 0.55), so 14 days of the tick (~66 M events) is
~108 GB. The asset pages stay flat once the partition status cache is warm (40-210 ms at 1-6 M
events); the cold cache grows with the asset's events (asset page 245 -> 565 ms, catalog of 33
assets 3.7 -> 7.9 s from 1 M to 6 M). Retention: finding the runs to keep 10-19 s (33,000
records read back), deleting 120-180 ms a run, so a day's 1,440 runs in 3-5 minutes.
"""

import atexit
import math
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from glific_bq.defs.assets import materialization, table_assets
from glific_bq.sync import TableSync
from glific_bq.watermarks import Watermark

#: Tenants of the real template run; the synthetic runs copy tenant 1's materialization of each asset.
TEMPLATE_ORGS = 10
#: The asset the page timings open, and the partition whose events the partition page lists.
ASSET = ["bigquery", "messages"]
PARTITION = "17"
#: Rows per INSERT statement while growing (one transaction each).
CHUNK_ROWS = 200_000
REPEAT = 5
MAT = "ASSET_MATERIALIZATION"


def table_names() -> list[str]:
    return [key.path[-1] for asset in table_assets for key in asset.keys]


@dg.op(out={})
def record_template(context: dg.OpExecutionContext):
    now = datetime.now(UTC)
    for table in table_names():
        for org in range(1, TEMPLATE_ORGS + 1):
            after = Watermark(organization_id=org, table=table, destination=table, table_id=1010,
                              last_updated_at=now, last_updated_id=1010)
            context.log_event(materialization(TableSync(
                organization_id=org, table=table, dataset=f"org_{org}", inserted=7, updated=3, seconds=0.123,
                lag_seconds=61.0, after=after)))


@dg.job(name="sync_job")
def template_job():
    record_template()


#: One synthetic run per row of ``spec``: run id, start (epoch seconds). Events copy the template
#: run's: its run events once, tenant 1's materialization of each asset once per tenant of the run
#: (``opr`` tenants, rotating over ``orgs``), in the template's order (asset by asset, as the
#: Recorder writes its batches).
GROW_EVENTS = """
WITH spec AS (
    SELECT r, md5('evlog-' || r)::uuid::text AS rid, :t0 + r * :step AS start_s
    FROM generate_series(:r0, :r1 - 1) AS r
), tmpl AS (
    SELECT id, event, dagster_event_type, step_key, asset_key,
           least(extract(epoch FROM timestamp) - :tmpl_start, 50.0) AS offset_s,
           dagster_event_type = 'ASSET_MATERIALIZATION' AS is_mat
    FROM event_logs WHERE run_id = :tmpl AND (partition IS NULL OR partition = '1')
), gen AS (
    SELECT spec.r, spec.rid, t.id AS tid, j, t.event, t.dagster_event_type, t.step_key, t.asset_key,
           CASE WHEN t.is_mat THEN ((spec.r * :opr + j) % :orgs + 1)::text END AS org,
           spec.start_s + t.offset_s + j * 0.001 AS ts
    FROM spec CROSS JOIN tmpl AS t
    CROSS JOIN LATERAL generate_series(0, CASE WHEN t.is_mat THEN :opr - 1 ELSE 0 END) AS j
)
INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition)
SELECT rid,
       replace(replace(replace(regexp_replace(event, '"timestamp": [0-9.e+]+', '"timestamp": ' || ts::text),
                               :tmpl, rid),
                       '"partition": "1"', '"partition": "' || coalesce(org, '1') || '"'),
               '"text": "org_1"', '"text": "org_' || coalesce(org, '1') || '"'),
       dagster_event_type, to_timestamp(ts) AT TIME ZONE 'UTC', step_key, asset_key, org
FROM gen ORDER BY r, tid, j
"""

GROW_RUNS = """
INSERT INTO runs (run_id, snapshot_id, pipeline_name, mode, status, run_body, partition, partition_set,
                  create_timestamp, update_timestamp, start_time, end_time)
SELECT md5('evlog-' || r)::uuid::text, t.snapshot_id, t.pipeline_name, t.mode, t.status,
       replace(t.run_body, :tmpl, md5('evlog-' || r)::uuid::text), NULL, NULL,
       to_timestamp(:t0 + r * :step - 0.1) AT TIME ZONE 'UTC', to_timestamp(:t0 + r * :step + 55) AT TIME ZONE 'UTC',
       :t0 + r * :step, :t0 + r * :step + 55
FROM generate_series(:r0, :r1 - 1) AS r CROSS JOIN runs AS t WHERE t.run_id = :tmpl ORDER BY r
"""

#: The asset keys' latest materialization, as Dagster's writes leave it: the last synthetic run's
#: (an EventLogRecord, storage id and entry); the partition status cache cleared.
LATEST = """
UPDATE asset_keys AS a
SET last_materialization = '{"__class__": "EventLogRecord", "event_log_entry": ' || e.event
                           || ', "storage_id": ' || e.id || '}',
    last_run_id = e.run_id, last_materialization_timestamp = e.timestamp, cached_status_data = NULL
FROM (SELECT DISTINCT ON (asset_key) asset_key, id, event, run_id, timestamp FROM event_logs
      WHERE run_id = :rid AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY asset_key, id DESC) AS e
WHERE a.asset_key = e.asset_key
"""

STATUS_FIELDS = "materializedPartitions failedPartitions materializingPartitions"
MAT_FIELDS = "runId timestamp partition metadataEntries { label }"

#: What the asset pages ask for (the UI's queries reduced to the fields that cost storage reads).
QUERIES = {
    # asset detail, overview tab: latest materialization, partition counts
    "gql asset overview": """query($k: AssetKeyInput!) {
        assetNodeOrError(assetKey: $k) { ... on AssetNode { id partitionStats {
            numMaterialized numPartitions numFailed numMaterializing } } }
        assetsLatestInfo(assetKeys: [$k]) { latestMaterialization { <MAT> } latestRun { id status } } }""",
    # partitions tab: the partition health bar and key list
    "gql partitions tab": """query($k: AssetKeyInput!) {
        assetNodeOrError(assetKey: $k) { ... on AssetNode {
            assetPartitionStatuses { ... on DefaultPartitionStatuses { <STATUS> } }
            partitionKeysByDimension { name partitionKeys } } } }""",
    # events tab: the last 100 events of the asset, newest first
    "gql events tab (100)": """query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
        assetEventHistory(limit: 100, eventTypeSelectors: [MATERIALIZATION, FAILED_TO_MATERIALIZE, OBSERVATION]) {
            cursor results { ... on MaterializationEvent { <MAT> } } } } } }""",
    "gql assetMaterializations(100)": """query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
        assetMaterializations(limit: 100) { <MAT> } } } }""",
    # one partition picked in the partitions tab: its latest and its history
    "gql one partition": """query($k: AssetKeyInput!, $p: String!) {
        assetNodeOrError(assetKey: $k) { ... on AssetNode { latestMaterializationByPartition(partitions: [$p]) {
            <MAT> } latestRunForPartition(partition: $p) { id } } }
        assetOrError(assetKey: $k) { ... on Asset { assetMaterializations(partitions: [$p], limit: 100) { <MAT> } } } }""",
    # asset catalog / lineage: every table asset's latest and partition counts
    "gql catalog (33 assets)": """query($ks: [AssetKeyInput!]!) {
        assetNodes(assetKeys: $ks) { id partitionStats { numMaterialized numPartitions numFailed } }
        assetsLatestInfo(assetKeys: $ks) { latestMaterialization { runId timestamp partition } } }""",
}
QUERIES = {name: query.replace("<MAT>", MAT_FIELDS).replace("<STATUS>", STATUS_FIELDS)
           for name, query in QUERIES.items()}


def timed(call) -> tuple[float, float]:
    """(first call ms, median of the next ``REPEAT`` calls ms)."""
    times = []
    for _ in range(REPEAT + 1):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(times[0], 1), round(statistics.median(times[1:]), 1)


class Log:
    """The PostgreSQL event log being grown: its engine, the template run, the synthetic run plan."""

    def __init__(self, engine: sa.Engine, instance: dg.DagsterInstance, target: int, per_run: int, orgs: int,
                 days: float):
        self.engine, self.instance, self.per_run, self.orgs = engine, instance, per_run, orgs
        self.assets = len(table_names())
        self.opr = max(1, per_run // self.assets)  # tenants per run
        result = template_job.execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        self.tmpl = result.run_id
        instance.add_dynamic_partitions("tenants", [str(org) for org in range(1, orgs + 1)])
        with engine.connect() as conn:
            self.tmpl_start = conn.execute(sa.text("SELECT start_time FROM runs WHERE run_id = :r"),
                                           {"r": self.tmpl}).scalar()
            self.run_events = conn.execute(sa.text(
                "SELECT count(*) FROM event_logs WHERE run_id = :r AND partition IS NULL"), {"r": self.tmpl}).scalar()
        self.events_per_run = self.assets * self.opr + self.run_events
        total_runs = math.ceil(target / self.events_per_run)
        self.step = days * 86400 / total_runs
        self.t0 = time.time() - days * 86400
        self.next_run = 0

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM event_logs")).scalar()

    def grow_to(self, events: int) -> float:
        """Add synthetic runs until the log holds ``events`` events; seconds taken (with VACUUM ANALYZE)."""
        started = time.perf_counter()
        runs = math.ceil(max(0, events - self.count()) / self.events_per_run)
        chunk = max(1, CHUNK_ROWS // self.events_per_run)
        end = self.next_run + runs
        params = {"t0": self.t0, "step": self.step, "tmpl": self.tmpl, "tmpl_start": self.tmpl_start,
                  "opr": self.opr, "orgs": self.orgs}
        for r0 in range(self.next_run, end, chunk):
            r1 = min(end, r0 + chunk)
            with self.engine.begin() as conn:
                conn.execute(sa.text(GROW_RUNS), {**params, "r0": r0, "r1": r1})
                conn.execute(sa.text(GROW_EVENTS), {**params, "r0": r0, "r1": r1})
            print(f"  grown: runs {r1:,} of this stage's {end:,}", flush=True)
        self.next_run = end
        with self.engine.begin() as conn:
            last = conn.execute(sa.text("SELECT md5('evlog-' || :r)::uuid::text"), {"r": end - 1}).scalar()
            conn.execute(sa.text(LATEST), {"rid": last})
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE event_logs"))
            conn.execute(sa.text("VACUUM ANALYZE runs"))
        return time.perf_counter() - started

    def sizes(self) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT pg_total_relation_size('event_logs'), pg_relation_size('event_logs'), "
                "pg_indexes_size('event_logs'), pg_database_size(current_database()), "
                "(SELECT count(*) FROM runs)")).one()
        return {"events": self.count(), "event_logs_total_MB": round(row[0] / 1e6), "heap_MB": round(row[1] / 1e6),
                "indexes_MB": round(row[2] / 1e6), "database_MB": round(row[3] / 1e6), "runs": row[4]}


def gql_timings(instance: dg.DagsterInstance) -> dict:
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name="glific_bq.definitions",
                                                    working_directory=os.getcwd()),
        location_name="glific_bq")
    variables = {"k": {"path": ASSET}, "p": PARTITION,
                 "ks": [{"path": ["bigquery", name]} for name in table_names()]}
    out = {}
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process:
        for name, query in QUERIES.items():
            def call(name=name, query=query):
                result = execute_dagster_graphql(process.create_request_context(), query, variables)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors}")
                return result
            out[name] = timed(call)
    return out


def instance_timings(instance: dg.DagsterInstance) -> dict:
    from glific_bq.defs.retention import PAGE, latest_materialization_runs

    key = dg.AssetKey(ASSET)
    storage = instance.event_log_storage
    keys = list(instance.all_asset_keys())
    latest = storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    page = sorted(latest.values())[:PAGE]
    old = datetime.now(UTC) - timedelta(days=13)
    calls = {
        "all_asset_keys": instance.all_asset_keys,
        "get_latest_materialization_events(33)": lambda: instance.get_latest_materialization_events(keys),
        "get_latest_storage_id_by_partition": lambda: storage.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION),
        "fetch_materializations(storage_ids 1000)": lambda: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=page), limit=len(page)),
        "get_run_records(created_before, 1000)": lambda: instance.get_run_records(
            dg.RunsFilter(job_name="sync_job", statuses=[dg.DagsterRunStatus.SUCCESS], created_before=old),
            limit=PAGE, ascending=True),
        "latest_materialization_runs (keep set)": lambda: latest_materialization_runs(instance),
        "get_materialized_partitions": lambda: instance.get_materialized_partitions(key),
        "fetch_materializations(limit 25)": lambda: instance.fetch_materializations(key, limit=25),
    }
    return {name: timed(call) for name, call in calls.items()}


def retention_pass(log: Log, keep_set_ms: float) -> dict:
    """One pass as the daily job would run it, deleting the oldest day of synthetic runs; the
    deletes' share is the pass less ``keep_set_ms`` (finding the runs to keep, timed apart)."""
    from glific_bq.defs.retention import RetentionPolicy, prune_runs

    with log.engine.connect() as conn:
        oldest = conn.execute(sa.text("SELECT min(create_timestamp) FROM runs")).scalar()
    before = log.count()
    started = time.perf_counter()
    pruned = prune_runs(log.instance, RetentionPolicy(), now=oldest.replace(tzinfo=UTC) + timedelta(days=15))
    seconds = time.perf_counter() - started
    deleted = before - log.count()
    per_run_ms = max(0.0, seconds * 1000 - keep_set_ms) / max(1, len(pruned.deleted))
    return {"runs_deleted": len(pruned.deleted), "events_deleted": deleted, "pass_s": round(seconds, 1),
            "delete_ms_per_run": round(per_run_ms, 1), "kept_as_latest": pruned.kept_as_latest,
            "s_for_a_day_of_1440_runs": round((keep_set_ms + per_run_ms * 1440) / 1000, 1)}


def run_synthetic(sizes: list[int], per_run: int, orgs: int, days: float, keep: str | None) -> None:
    import pgserver

    home = Path(keep or tempfile.mkdtemp(prefix="evlog-"))
    home.mkdir(parents=True, exist_ok=True)
    if not keep:  # registered first, so it runs after pgserver's own exit hook has stopped the server
        atexit.register(shutil.rmtree, home, ignore_errors=True)
    server = pgserver.get_server(str(home / "pg"), cleanup_mode=None if keep else "stop")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg2://")
    engine = sa.create_engine(url)
    (home / "dh").mkdir(exist_ok=True)
    rows = []
    with dg.instance_for_test(temp_dir=str(home / "dh"), overrides={"storage": {"postgres": {"postgres_url": url}}}) \
            as instance:
        log = Log(engine, instance, max(sizes), per_run, orgs, days)
        print(f"template run {log.tmpl}: {log.assets} assets x {TEMPLATE_ORGS} tenants; synthetic runs of "
              f"{log.events_per_run:,} events ({log.opr} tenants each) every {log.step / 60:.1f} min", flush=True)
        for size in sorted(sizes):
            grow_s = log.grow_to(size)
            row = {**log.sizes(), "grow_s": round(grow_s)}
            print(row, flush=True)
            row["gql"] = gql_timings(instance)
            print(row["gql"], flush=True)
            row["instance"] = instance_timings(instance)
            print(row["instance"], flush=True)
            row["retention"] = retention_pass(log, row["instance"]["latest_materialization_runs (keep set)"][1])
            print(row["retention"], flush=True)
            rows.append(row)
    engine.dispose()
    print_table(rows)
    if keep:
        print(f"PostgreSQL data kept in {home / 'pg'} (pgserver.get_server({str(home / 'pg')!r}))")


def print_table(rows: list[dict]) -> None:
    print("\nms: median of 5 (first call in brackets)")
    header = ["", *(f"{r['events']:,} ev" for r in rows)]
    lines = [header,
             ["event_logs on disk (MB)", *(f"{r['event_logs_total_MB']:,} (idx {r['indexes_MB']:,})" for r in rows)],
             ["runs", *(f"{r['runs']:,}" for r in rows)]]
    for group in ("gql", "instance"):
        for name in rows[0][group]:
            lines.append([name, *(f"{r[group][name][1]:,} ({r[group][name][0]:,})" for r in rows)])
    for name in ("runs_deleted", "events_deleted", "pass_s", "delete_ms_per_run", "s_for_a_day_of_1440_runs"):
        lines.append([f"retention {name}", *(f"{r['retention'][name]:,}" for r in rows)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
