"""Retention of the minute tick's runs, so Dagster's event log stays bounded.

Each ``sync_job`` run records one materialization per (tenant, table) it synced: at Glific's
shape (3,300 dirty pairs a minute) that is millions of events a day, kept for ever unless
something deletes them (Dagster's own ``retention:`` settings in dagster.yaml purge schedule and
sensor *ticks* only, never runs or their events). This job deletes old runs of the named jobs
(``sync_job`` by default) with their event logs and captured logs, in bounded passes, and keeps:

* every run that holds the **latest materialization of some (asset, partition)**: each tenant
  partition keeps its last materialization (with its metadata and its run), so the UI never shows
  a synced tenant as never materialized, and freshness keeps measuring from the real last sync;
* runs younger than ``keep_days`` (``GLIFIC_BQ_RUN_RETENTION_DAYS``, default 14): "materialize a
  tenant, browse its run history" holds for that window;
* runs that did not succeed (failed or canceled) for ``keep_failed_days``
  (``GLIFIC_BQ_FAILED_RUN_RETENTION_DAYS``, default 30), so incidents stay browsable;
* runs of every other job (resync, dedup, checks, manual materializations, backfills), unless
  the run config names them in ``jobs``; and runs not finished.

The runs to keep are found with a few queries (per asset: the latest storage id of each
partition, then those records' run ids), not one query per partition.
"""

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

#: Environment variables behind ``RetentionPolicy.from_env``.
RETENTION_DAYS_ENV = "GLIFIC_BQ_RUN_RETENTION_DAYS"
FAILED_RETENTION_DAYS_ENV = "GLIFIC_BQ_FAILED_RUN_RETENTION_DAYS"
DEFAULT_KEEP_DAYS = 14
DEFAULT_KEEP_FAILED_DAYS = 30
#: Runs deleted per pass at most. The tick makes 1,440 runs a day; a daily pass of 5,000 keeps up
#: and works off a backlog of months in days, each pass a bounded time (docs/scale.md).
DEFAULT_MAX_RUNS = 5_000
#: Run records read per query while looking for expired runs; storage ids per records query.
PAGE = 1_000

SUCCEEDED = [dg.DagsterRunStatus.SUCCESS]
NOT_SUCCEEDED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class RetentionPolicy:
    """Which runs a pass may delete.

    Attributes:
        keep_days: succeeded runs younger than this many days are kept.
        keep_failed_days: failed or canceled runs younger than this are kept.
        jobs: the jobs whose runs may be deleted at all.
        max_runs: runs deleted in one pass at most (the rest waits for the next pass).
    """

    keep_days: float = DEFAULT_KEEP_DAYS
    keep_failed_days: float = DEFAULT_KEEP_FAILED_DAYS
    jobs: tuple[str, ...] = ("sync_job",)
    max_runs: int = DEFAULT_MAX_RUNS

    def __post_init__(self) -> None:
        if self.keep_days < 1 or self.keep_failed_days < 1:
            raise ValueError(f"runs are kept at least a day, got keep_days={self.keep_days!r}, "
                             f"keep_failed_days={self.keep_failed_days!r}")
        if self.max_runs < 1:
            raise ValueError(f"max_runs must be positive, got {self.max_runs!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "RetentionPolicy":
        """``GLIFIC_BQ_RUN_RETENTION_DAYS`` and ``GLIFIC_BQ_FAILED_RUN_RETENTION_DAYS``, defaults
        where unset; ``overrides`` (not None) win over both."""
        env = os.environ if environ is None else environ
        values = {}
        for name, var in (("keep_days", RETENTION_DAYS_ENV), ("keep_failed_days", FAILED_RETENTION_DAYS_ENV)):
            if env.get(var):
                try:
                    values[name] = float(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be a number of days, got {env[var]!r}") from None
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass
class Pruned:
    """What one pass did."""

    deleted: list[str] = field(default_factory=list)
    #: expired runs kept because they hold the latest materialization of some (asset, partition)
    kept_as_latest: int = 0
    #: more expired runs remain than this pass could delete (``max_runs``)
    more: bool = False


def latest_materialization_runs(instance: dg.DagsterInstance, asset_keys: Iterable[dg.AssetKey] | None = None) -> set[str]:
    """The run ids holding the latest materialization of some asset (unpartitioned) or some
    (asset, partition), over ``asset_keys`` (default: every asset key the instance knows).

    Per asset two queries: the latest storage id of each partition, then those records (in
    pages of ``PAGE``) for their run ids; plus one query for the assets' own latest.
    """
    keys = list(instance.all_asset_keys() if asset_keys is None else asset_keys)
    runs = {event.run_id for event in instance.get_latest_materialization_events(keys).values() if event}
    for key in keys:
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION)
        storage_ids = sorted(latest.values())
        for start in range(0, len(storage_ids), PAGE):
            page = storage_ids[start:start + PAGE]
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, storage_ids=page),
                                                      limit=len(page)).records
            runs.update(record.run_id for record in records)
    return runs


def expired_runs(instance: dg.DagsterInstance, policy: RetentionPolicy, keep: set[str],
                 now: datetime) -> tuple[list[str], int, bool]:
    """Finished runs of ``policy.jobs`` older than their age limit and not in ``keep``, oldest
    first, at most ``policy.max_runs``. Returns (run ids, expired runs skipped because in
    ``keep``, whether more remain)."""
    found: list[str] = []
    skipped = 0
    for job in policy.jobs:
        for statuses, days in ((SUCCEEDED, policy.keep_days), (NOT_SUCCEEDED, policy.keep_failed_days)):
            runs_filter = dg.RunsFilter(job_name=job, statuses=statuses, created_before=now - timedelta(days=days))
            cursor = None
            while True:
                page = instance.get_run_records(runs_filter, limit=PAGE, ascending=True, cursor=cursor)
                for record in page:
                    run_id = record.dagster_run.run_id
                    if run_id in keep:
                        skipped += 1
                    elif len(found) == policy.max_runs:
                        return found, skipped, True
                    else:
                        found.append(run_id)
                if len(page) < PAGE:
                    break
                cursor = page[-1].dagster_run.run_id
    return found, skipped, False


def delete_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Delete one run: its record, its event log, and its captured logs and step outputs
    (``$DAGSTER_HOME/storage/<run id>`` with the local compute log manager).

    On SQLite storage each run's events live in a file of their own, which ``delete_run`` empties
    but leaves behind (128 KB each, 180 MB a day at one run a minute): it is removed too.
    """
    instance.delete_run(run_id)
    instance.compute_log_manager.delete_logs(prefix=[run_id])
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        shard = storage.path_for_shard(run_id)
        for path in (shard, f"{shard}-wal", f"{shard}-shm"):
            if os.path.exists(path):
                os.remove(path)


def prune_runs(instance: dg.DagsterInstance, policy: RetentionPolicy, now: datetime | None = None,
               log: Callable[[str], None] | None = None, batch: int = 500) -> Pruned:
    """One pass: find the runs holding latest materializations, then delete up to
    ``policy.max_runs`` expired runs (``now``: the clock, injectable), saying so every ``batch``."""
    now = now or datetime.now(UTC)
    keep = latest_materialization_runs(instance)
    run_ids, skipped, more = expired_runs(instance, policy, keep, now)
    pruned = Pruned(kept_as_latest=skipped, more=more)
    for number, run_id in enumerate(run_ids, 1):
        delete_run(instance, run_id)
        pruned.deleted.append(run_id)
        if log and (number % batch == 0 or number == len(run_ids)):
            log(f"deleted {number:,} of {len(run_ids):,} expired run(s)")
    return pruned


class RetentionConfig(dg.Config):
    """Overrides of the retention policy for one run (unset: the environment, then the defaults:
    14 days, failed runs 30, ``sync_job`` only, 5,000 runs a pass)."""

    keep_days: float | None = None
    keep_failed_days: float | None = None
    #: the jobs whose old runs may be deleted; add others (e.g. "__ASSET_JOB", "dedup_job") to prune them too
    jobs: list[str] = ["sync_job"]
    max_runs: int | None = None

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy.from_env(keep_days=self.keep_days, keep_failed_days=self.keep_failed_days,
                                        jobs=tuple(self.jobs), max_runs=self.max_runs)


@dg.op(out={}, description="Delete old sync_job runs and their event logs, except runs holding the latest "
       "materialization of some tenant partition; failed runs are kept longer.")
def delete_expired_runs(context: dg.OpExecutionContext, config: RetentionConfig):
    policy = config.policy()
    pruned = prune_runs(context.instance, policy, log=context.log.info)
    context.log.info(
        f"deleted {len(pruned.deleted):,} run(s) of {', '.join(policy.jobs)} older than {policy.keep_days:g} days "
        f"(not succeeded: {policy.keep_failed_days:g}); kept {pruned.kept_as_latest:,} older run(s) holding a "
        "latest materialization" + ("; more remain for the next pass" if pruned.more else ""))


@dg.job(description="Delete old minute-tick runs and their events (keeps each tenant partition's latest "
        "materialization; see glific_bq.defs.retention).")
def retention_job():
    delete_expired_runs()


#: Daily, at a quiet hour (UTC), away from the dedup and checks passes.
RETENTION_CRON = "20 4 * * *"

retention_daily = dg.ScheduleDefinition(
    name="retention_daily",
    job=retention_job,
    cron_schedule=RETENTION_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily, delete sync_job runs older than GLIFIC_BQ_RUN_RETENTION_DAYS (default 14) with their events.",
)

__all__ = ["RetentionPolicy", "prune_runs", "latest_materialization_runs", "retention_job",
                          "retention_daily"]
