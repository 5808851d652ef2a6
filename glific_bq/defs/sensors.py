"""Sensors: tenant discovery, from Glific's own control plane (``glific_bq.roster``)."""

import hashlib
import json

import dagster as dg

from glific_bq.roster import Roster, select_tenants

from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres

#: The roster as an asset: its latest materialization lists every organization, synced or not and why.
ROSTER_KEY = dg.AssetKey(["glific", "tenant_roster"])
roster_spec = dg.AssetSpec(
    key=ROSTER_KEY,
    description="Which organizations are synced, into which project and dataset, and why the others are not "
    "(Glific's BigQuery credentials, suspensions, deletions; GLIFIC_BQ_ORGANIZATIONS and the include/exclude lists). "
    "Recorded by the tenant_discovery sensor whenever it changes.",
    group_name="glific",
    kinds={"postgres"},
)


def roster_table(roster: Roster) -> str:
    """The roster as a Markdown table, by organization id (no key material: projects and datasets only)."""
    rows = [(t.id, t.organization.name or "", "synced", f"{t.project}.{t.dataset}") for t in roster.tenants]
    rows += [(n.id, n.organization.name or "", "not synced", n.reason) for n in roster.not_synced]
    lines = ["| organization | name | status | dataset, or why not |", "|---|---|---|---|"]
    lines += [f"| {org} | {name} | {status} | {detail} |" for org, name, status, detail in sorted(rows)]
    return "\n".join(lines)


def _cursor(text: str | None) -> dict:
    value = json.loads(text or "{}")
    if isinstance(value, list):  # before the roster: the stopped organizations only
        return {"stopped": value, "digest": None}
    return {"stopped": value.get("stopped", []), "digest": value.get("digest")}


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def tenant_discovery(context: dg.SensorEvaluationContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
    """Adds a ``tenants`` partition for every organization that becomes a tenant (Glific's rule:
    BigQuery turned on in its settings, active, not suspended, not deleted); says once when one
    stops being synced, and why (its partition, history and BigQuery data are kept). Records the
    roster (``glific/tenant_roster``) whenever it changes."""
    with postgres.source() as source:
        roster = select_tenants(source.control, bigquery.config())
    synced = {t.organization.partition_key for t in roster.tenants}
    reasons = {n.organization.partition_key: n.reason for n in roster.not_synced}
    known = set(context.instance.get_dynamic_partitions(tenants.name))
    new = sorted(synced - known, key=int)
    stopped = known - synced
    cursor = _cursor(context.cursor)
    reported = set(cursor["stopped"])
    newly_stopped = sorted(stopped - reported, key=int)
    for key in newly_stopped:
        why = reasons.get(key, "the organization was deleted")
        context.log.warning(f"organization {key} is no longer synced ({why}); its partition and BigQuery "
                            "dataset are kept untouched")
    for key in sorted(reported & synced, key=int):
        context.log.info(f"organization {key} is synced again: syncing resumes where its watermarks stand")

    table = roster_table(roster)
    digest = hashlib.sha256(table.encode()).hexdigest()
    events = []
    if digest != cursor.get("digest"):
        events.append(dg.AssetMaterialization(asset_key=ROSTER_KEY, metadata={
            "synced": dg.MetadataValue.int(len(roster.tenants)),
            "not_synced": dg.MetadataValue.int(len(roster.not_synced)),
            "organizations": dg.MetadataValue.md(table),
        }))
    new_cursor = json.dumps({"stopped": sorted(stopped, key=int), "digest": digest})
    summary = f"{len(synced)} organizations synced, {len(new)} new, {len(roster.not_synced)} not synced" + (
        f" (just now: {', '.join(newly_stopped)})" if newly_stopped else "")
    if not new and not events:
        context.update_cursor(new_cursor)
        return dg.SkipReason(summary)
    context.log.info(summary)
    requests = [tenants.build_add_request(new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests, asset_events=events, cursor=new_cursor)
