"""What the database says: each tenant-table's sync status (``read_status``) and the problems
in it (``find_problems``: stalled or failing), with errors made safe to send."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from glific_bq import plan, redact
from glific_bq.alerts.settings import FAILURES_AFTER, STALL_AFTER
from glific_bq.horizon import HORIZON_SECONDS
from glific_bq.registry import TableSpec

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
    #: when the watermark last moved (``advanced_at``: its update cursor, see ``glific_bq.watermarks``;
    #: for a row never advanced by glific_bq, its ``created_at``); None: no watermark row yet
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
SELECT o.id, o.name, w."table", COALESCE(w.advanced_at, w.created_at),
       COALESCE(w.failures, 0), w.last_error, w.last_failed_at
FROM unnest(%s::bigint[], %s::text[]) AS t(id, destination)
JOIN organizations o ON o.id = t.id
LEFT JOIN glific_bq_watermarks w
       ON w.organization_id = t.id AND w.destination = t.destination AND w."table" = ANY(%s)
ORDER BY o.id, w."table"
"""


def read_status(conn: psycopg.Connection, tables: Sequence[TableSpec], tenants: Mapping[int, str],
                horizon_seconds: float = HORIZON_SECONDS) -> Snapshot:
    """Every tenant's (organization, table) that has a watermark or rows waiting (``tenants``:
    organization id -> destination, ``Roster.destinations``; ``horizon_seconds``: the sync's
    margin, within which a change does not count as waiting yet).

    Queries: ``plan``'s dirty query per table plus one over the watermarks, whatever the number of
    organizations. A pair whose last sync failed counts as pending even while ``plan`` holds it
    back for backoff (its rows were not delivered), so that a stall does not seem to clear and
    reopen with each backoff period.
    """
    names, ids = [spec.name for spec in tables], sorted(tenants)
    dirty = {spec.name: set(plan.dirty_organizations(conn, spec, tenants, horizon_seconds)) for spec in tables}
    (now,) = conn.execute("SELECT now()").fetchone()
    names_by_org: dict[int, str | None] = {}
    rows: dict[tuple[int, str], tuple] = {}
    for org_id, org_name, table, moved_at, failures, last_error, last_failed_at in conn.execute(_STATUS, (ids, [tenants[i] for i in ids], names)):
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
    tenants: Mapping[int, str],
    *,
    stall_after: timedelta = STALL_AFTER,
    failures_after: int = FAILURES_AFTER,
    waiting_since: Mapping[tuple[int, str], datetime] | None = None,
    horizon_seconds: float = HORIZON_SECONDS,
) -> list[Problem]:
    """Every (organization, table) that is stalled or failing now (see the module's docstring)."""
    return problems_in(read_status(conn, tables, tenants, horizon_seconds), stall_after=stall_after,
                       failures_after=failures_after, waiting_since=waiting_since)


def safe_error(error: str | None, limit: int = MAX_ERROR_CHARS) -> str:
    """An error fit for an alert (``redact.safe_error``, shorter). Defence in depth: stored errors
    are masked already, but an alert leaves the system."""
    return redact.safe_error(error, limit)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
