"""Clean tables in history mode (``GLIFIC_BQ_VERSIONS=history``): every version kept in
``<table>_history``, exactly one row per key in ``<table>``, refreshed at a cost that follows the
changes (glific#5531, #5255, #3194).

The sync appends every version to ``<table>_history`` (``warehouse.tables.written_table_id``),
partitioned by the day of ``bq_inserted_at`` (the send time) and clustered by ``id``; glific_bq
never deletes from it, except ids deleted at the source in a ``PROPAGATE`` table
(``glific_bq.deletes``: an erased contact is erased from the history too). ``<table>`` keeps
Glific's name, columns, partitioning and clustering and holds, per key (``dedup.version_key``),
the newest version in the order dedup keeps (``dedup.newest_first``): dashboards and dbt models
read it unchanged, at partition-pruned cost.

**A refresh** (``refresh_table``) of one tenant-table, after its previous one (the *mark*):

1. ``CHANGES`` (SELECT): the ``inserted_at`` months of the keys with a version sent at or after
   the lower bound (``dedup.lower_bound`` of the mark: the buffer window and ``SINCE_MARGIN``
   reach back for versions that became visible late), read from the history's partitions of
   those days only (a literal ``bq_inserted_at >=`` bound), columns ``id``, ``inserted_at``,
   ``bq_inserted_at``. A key's newest version is necessarily among them (it was sent after any
   version of it the mark already covered), and so is its ``inserted_at`` (immutable, shared by
   all versions), hence the month its clean row lives in: a re-sent old row brings its old
   month, never a bare time window.
2. ``MERGE`` (one statement, atomic): the newest version of each such key, from the same
   history partitions, into ``<table>`` restricted to those months (``dedup.month_filter``:
   literal ranges, so BigQuery prunes the clean table's monthly partitions; on a Glific-created
   unpartitioned table the predicate still restricts the rows compared but prunes nothing). A
   matched row is updated only by a newer version (``_NEWER``): a refresh run again changes
   nothing. No changed key: no MERGE.
3. The mark moves to the refresh's start, in PostgreSQL (``glific_bq_clean_marks``, beside the
   watermarks), only after the MERGE succeeded. A refresh that dies leaves the clean table as it
   was, or fully refreshed with the mark behind: the next one merges the same keys again, which
   changes nothing, and goes on.

**The first refresh** (no mark) takes a dataset over: an existing ``<table>`` (Glific's, or one
deduplicated in place by glific_bq) may hold versions that exist nowhere else, and rows without
``bq_uuid``. It gives those rows one (``GIVE_KEYS``), copies into the history every row of
``<table>`` the history lacks by ``(id, bq_uuid)`` (``COPY``: an INSERT…SELECT, since a copy job
would keep ``<table>``'s partitioning rather than the history's; the anti-join makes it exact when
run again after a crash), deduplicates ``<table>`` in place once (``dedup.dedup_table``, a full
pass), then merges the whole history. Every step can be run again. Until then (the sync appends
to the history from the first history-mode sync on) ``<table>`` shows what it held before.

Values are query parameters or literals formatted here from dates and numbers; identifiers are
validated (``identifiers.checked_table``) and quoted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
from google.api_core.exceptions import NotFound

from glific_bq import dedup, identifiers
from glific_bq.registry import TableSpec
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID
from glific_bq.sent_months import NO_MONTH
from glific_bq.source import ensure_state_tables
from glific_bq.stamping import local_send_time
from glific_bq.warehouse import Warehouse, queries, tables

log = logging.getLogger(__name__)

MARKS = "glific_bq_clean_marks"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {MARKS} (
    organization_id bigint NOT NULL,
    "table" text NOT NULL,
    destination text NOT NULL,
    refreshed_at timestamptz NOT NULL,  -- every version sent before it (less the margin) is in the clean table
    PRIMARY KEY (organization_id, "table", destination)
)
"""

CHANGES = """
SELECT {month} AS month, COUNT(DISTINCT id) AS ids
FROM `{history}`
WHERE {recent}
GROUP BY month
"""

MERGE = """
MERGE `{clean}` AS t
USING (
  SELECT {columns} FROM `{history}`
  WHERE {recent}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {newest_first}) = 1
) AS s
ON {same_key} AND {in_months}
WHEN MATCHED AND {newer} THEN UPDATE SET {assignments}
WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})
"""

#: ``s`` is a newer version than ``t``, in ``dedup.NEWEST_FIRST`` order (no send time: oldest;
#: then ``bq_uuid``, NULL the smallest).
_NEWER = ("({s_sent} > {t_sent} OR ({s_sent} = {t_sent} AND IFNULL(s.bq_uuid, '') > IFNULL(t.bq_uuid, '')))")
_NO_SEND_TIME = {"TIMESTAMP": "TIMESTAMP '0001-01-01 00:00:00+00'", "DATETIME": "DATETIME '0001-01-01 00:00:00'"}

GIVE_KEYS = "UPDATE `{clean}` SET bq_uuid = GENERATE_UUID() WHERE bq_uuid IS NULL"

COPY = """
INSERT INTO `{history}` ({columns})
SELECT {columns} FROM `{clean}` AS c
WHERE NOT EXISTS (SELECT 1 FROM `{history}` AS h WHERE h.id = c.id AND h.bq_uuid = c.bq_uuid)
"""


@dataclass
class RefreshResult:
    """What one refresh of one (organization, table) did (``as_metadata`` for run metadata).

    ``ids``: keys with a version since the lower bound; ``merged``: clean rows inserted or
    updated; ``months``: the clean table's months the MERGE was restricted to; ``since``: the
    send time from which the history was read (None: all of it); ``taken_over``: this was the
    first refresh (see the module docstring), with ``copied`` rows copied into the history and
    ``deduplicated`` older versions deleted from ``<table>``."""

    organization_id: int
    table: str
    ids: int = 0
    merged: int = 0
    months: list[str] = field(default_factory=list)
    since: datetime | None = None
    taken_over: bool = False
    copied: int = 0
    deduplicated: int = 0
    seconds: float = 0.0
    skipped_reason: str | None = None
    error: str | None = None

    def as_metadata(self) -> dict[str, object]:
        data: dict[str, object] = {
            "organization_id": self.organization_id, "table": self.table, "changed_ids": self.ids,
            "merged": self.merged, "months": ", ".join(self.months), "seconds": round(self.seconds, 3),
            "history_since": self.since.isoformat() if self.since else "all",
        }
        if self.taken_over:
            data.update(taken_over=True, copied_to_history=self.copied, deduplicated=self.deduplicated)
        for key in ("skipped_reason", "error"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


# -- the mark (PostgreSQL) ------------------------------------------------------------------------


def ensure_table(conn: psycopg.Connection) -> None:
    ensure_state_tables(conn, "clean_marks", _SCHEMA)


def mark(conn: psycopg.Connection, organization_id: int, table: str, destination: str) -> datetime | None:
    """The start of this tenant-table's last successful refresh; None before the first."""
    ensure_table(conn)
    row = conn.execute(
        f'SELECT refreshed_at FROM {MARKS} WHERE organization_id = %s AND "table" = %s AND destination = %s',
        (organization_id, table, destination),
    ).fetchone()
    return row[0] if row else None


def move_mark(conn: psycopg.Connection, organization_id: int, table: str, destination: str, at: datetime) -> None:
    """Move the mark to ``at``, after the refresh that started then succeeded (forward only)."""
    ensure_table(conn)
    conn.execute(
        f"""INSERT INTO {MARKS} (organization_id, "table", destination, refreshed_at) VALUES (%s, %s, %s, %s)
            ON CONFLICT (organization_id, "table", destination)
            DO UPDATE SET refreshed_at = GREATEST({MARKS}.refreshed_at, EXCLUDED.refreshed_at)""",
        (organization_id, table, destination, at),
    )


# -- the refresh ----------------------------------------------------------------------------------


def refresh_table(
    control: psycopg.Connection,
    warehouse: Warehouse,
    spec: TableSpec,
    *,
    buffer_window: timedelta = timedelta(0),
    now: datetime | None = None,
    full: bool = False,
) -> RefreshResult:
    """Bring ``<table>`` up to date with ``<table>_history`` for the keys changed since the last
    refresh (all of them on the first one, or with ``full``); see the module docstring.

    ``buffer_window``: as in ``dedup.dedup_table`` (legacy streaming), how far back versions may
    still become visible: the history is read from ``mark - buffer_window - SINCE_MARGIN``.
    ``now``: the refresh's clock (UTC), the next mark. A table without a history is skipped with
    a reason (it is written in place: ``tables.keeps_history``)."""
    started = time.monotonic()
    name = identifiers.checked_table(spec.name)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    result = RefreshResult(warehouse.organization.id, name)
    clean_id = f"{warehouse.dataset_ref}.{name}"
    history_id = f"{warehouse.dataset_ref}.{tables.history_table(name)}"
    try:
        history = {f.name: f for f in warehouse.client.get_table(history_id, **warehouse.calls.calls).schema}
        clean_schema = warehouse.client.get_table(clean_id, **warehouse.calls.calls).schema
    except NotFound:
        result.skipped_reason = f"{history_id} or {clean_id} does not exist (the table is written in place)"
        result.seconds = time.monotonic() - started
        return result
    layout = warehouse.config.layout
    key = dedup.version_key(layout, name)
    missing = dedup.missing_version_columns(history, key)
    if missing:
        raise dedup.DedupError(f"{history_id} has no {', '.join(missing)} column")
    sent_type = history[BQ_INSERTED_AT].field_type
    destination = warehouse.destination
    current = mark(control, warehouse.organization.id, name, destination)
    last = None if full else current

    if current is None:
        _take_over(warehouse, spec, clean_id, history_id, clean_schema, result, now)
        history = {f.name: f for f in warehouse.client.get_table(history_id, **warehouse.calls.calls).schema}
        clean_schema = warehouse.client.get_table(clean_id, **warehouse.calls.calls).schema

    lower = dedup.lower_bound(last, buffer_window)
    result.since = lower
    recent = "TRUE" if lower is None else f"{BQ_INSERTED_AT} >= {_send_time_literal(lower, sent_type, warehouse)}"
    column = spec.partition_column
    clean_types = {f.name: f.field_type for f in clean_schema}
    by_month = column in history and clean_types.get(column) in dedup.MONTH_LITERAL
    month = f"DATE_TRUNC(DATE(`{column}`), MONTH)" if by_month else "CAST(NULL AS DATE)"
    changes = queries.rows(warehouse, CHANGES.format(month=month, history=history_id, recent=recent))
    result.ids = sum(row["ids"] for row in changes)
    if result.ids:
        months = [row["month"] or NO_MONTH for row in changes]
        in_months = dedup.month_filter(column, clean_types[column], months, alias="t") if by_month else "TRUE"
        result.months = [m.strftime("%Y-%m") if m != NO_MONTH else "none" for m in months] if by_month else []
        columns = [f.name for f in clean_schema if f.name in history]
        result.merged = queries.dml(warehouse, MERGE.format(
            clean=clean_id, history=history_id, recent=recent, key=", ".join(key),
            newest_first=dedup.NEWEST_FIRST, columns=", ".join(f"`{c}`" for c in columns),
            values=", ".join(f"s.`{c}`" for c in columns),
            same_key=" AND ".join(f"t.`{k}` = s.`{k}`" for k in key), in_months=in_months,
            newer=_NEWER.format(s_sent=_sent("s", sent_type), t_sent=_sent("t", sent_type)),
            assignments=", ".join(f"`{c}` = s.`{c}`" for c in columns if c not in key),
        ))
    move_mark(control, warehouse.organization.id, name, destination, now)
    result.seconds = time.monotonic() - started
    log.info("refresh %s: %d changed ids in %d month(s), %d clean rows merged", clean_id, result.ids,
             len(result.months), result.merged)
    return result


def _take_over(warehouse: Warehouse, spec: TableSpec, clean_id: str, history_id: str, clean_schema,
               result: RefreshResult, now: datetime) -> None:
    """The first refresh's steps before its MERGE: ``<table>``'s versions kept in the history,
    then ``<table>`` deduplicated in place once (each step safe to run again)."""
    result.taken_over = True
    # The history gets every column <table> has (a column Glific wrote that the source dropped).
    tables.ensure_columns(warehouse, history_id, list(clean_schema))
    columns = ", ".join(f"`{f.name}`" for f in clean_schema)
    if BQ_UUID in {f.name for f in clean_schema}:
        queries.dml(warehouse, GIVE_KEYS.format(clean=clean_id))
    result.copied = queries.dml(warehouse, COPY.format(history=history_id, clean=clean_id, columns=columns))
    deduplicated = dedup.dedup_table(warehouse, spec, since=None, now=now)
    result.deduplicated = deduplicated.deleted


def refresh_tenant(
    control: psycopg.Connection,
    warehouse: Warehouse,
    specs: Sequence[TableSpec],
    *,
    buffer_window: timedelta = timedelta(0),
    now: datetime | None = None,
    full: bool = False,
) -> list[RefreshResult]:
    """``refresh_table`` for each of ``specs``; a table that fails comes back with ``error`` set
    and the others go on."""
    results = []
    for spec in specs:
        started = time.monotonic()
        try:
            results.append(refresh_table(control, warehouse, spec, buffer_window=buffer_window, now=now, full=full))
        except Exception as error:  # this table only
            message = f"{type(error).__name__}: {error}"
            log.error("refresh of %s for organization %s failed: %s", spec.name, warehouse.organization.id, message)
            results.append(RefreshResult(warehouse.organization.id, spec.name, seconds=time.monotonic() - started,
                                         error=message))
    return results


def _sent(alias: str, sent_type: str) -> str:
    return f"IFNULL({alias}.{BQ_INSERTED_AT}, {_NO_SEND_TIME[sent_type]})"


def _send_time_literal(value: datetime, sent_type: str, warehouse: Warehouse) -> str:
    """A send-time bound as a literal (so that BigQuery prunes the history's day partitions at
    planning time): UTC, or the organization's local send time as ``stamping`` stamps it."""
    if sent_type == "DATETIME":
        local = local_send_time(value, warehouse.organization.checked_timezone())
        return f"DATETIME '{local:%Y-%m-%d %H:%M:%S.%f}'"
    return f"TIMESTAMP '{value.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}+00'"


__all__ = ["MARKS", "RefreshResult", "mark", "move_mark", "refresh_table", "refresh_tenant"]
