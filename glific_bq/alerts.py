"""Alerts when a tenant-table stops syncing (glific#3196, #4599: single tables silently stopped
syncing while everything else went on), once per incident.

Two kinds of problem per (organization, table):

- ``stalled``: the source holds rows beyond the watermark (``plan``'s notion of work to do) and
  the watermark has not moved for ``stall_after``;
- ``failing``: ``failures_after`` or more consecutive failed syncs (``bigquery_jobs.failures``).
  A failing pair is not also reported as stalled: the failure is the cause, and says why.

"Not moved" is ``bigquery_jobs.advanced_at``, or for a row never advanced by glific_bq its
``updated_at`` (its creation for ours, the last move by Glific's own sync for an adopted row).
An old watermark alone is not a stall: a tenant idle for hours that just received a message has
one too, and is synced within the minute. So the wait is also counted from when the rows were
first seen waiting (``waiting_since``), which the sensor remembers between evaluations; without
that memory (a plain ``find_problems(conn, tables)``) only the watermark's age counts.

Incidents live in a JSON-serializable ``state`` (the sensor's cursor): ``diff`` turns each
evaluation's problems into new, resolved and still-open incidents, so that an incident gives one
alert when it opens and one recovery message when it clears, not one per evaluation. A message
that could not be delivered (webhook down) stays marked undelivered and is retried next time.

Plain Python: no Dagster here (see ``glific_bq.defs.alerting``).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import psycopg

from glific_bq import plan, redact
from glific_bq.registry import TableSpec

# -- configuration: every default in one place ------------------------------------------------------

WEBHOOK_URL_ENV = "GLIFIC_ALERT_WEBHOOK_URL"
STALL_MINUTES_ENV = "GLIFIC_ALERT_STALL_MINUTES"
FAILURES_ENV = "GLIFIC_ALERT_FAILURES"

#: A watermark that has not moved for this long while rows wait is stalled.
STALL_AFTER = timedelta(minutes=10)
#: This many consecutive failed syncs of one (organization, table) is an incident.
FAILURES_AFTER = 3


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    stall_after: timedelta = STALL_AFTER
    failures_after: int = FAILURES_AFTER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """Settings from ``GLIFIC_ALERT_*`` variables; unset or empty ones keep their defaults."""
        env = os.environ if environ is None else environ
        settings = cls(webhook_url=(env.get(WEBHOOK_URL_ENV) or "").strip() or None)
        if minutes := (env.get(STALL_MINUTES_ENV) or "").strip():
            settings = replace(settings, stall_after=timedelta(minutes=_positive(STALL_MINUTES_ENV, minutes, float)))
        if failures := (env.get(FAILURES_ENV) or "").strip():
            settings = replace(settings, failures_after=_positive(FAILURES_ENV, failures, int))
        return settings


def _positive(name: str, value: str, kind: type):
    try:
        number = kind(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return number


# -- what the database says ---------------------------------------------------------------------------

STALLED = "stalled"
FAILING = "failing"

#: Longest error text put in an alert.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class PairStatus:
    """One (organization, table) as the database sees it."""

    organization_id: int
    table: str
    organization: str | None  # the organization's name
    pending: bool  # rows beyond the watermark (or a last sync that failed)
    #: when the watermark last moved (``advanced_at``; for a row never advanced by glific_bq, its
    #: ``updated_at``); None: no watermark row yet
    moved_at: datetime | None
    failures: int = 0
    last_error: str | None = None
    last_failed_at: datetime | None = None

    @property
    def key(self) -> tuple[int, str]:
        return self.organization_id, self.table


@dataclass(frozen=True)
class Snapshot:
    now: datetime  # the database clock, which also stamps advanced_at
    pairs: list[PairStatus] = field(default_factory=list)


_STATUS = """
SELECT o.id, o.name, w."table",
       COALESCE(w.advanced_at, w.updated_at AT TIME ZONE 'UTC', w.inserted_at AT TIME ZONE 'UTC'),
       COALESCE(w.failures, 0), w.last_error, w.last_failed_at
FROM organizations o
LEFT JOIN bigquery_jobs w ON w.organization_id = o.id AND w."table" = ANY(%s)
WHERE COALESCE(o.is_active, true)
ORDER BY o.id, w."table"
"""


def read_status(conn: psycopg.Connection, tables: Sequence[TableSpec]) -> Snapshot:
    """Every active (organization, table) that has a watermark or rows waiting.

    Queries: ``plan``'s dirty query per table plus one over the watermarks, whatever the number of
    organizations. A pair whose last sync failed counts as pending even while ``plan`` holds it
    back for backoff (its rows were not delivered), so that a stall does not seem to clear and
    reopen with each backoff period.
    """
    names = [spec.name for spec in tables]
    dirty = {spec.name: set(plan.dirty_organizations(conn, spec)) for spec in tables}
    (now,) = conn.execute("SELECT now()").fetchone()
    names_by_org: dict[int, str | None] = {}
    rows: dict[tuple[int, str], tuple] = {}
    for org_id, org_name, table, moved_at, failures, last_error, last_failed_at in conn.execute(_STATUS, (names,)):
        names_by_org[org_id] = org_name
        if table is not None:
            rows[(org_id, table)] = (moved_at, failures, last_error, last_failed_at)
    keys = set(rows) | {(org_id, name) for name, ids in dirty.items() for org_id in ids if org_id in names_by_org}
    pairs = []
    for org_id, table in sorted(keys):
        moved_at, failures, last_error, last_failed_at = rows.get((org_id, table), (None, 0, None, None))
        pairs.append(PairStatus(
            organization_id=org_id, table=table, organization=names_by_org[org_id],
            pending=org_id in dirty.get(table, ()) or failures > 0, moved_at=moved_at,
            failures=failures, last_error=last_error, last_failed_at=last_failed_at,
        ))
    return Snapshot(now=now, pairs=pairs)


# -- problems -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something wrong with one (organization, table) now: ``kind`` is ``stalled`` or ``failing``."""

    organization_id: int
    table: str
    kind: str
    detail: str
    since: datetime | None = None  # stalled: rows waiting since; failing: the last failure
    organization: str | None = None  # the organization's name

    @property
    def key(self) -> str:
        return incident_key(self.organization_id, self.table, self.kind)


def incident_key(organization_id: int, table: str, kind: str) -> str:
    return f"{organization_id}/{table}/{kind}"


def problems_in(
    snapshot: Snapshot,
    *,
    stall_after: timedelta = STALL_AFTER,
    failures_after: int = FAILURES_AFTER,
    waiting_since: Mapping[tuple[int, str], datetime] | None = None,
) -> list[Problem]:
    """The problems of a snapshot. ``waiting_since``: when each pending pair was first seen
    waiting (pairs missing from it are taken as just seen); None counts the watermark's age only."""
    problems = []
    for pair in snapshot.pairs:
        if pair.failures >= failures_after:
            problems.append(Problem(
                pair.organization_id, pair.table, FAILING,
                f"{pair.failures} consecutive failed syncs, the last at {_when(pair.last_failed_at)}; "
                f"no watermark progress since {_when(pair.moved_at)}. Last error: {safe_error(pair.last_error)}",
                since=pair.last_failed_at, organization=pair.organization,
            ))
        elif pair.pending:
            starts = [pair.moved_at]
            if waiting_since is not None:
                starts.append(waiting_since.get(pair.key, snapshot.now))
            starts = [s for s in starts if s is not None]
            if starts and snapshot.now - max(starts) >= stall_after:
                since = max(starts)
                problems.append(Problem(
                    pair.organization_id, pair.table, STALLED,
                    f"rows waiting to sync since {_when(since)}; no watermark progress since {_when(pair.moved_at)}",
                    since=since, organization=pair.organization,
                ))
    return problems


def find_problems(
    conn: psycopg.Connection,
    tables: Sequence[TableSpec],
    *,
    stall_after: timedelta = STALL_AFTER,
    failures_after: int = FAILURES_AFTER,
    waiting_since: Mapping[tuple[int, str], datetime] | None = None,
) -> list[Problem]:
    """Every (organization, table) that is stalled or failing now (see the module's docstring)."""
    return problems_in(read_status(conn, tables), stall_after=stall_after, failures_after=failures_after,
                       waiting_since=waiting_since)


def safe_error(error: str | None, limit: int = MAX_ERROR_CHARS) -> str:
    """An error fit for an alert (``redact.safe_error``, shorter). Defence in depth: stored errors
    are masked already, but an alert leaves the system."""
    return redact.safe_error(error, limit)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


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


# -- messages ----------------------------------------------------------------------------------------

_WHAT_TO_DO = {
    STALLED: (
        "Check Dagster (Runs) for failed or hung `sync_job` runs (a hung run holds this table's lock), "
        "and that the `sync_every_minute` schedule is running. To sync it now: "
        "`glific-bq sync --organization {org} --table {table}`."
    ),
    FAILING: (
        "Read the error and fix its cause (often the organization's BigQuery credentials, dataset "
        "permissions or timezone). Syncs are retried with backoff (up to hourly); to retry now: "
        "`glific-bq sync --organization {org} --table {table}`. The count resets at the next success."
    ),
}


def _who(incident: Mapping) -> str:
    name = incident.get("organization")
    org = f"organization {incident['organization_id']}" + (f" ({name})" if name else "")
    return f"{org}, table `{incident['table']}`"


def alert_text(incident: Mapping) -> str:
    """The alert of one incident: which organization and table, what, and what to do."""
    what = "has STALLED" if incident["kind"] == STALLED else "is FAILING"
    todo = _WHAT_TO_DO[incident["kind"]].format(org=incident["organization_id"], table=incident["table"])
    return f"[glific_bq] {_who(incident)} {what}: {incident['detail'].rstrip('.')}.\nWhat to do: {todo}"


def recovery_text(incident: Mapping) -> str:
    """The recovery message of one incident."""
    opened = _parse(incident["opened_at"])
    resolved = _parse(incident.get("resolved_at") or incident["opened_at"])
    started = opened
    if incident["kind"] == STALLED and incident.get("since"):  # a failing incident's is its last failure
        started = min(opened, _parse(incident["since"]))
    minutes = max(0, round((resolved - started).total_seconds() / 60))
    return (
        f"[glific_bq] RESOLVED: {_who(incident)} is syncing again (was {incident['kind']} since "
        f"{_when(started)}, alerted {_when(opened)}, cleared {_when(resolved)}: {minutes} min)."
    )


#: Incidents listed in one webhook message; the others are counted.
MAX_LISTED = 20


def webhook_text(alerts: Sequence[Mapping], recoveries: Sequence[Mapping]) -> str:
    """One message for everything to deliver, so that an outage of many tenants is one post."""
    lines = [alert_text(i) for i in alerts] + [recovery_text(i) for i in recoveries]
    if len(lines) > MAX_LISTED:
        lines = lines[:MAX_LISTED] + [
            f"… and {len(lines) - MAX_LISTED} more: see the observations of the bigquery/<table> assets in Dagster."
        ]
    return "\n\n".join(lines)


# -- the webhook -------------------------------------------------------------------------------------


class WebhookError(RuntimeError):
    """The alert webhook could not be reached or refused the message. Never shows the URL's path or
    query, which hold the webhook's secret."""


def post_webhook(url: str, text: str, *, timeout: float = 10) -> None:
    """POST ``{"text": text}`` (Slack's incoming-webhook format, also understood by Mattermost and
    others) to ``url``; raises ``WebhookError`` on any failure."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"the alert webhook URL must be http(s)://host/…, got scheme {parts.scheme!r}")
    body = json.dumps({"text": _slack_escape(text)}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        reply = safe_error(error.read(200).decode("utf-8", "replace"), 200) if error.fp else ""
        raise WebhookError(f"alert webhook at {host} answered HTTP {error.code}: {reply}") from None
    except urllib.error.URLError as error:
        raise WebhookError(f"alert webhook at {host} unreachable: {error.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # timeouts, resets, bad replies
        raise WebhookError(f"alert webhook at {host} failed: {type(error).__name__}: {error}") from None


def _slack_escape(text: str) -> str:
    """Slack reads ``<…>`` as links and mentions: an error text must not ping ``<!channel>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
