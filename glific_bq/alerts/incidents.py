"""Incidents: ``diff`` turns each evaluation's problems into new, resolved and still-open
incidents, so that an incident alerts once when it opens and once when it clears."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from glific_bq.alerts.detection import Problem, _iso

# -- incidents ---------------------------------------------------------------------------------------


def diff(
    open_incidents: Mapping[str, dict], problems: Iterable[Problem], *, now: datetime | None = None
) -> tuple[dict[str, dict], dict[str, dict], dict[str, dict]]:
    """``(new_incidents, resolved_incidents, still_open)``, each ``{key: incident}``.

    An incident is a JSON-serializable dict: ``organization_id``, ``organization``, ``table``,
    ``kind``, ``detail``, ``since``, ``opened_at``, ``notified`` (its alert was delivered), and
    ``resolved_at`` once resolved. Still-open incidents keep their ``opened_at`` and ``notified``
    and take the current detail. An incident replaced by another kind on the same pair (stalled,
    then failing) is superseded, not resolved: the pair is not well, so no recovery is announced.
    """
    stamp = _iso(now or datetime.now(timezone.utc))
    current = {p.key: p for p in problems}
    troubled = {(p.organization_id, p.table) for p in current.values()}
    new, still_open = {}, {}
    for key, problem in current.items():
        fresh = {
            "organization_id": problem.organization_id,
            "organization": problem.organization,
            "table": problem.table,
            "kind": problem.kind,
            "detail": problem.detail,
            "since": _iso(problem.since) if problem.since else None,
        }
        if key in open_incidents:
            still_open[key] = {**open_incidents[key], **fresh}
        else:
            new[key] = {**fresh, "opened_at": stamp, "notified": False}
    resolved = {
        key: {**incident, "resolved_at": stamp}
        for key, incident in open_incidents.items()
        if key not in current and (incident["organization_id"], incident["table"]) not in troubled
    }
    return new, resolved, still_open
