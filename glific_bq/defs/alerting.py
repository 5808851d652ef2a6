"""Alerting: the ``stalled_watermarks`` sensor, a thin shell over ``glific_bq.alerts``.

Every minute it reads the watermarks, and for each incident that opens or clears (once, not every
minute): logs it (ERROR when it opens, INFO when it clears), records an observation of
``bigquery/<table>`` on the tenant's partition (Catalog → the asset → its events), and posts it
to ``GLIFIC_ALERT_WEBHOOK_URL`` if set. Its incidents, and what is still to be delivered, live in
the sensor's cursor: a webhook that is down is retried at the next evaluation, and the sensor
never fails because of it. Settings: ``GLIFIC_ALERT_*`` (see ``glific_bq.alerts.AlertSettings``).
"""

from __future__ import annotations

import dagster as dg

from glific_bq import alerts, horizon
from glific_bq.registry import TABLES
from glific_bq.roster import select_tenants

from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres


def observation(incident: dict, status: str) -> dg.AssetObservation:
    """What the UI shows on the tenant's partition of ``bigquery/<table>`` when an incident opens
    (``status`` ``open``) or clears (``resolved``)."""
    text = alerts.alert_text(incident) if status == "open" else alerts.recovery_text(incident)
    metadata: dict[str, object] = {
        "alert": f"{incident['kind']} {status}",
        "kind": incident["kind"],
        "status": status,
        "organization_id": dg.MetadataValue.int(incident["organization_id"]),
        "detail": incident["detail"],
        "since": incident.get("since") or "",
        "opened_at": incident["opened_at"],
        "message": dg.MetadataValue.md(text),
    }
    if incident.get("organization"):
        metadata["organization"] = incident["organization"]
    if status == "resolved":
        metadata["resolved_at"] = incident["resolved_at"]
    return dg.AssetObservation(
        asset_key=["bigquery", incident["table"]],
        partition=str(incident["organization_id"]),
        description=text.splitlines()[0],
        metadata=metadata,
    )


def deliver(context: dg.SensorEvaluationContext, webhook_url: str | None, state: dict) -> tuple[dict, str]:
    """Post what is undelivered; returns the next state and a note for the tick. Never raises for
    the webhook: undelivered messages stay so and are retried at the next evaluation."""
    pending_alerts, pending_recoveries = alerts.undelivered(state)
    if not (pending_alerts or pending_recoveries):
        return state, ""
    if not webhook_url:  # the logs and the UI are the only channels: nothing to retry
        return alerts.mark_delivered(state), ""
    count = f"{len(pending_alerts)} alert(s) and {len(pending_recoveries)} recovery message(s)"
    try:
        alerts.post_webhook(webhook_url, alerts.webhook_text(pending_alerts, pending_recoveries))
    except alerts.WebhookError as error:
        context.log.warning(f"could not deliver {count}, retrying at the next evaluation: {error}")
        return state, f"; webhook failed, {count} to retry"
    context.log.info(f"delivered {count} to the alert webhook")
    return alerts.mark_delivered(state), f"; delivered {count}"


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts once when a tenant-table stops syncing (stalled watermark, repeated failures), once when it recovers.",
)
def stalled_watermarks(context: dg.SensorEvaluationContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
    settings = alerts.AlertSettings.from_env()
    with postgres.source() as source:
        unprotected = horizon.late_commit_warning(source.control)
        roster = select_tenants(source.control, bigquery.config())
        snapshot = alerts.read_status(source.control, TABLES, roster.destinations)
    if unprotected:  # every evaluation: a stall this causes is invisible to the checks above
        context.log.warning(unprotected)
    tick = alerts.evaluate(
        alerts.load_state(context.cursor), snapshot,
        stall_after=settings.stall_after, failures_after=settings.failures_after,
    )
    for incident in tick.new.values():
        context.log.error(alerts.alert_text(incident))
    for incident in tick.resolved.values():
        context.log.info(alerts.recovery_text(incident))
    state, delivery = deliver(context, settings.webhook_url, tick.state)
    cursor = alerts.dump_state(state)
    summary = f"{len(tick.new)} new incident(s), {len(tick.resolved)} resolved, {len(state['incidents'])} open{delivery}"
    if unprotected:
        summary += "; late-commit protection OFF (grant pg_read_all_stats)"
    if not tick.changed:
        context.update_cursor(cursor)
        return dg.SkipReason(f"no change: {summary}")

    events = [observation(i, "open") for i in tick.new.values()]
    events += [observation(i, "resolved") for i in tick.resolved.values()]
    # An observation on a partition the instance does not know is stored but listed under no
    # tenant in the UI: register the tenant first, as the sync job does for a tenant it finds.
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    missing = sorted({e.partition for e in events} - known, key=int)
    return dg.SensorResult(
        asset_events=events,
        dynamic_partitions_requests=[tenants.build_add_request(missing)] if missing else None,
        cursor=cursor,
        skip_reason=summary,  # no run to request: the tick reads as skipped, with this summary
    )


#: For ``Definitions(sensors=[..., *sensors])``.
sensors = [stalled_watermarks]
