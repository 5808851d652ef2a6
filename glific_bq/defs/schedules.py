"""Schedules, with their cadence in one place."""

import dagster as dg

from .checks import checks_job
from .jobs import dedup_job, sync_job, tick_run_config
from .resources import GlificBigQuery, GlificPostgres

#: Every minute.
SYNC_CRON = "* * * * *"
#: Every 90 minutes: 00:00, 01:30, 03:00, 04:30 …
DEDUP_CRONS = ["0 0-21/3 * * *", "30 1-22/3 * * *"]
#: 45 minutes after each dedup pass.
CHECKS_CRONS = ["45 0-21/3 * * *", "15 2-23/3 * * *"]


@dg.schedule(job=sync_job, cron_schedule=SYNC_CRON, default_status=dg.DefaultScheduleStatus.RUNNING)
def sync_every_minute(context: dg.ScheduleEvaluationContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
    """Every minute, one run syncs all dirty (tenant, table) pairs, in one process or several
    (``tick_run_config``); skipped while the last one runs."""
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=sync_job.name, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]),
        limit=1,
    )
    if in_flight:
        return dg.SkipReason(f"run {in_flight[0].dagster_run.run_id} is still syncing")
    return dg.RunRequest(run_config=tick_run_config(postgres, bigquery))


dedup_every_90_minutes = dg.ScheduleDefinition(
    name="dedup_every_90_minutes",
    job=dedup_job,
    cron_schedule=DEDUP_CRONS,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 90 minutes, delete older row versions in every tenant dataset (changed ids and months only); "
    "in history mode, refresh the clean tables from their history (changed keys and months only).",
)

checks_every_90_minutes = dg.ScheduleDefinition(
    name="checks_every_90_minutes",
    job=checks_job,
    cron_schedule=CHECKS_CRONS,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 90 minutes, between dedup passes: unique ids, reconciliation, freshness per tenant.",
)
