"""The sensor's cursor: incidents and when rows were first seen waiting, as JSON, carried from
one evaluation to the next; what is still to be delivered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from glific_bq.alerts.detection import Snapshot, _iso, _parse, problems_in
from glific_bq.alerts.incidents import diff
from glific_bq.alerts.settings import FAILURES_AFTER, STALL_AFTER

# -- state: the sensor's cursor -----------------------------------------------------------------------

STATE_VERSION = 1
#: Recoveries kept for delivery while the webhook is down; the oldest are dropped beyond this.
MAX_UNDELIVERED_RECOVERIES = 1000


def empty_state() -> dict:
    return {"version": STATE_VERSION, "at": None, "incidents": {}, "recoveries": [], "waiting": {}}


def load_state(cursor: str | None) -> dict:
    """The state kept in a cursor; a fresh one if there is none or it is unreadable."""
    try:
        state = json.loads(cursor) if cursor else None
    except ValueError:
        state = None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return empty_state()
    return {**empty_state(), **state}


def dump_state(state: dict) -> str:
    return json.dumps(state, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Evaluation:
    new: dict[str, dict]
    resolved: dict[str, dict]
    still_open: dict[str, dict]
    state: dict  # the next state

    @property
    def changed(self) -> bool:
        return bool(self.new or self.resolved)


def evaluate(
    state: dict,
    snapshot: Snapshot,
    *,
    stall_after: timedelta = STALL_AFTER,
    failures_after: int = FAILURES_AFTER,
) -> Evaluation:
    """One evaluation: the problems of ``snapshot`` against the incidents of ``state``.

    The waiting times are remembered between evaluations; after a gap longer than twice
    ``stall_after`` (the sensor was stopped) they are forgotten, since nobody saw whether the rows
    kept waiting.
    New incidents and resolutions start undelivered (see ``undelivered``).
    """
    now = snapshot.now
    previous = state.get("waiting") or {}
    if state.get("at") is None or now - _parse(state["at"]) > 2 * stall_after:
        previous = {}
    waiting: dict[str, dict[str, str]] = {}
    waiting_since: dict[tuple[int, str], datetime] = {}
    for pair in snapshot.pairs:
        if pair.pending:
            seen = previous.get(pair.table, {}).get(str(pair.organization_id)) or _iso(now)
            waiting.setdefault(pair.table, {})[str(pair.organization_id)] = seen
            waiting_since[pair.key] = _parse(seen)
    problems = problems_in(snapshot, stall_after=stall_after, failures_after=failures_after, waiting_since=waiting_since)
    new, resolved, still_open = diff(state.get("incidents") or {}, problems, now=now)
    recoveries = [*(state.get("recoveries") or []), *({**r, "notified": False} for r in resolved.values())]
    next_state = {
        "version": STATE_VERSION,
        "at": _iso(now),
        "incidents": {**still_open, **new},
        "recoveries": recoveries[-MAX_UNDELIVERED_RECOVERIES:],
        "waiting": waiting,
    }
    return Evaluation(new, resolved, still_open, next_state)


def undelivered(state: dict) -> tuple[list[dict], list[dict]]:
    """``(alerts, recoveries)`` not yet delivered: open incidents not notified, and recoveries."""
    alerts = [i for i in state.get("incidents", {}).values() if not i.get("notified")]
    return alerts, list(state.get("recoveries") or [])


def mark_delivered(state: dict) -> dict:
    """The state once every undelivered alert and recovery has been delivered."""
    incidents = {key: {**incident, "notified": True} for key, incident in state.get("incidents", {}).items()}
    return {**state, "incidents": incidents, "recoveries": []}
