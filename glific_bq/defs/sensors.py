"""Sensors: tenant discovery."""

import dagster as dg

from glific_bq.tenants import list_organizations

from .partitions import tenants
from .resources import GlificPostgres


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def tenant_discovery(context: dg.SensorEvaluationContext, postgres: GlificPostgres):
    """Adds a ``tenants`` partition for every active organization that has none yet."""
    with postgres.source() as source:
        active = {o.partition_key for o in list_organizations(source.control) if o.is_active}
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    new = sorted(active - known, key=int)
    if not new:
        return dg.SkipReason(f"{len(active)} active organizations, all registered")
    return dg.SensorResult(dynamic_partitions_requests=[tenants.build_add_request(new)])
