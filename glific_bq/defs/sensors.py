"""Sensors: tenant discovery."""

import json

import dagster as dg

from glific_bq.tenants import list_organizations

from .partitions import tenants
from .resources import GlificPostgres


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def tenant_discovery(context: dg.SensorEvaluationContext, postgres: GlificPostgres):
    """Adds a ``tenants`` partition for every new active organization; says once when one is
    deactivated or deleted (it is no longer synced; its partition and BigQuery data are kept)."""
    with postgres.source() as source:
        organizations = {o.partition_key: o for o in list_organizations(source.control)}
    active = {key for key, o in organizations.items() if o.is_active}
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    new = sorted(active - known, key=int)
    stopped = known - active
    reported = set(json.loads(context.cursor or "[]"))
    newly_stopped = sorted(stopped - reported, key=int)
    for key in newly_stopped:
        state = "deactivated" if key in organizations else "deleted"
        context.log.warning(f"organization {key} was {state}: it is no longer synced; its partition and "
                            "BigQuery dataset are kept untouched")
    for key in sorted(reported & active, key=int):
        context.log.info(f"organization {key} is active again: syncing resumes where its watermarks stand")
    cursor = json.dumps(sorted(stopped, key=int))
    summary = f"{len(active)} active organizations, {len(new)} new, {len(stopped)} no longer synced" + (
        f" (just now: {', '.join(newly_stopped)})" if newly_stopped else "")
    if not new:
        context.update_cursor(cursor)
        return dg.SkipReason(summary)
    return dg.SensorResult(dynamic_partitions_requests=[tenants.build_add_request(new)], cursor=cursor)
