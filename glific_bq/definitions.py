"""The Dagster definitions of glific_bq (``dagster dev -m glific_bq.definitions``)."""

import dagster as dg

from glific_bq.defs.alerting import sensors as alerting_sensors
from glific_bq.defs.assets import source_assets, table_assets
from glific_bq.defs.checks import asset_checks, checks_job
from glific_bq.defs.exports import export_jobs
from glific_bq.defs.jobs import dedup_job, resync_job, sync_job
from glific_bq.defs.repartition import repartition_job
from glific_bq.defs.reports import report_assets, report_sensors
from glific_bq.defs.resources import resources_from_env
from glific_bq.defs.retention import retention_daily, retention_job
from glific_bq.defs.schedules import checks_every_90_minutes, dedup_every_90_minutes, sync_every_minute
from glific_bq.defs.sensors import roster_spec, tenant_discovery

defs = dg.Definitions(
    assets=[*source_assets, *table_assets, *report_assets, roster_spec],
    asset_checks=asset_checks,
    jobs=[sync_job, resync_job, dedup_job, checks_job, *export_jobs, repartition_job, retention_job],
    schedules=[sync_every_minute, dedup_every_90_minutes, checks_every_90_minutes, retention_daily],
    sensors=[tenant_discovery, *alerting_sensors, *report_sensors],
    resources=resources_from_env(),
)
