"""Schedules, with their cadence in one place."""

import dagster as dg

from .jobs import sync_job

SYNC_CRON = "* * * * *"


@dg.schedule(job=sync_job, cron_schedule=SYNC_CRON, default_status=dg.DefaultScheduleStatus.RUNNING)
def sync_every_minute(context: dg.ScheduleEvaluationContext):
    """Every minute, one run syncs all dirty (tenant, table) pairs; skipped while the last one runs."""
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=sync_job.name, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]),
        limit=1,
    )
    if in_flight:
        return dg.SkipReason(f"run {in_flight[0].dagster_run.run_id} is still syncing")
    return dg.RunRequest()
