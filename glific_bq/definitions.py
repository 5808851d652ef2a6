"""The Dagster definitions of glific_bq (``dagster dev -m glific_bq.definitions``)."""

import dagster as dg

from glific_bq.defs.alerting import sensors as alerting_sensors
from glific_bq.defs.assets import source_assets, table_assets
from glific_bq.defs.jobs import dedup_job, resync_job, sync_job
from glific_bq.defs.resources import resources_from_env
from glific_bq.defs.schedules import dedup_every_90_minutes, sync_every_minute
from glific_bq.defs.sensors import tenant_discovery

defs = dg.Definitions(
    assets=[*source_assets, *table_assets],
    jobs=[sync_job, resync_job, dedup_job],
    schedules=[sync_every_minute, dedup_every_90_minutes],
    sensors=[tenant_discovery, *alerting_sensors],
    resources=resources_from_env(),
)
