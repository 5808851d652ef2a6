"""Deduplication of row versions in BigQuery: keep exactly the newest version of every id.

The sync appends every changed row as a new version. This pass deletes the older versions in one
organization's copy of a table, so that ``SELECT * FROM table`` shows each row once.

**Which version is the newest.** The one with the greatest ``(bq_inserted_at, bq_uuid)``: the
send time (a UTC ``TIMESTAMP`` in the raw layout; in the Glific layout the organization's local
``DATETIME``, which ``glific_bq.stamping`` keeps strictly increasing across re-sends, daylight
saving included), ties broken by the UUID. Syncs of one tenant-table are serialized and each reads
a later snapshot, so a later send always carries the same or a newer state of the row; this order
is total and monotonic. ``updated_at`` is not used: it is a local-time DATETIME that repeats an hour
when daylight saving ends, and it has ties (glific#1750, #2093). A row without ``bq_inserted_at``
(written by another tool) has no send time and sorts as the oldest version of its id.

**Rows without ``bq_uuid``** (other tools, glific#2726), and versions identical in
``(id, bq_inserted_at, bq_uuid)``, cannot be told apart by the DELETE's key: before deleting, such
rows (of ids that have something to delete, outside the window) get a fresh ``GENERATE_UUID()``.
The DELETE then ranks with ``RANK()``, not ``ROW_NUMBER()``: if two rows still shared the newest
key they would both rank 1 and both be kept — never both deleted.

**Cost grows with what changed, not with table size** (glific#3194, where a daily full
``ROW_NUMBER()`` scan of every table was too expensive). An incremental pass examines only the
*candidates*: ids that received a version since ``since``. Up to four statements, each issued only
if the previous one found work (on-demand billing counts bytes of the columns read, per scanned
partition):

1. ``SURVEY`` (SELECT): per id, its number of versions and how many lie outside the window, for
   ids whose newest ``bq_inserted_at`` is at or after the lower bound. Reads only ``id`` and
   ``bq_inserted_at`` (16 bytes a row, about 2 % of a Glific message row) — of the ``inserted_at``
   months the versions sent since the lower bound touched (``months``, recorded by the sync before
   each write: ``glific_bq.sent_months``; an old row re-sent brings its old month), as literal
   ranges (``month_filter``) that BigQuery prunes partitions by; over the whole table when the
   months are not known (before they were recorded, or on a full pass). Every later statement
   carries the same restriction; no month to examine, no statement at all. The table is read once (BigQuery
   evaluates a CTE at each reference, so the CTE is referenced once). It returns at most two rows:
   how many candidates, and the ids (up to ``MAX_LISTED_IDS + 1``) with an older version outside
   the window. None → no DML at all: no DML slot used (BigQuery runs 2 mutating statements per
   table at once), nothing billed at full width.
2. ``KEY_CHECK`` (SELECT): how many rows of those ids lack a usable key (NULL ``bq_uuid`` or an
   exact copy). Reads ``id``, ``bq_inserted_at``, ``bq_uuid`` of those ids' storage blocks.
3. ``GIVE_KEYS`` (UPDATE), only if the check found any: ``SET bq_uuid = GENERATE_UUID()``.
4. ``DELETE``: deletes the versions ranked below the newest of each id, outside the window. The
   window function runs over the listed ids' rows only; it and the target scan read ``id``,
   ``bq_inserted_at``, ``bq_uuid`` of those ids' blocks.

Statements 2-4 select the ids with a constant filter, ``id IN UNNEST(@ids)`` (an array
parameter, not a subquery). The tables are clustered by ``id``: storage blocks are sorted by id
and carry their id range, so a constant filter on ``id`` lets BigQuery skip every block whose
range holds no listed id (block pruning), in the ranking subquery and in the DELETE itself, and
rewrite only the blocks that hold deleted rows. Ids grow with time, so when recent rows changed
(messages) the blocks of old partitions, holding only low ids, can be skipped entirely: the bytes
read follow the changed ids, not the table. (Contacts changed all over the id range prune less.) (Block pruning is decided at run time: BigQuery's dry-run estimate
shows the unpruned size; the job's ``total_bytes_processed`` shows what was read.) A DML
statement is also billed the full size of every partition it modifies (``q' + t'`` in BigQuery's
DML pricing); tables are partitioned by the immutable ``inserted_at``, so all versions of an id
sit in one partition and only partitions holding deleted versions are billed — recent months for
messages. More than ``MAX_LISTED_IDS`` ids do not fit in a parameter: then statements 2-4 select
the candidates with a subquery instead (same result, no block pruning; a full pass selects all).

**The lower bound.** ``since`` is the start (``now``) of the previous successful pass of this
table; candidates are ids with a version sent at or after ``since - buffer_window - SINCE_MARGIN``:

- ``buffer_window``: versions that were inside the window during the previous pass were left
  alone then; reaching back by the window makes them candidates now.
- ``SINCE_MARGIN`` (1 hour): ``bq_inserted_at`` is stamped by the sync before the write, and a
  large page can take a while to be acknowledged, so a version may become visible after a pass
  started although it was stamped before; sync machines' clocks may also drift. An hour is far
  beyond both and, for a daily pass, costs an extra 1/24 of the day's candidates.

``since=None`` is a full pass (first run). Rows another tool backdates (``bq_inserted_at`` in the
past, or none) reach an incremental pass only through an id that changed; an occasional full pass
(say monthly) catches them.

**The streaming-buffer window** (glific#820). With the legacy ``insertAll`` path, rows stay in
the streaming buffer for up to ~90 minutes, and UPDATE/DELETE/MERGE fail on them; Glific waits 3
hours. With ``buffer_window`` > 0, a row sent after ``now - buffer_window`` is *inside* the window:
no DML touches it (every UPDATE and DELETE carries ``bq_inserted_at <= @cutoff``; a row with no
``bq_inserted_at`` has an unknown send time and is treated as inside). Reading it is fine, and it
still counts as a version: an older committed version is deleted because a newer buffered version
exists — the buffered one is acknowledged and durable, and it is the newest, which is never
deleted. Versions inside the window that are not the newest wait for a later pass (see the lower
bound). The Storage Write API (our default) has no buffer: ``buffer_window = 0``; the cutoff is
then ``now`` (rows sent after the pass started are left to the next one). The invariants, by
construction: the newest version of an id is never deleted (it ranks 1, and ties at rank 1 are all
kept), and no DML statement matches a row inside the window. The local emulator does not emulate
the streaming buffer: only the SQL guarantees this, not a green test.

Concurrency: run one pass per table at a time (the schedule's job does); the sync may append
meanwhile. Each DML statement ranks within its own snapshot, so a version appended during the
pass is never deleted by it. Insert-only tables are deduplicated too: at-least-once delivery
resends a page after a failure.

**The Glific layout.** Tables are found with ``registry.tables_for(warehouse.config.layout)``;
nothing reads ``organization_id`` (Glific's tables have none: a dataset is one organization).
Send times and the bounds compared with them are local ``DATETIME`` values there (the bounds are
converted with the same ``local_send_time`` that stamps rows). Tables Glific writes without
``bq_uuid``/``bq_inserted_at`` (tags, flow_labels, stats, trackers) are skipped with a reason:
their versions cannot be ordered, and Glific never deduplicated them either (they are its
insert-only tables). ``flows`` holds one row per published revision, all with the flow's ``id``:
its versions are told apart by ``(id, inserted_at)`` (``version_key``), the revision's own
creation time (microseconds), so dedup removes the re-sends of a revision and never a revision.
Rows Glific wrote before the take-over (no ``bq_uuid``) get one and take part like any other.
The platform organization's ``organizations`` is a change log (``TableSpec.keeps_versions``): its
versions are the point, and it is never deduplicated (glific#5390).

Values are query parameters. Identifiers are validated (the dataset by ``WarehouseConfig``, the
table here) and quoted; the only other text spliced into the SQL is fixed text from this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from glific_bq import identifiers, sent_months
from glific_bq.layouts import Layout
from glific_bq.registry import TableSpec, platform_tables_for, tables_for
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID
from glific_bq.stamping import local_send_time
from glific_bq.warehouse import Warehouse, queries

log = logging.getLogger(__name__)

#: Reach back this much before ``since - buffer_window`` (late-visible writes, clock drift).
SINCE_MARGIN = timedelta(hours=1)
#: Most ids passed as one array parameter; beyond, candidates are selected by a subquery.
MAX_LISTED_IDS = 20_000

#: The send time of a version, by the type of ``bq_inserted_at`` (raw layout: TIMESTAMP; Glific
#: layout: local DATETIME); a row without one (another tool's) sorts as the oldest.
_SENT = {
    "TIMESTAMP": "IFNULL(bq_inserted_at, TIMESTAMP '0001-01-01 00:00:00+00')",
    "DATETIME": "IFNULL(bq_inserted_at, DATETIME '0001-01-01 00:00:00')",
}
#: The total order of an id's versions, newest first: what this pass keeps, what the ``_latest``
#: views (glific_bq.views) and exports show. A row without a send time is the oldest (as
#: ``_SENT``), whatever the column's type.
NEWEST_FIRST = "bq_inserted_at DESC NULLS LAST, bq_uuid DESC"
#: A QUALIFY condition true for the newest version of each ``{key}`` by ``{newest_first}``: what
#: the ``_latest`` views and the exports select, and what this pass keeps.
IS_NEWEST_VERSION = "ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {newest_first}) = 1"
#: Glific's tables without send columns (tags, flow_labels, stats, trackers): its own order.
GLIFIC_UNSTAMPED_NEWEST_FIRST = "updated_at DESC"
#: Rows DML may touch: sent at or before the cutoff. With a window, an unknown send time counts
#: as inside it (the row may be in the streaming buffer); without one, as the oldest.
_SETTLED_IN_WINDOW = "bq_inserted_at <= @cutoff"
_SETTLED_NO_WINDOW = "{sent} <= @cutoff"

SURVEY = """
WITH versions AS (
  SELECT id, COUNT(*) AS versions, COUNTIF({settled}) AS settled
  FROM `{table}`
  WHERE {months}
  GROUP BY {key}
  {changed}
),
flagged AS (
  SELECT versions > 1 AND settled > 0 AS has_older, IF(versions > 1 AND settled > 0, CAST(id AS STRING), '') AS listed_id,
         COUNT(*) AS ids
  FROM versions
  GROUP BY has_older, listed_id
)
SELECT has_older, SUM(ids) AS ids, ARRAY_AGG(listed_id LIMIT {limit}) AS listed
FROM flagged
GROUP BY has_older
"""
#: The SURVEY's ``{changed}`` on an incremental pass; empty on a full pass.
CHANGED_SINCE = "HAVING MAX(bq_inserted_at) >= @since"

KEY_CHECK = """
SELECT COUNT(*) AS rows_without_key FROM (
  SELECT bq_uuid, COUNT(*) OVER (PARTITION BY {key}, {sent}, bq_uuid) AS copies
  FROM `{table}`
  WHERE {scope} AND {months} AND {settled}
)
WHERE bq_uuid IS NULL OR copies > 1
"""

GIVE_KEYS = """
UPDATE `{table}` SET bq_uuid = GENERATE_UUID()
WHERE {scope} AND {months} AND {settled}
  AND (bq_uuid IS NULL OR STRUCT({key}, {sent}, bq_uuid) IN (
    SELECT STRUCT({key}, {sent}, bq_uuid) FROM `{table}`
    WHERE {scope} AND {months} AND {settled} AND bq_uuid IS NOT NULL
    QUALIFY COUNT(*) OVER (PARTITION BY {key}, {sent}, bq_uuid) > 1))
"""

DELETE = """
DELETE FROM `{table}`
WHERE {scope} AND {months} AND {settled}
  AND STRUCT({key}, {sent}, bq_uuid) IN (
    SELECT STRUCT({key}, {sent}, bq_uuid) FROM `{table}`
    WHERE {scope} AND {months}
    QUALIFY RANK() OVER (PARTITION BY {key} ORDER BY {newest_first}) > 1)
"""

#: ``{scope}`` of statements 2-4: the listed ids; or, when too many to list, the candidates.
SCOPE_LISTED = "id IN UNNEST(@ids)"
SCOPE_CHANGED = "id IN (SELECT id FROM `{table}` WHERE {months} AND bq_inserted_at >= @since)"
SCOPE_ALL = "TRUE"


#: Literal bounds of a month, by the type of the partition column (dates formatted here, never text).
MONTH_LITERAL = {"DATETIME": "DATETIME '{:%Y-%m-%d}'", "DATE": "DATE '{:%Y-%m-%d}'",
                  "TIMESTAMP": "TIMESTAMP '{:%Y-%m-%d} 00:00:00+00'"}


def month_filter(column: str, column_type: str, months: Iterable[date], alias: str = "") -> str:
    """A predicate true for rows whose ``column`` lies in one of ``months`` (first days;
    ``sent_months.NO_MONTH`` for NULL), as literal ranges (``column >= first AND column < end``,
    consecutive months merged), so that BigQuery prunes the partitions of a table partitioned by
    ``column`` at planning time; on any other table it still restricts the rows compared. No
    months: ``FALSE``."""
    literal = MONTH_LITERAL[column_type].format
    column = f"{alias}.`{column}`" if alias else f"`{column}`"
    months = sorted(set(months))
    parts = [f"{column} IS NULL"] if sent_months.NO_MONTH in months else []
    ranges: list[list[date]] = []
    for month in (m for m in months if m != sent_months.NO_MONTH):
        if ranges and ranges[-1][1] == month:
            ranges[-1][1] = _next_month(month)
        else:
            ranges.append([month, _next_month(month)])
    parts = [f"({column} >= {literal(first)} AND {column} < {literal(end)})" for first, end in ranges] + parts
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def lower_bound(since: datetime | None, buffer_window: timedelta) -> datetime | None:
    """The earliest send time of a version a pass after ``since`` (the previous pass's start)
    must examine: ``since - buffer_window - SINCE_MARGIN`` (see the module docstring); None
    for a full pass."""
    return None if since is None else _utc(since) - buffer_window - SINCE_MARGIN


def version_key(layout: Layout, table: str) -> tuple[str, ...]:
    """The columns that identify one row of ``table`` in BigQuery: its versions share them.

    ``id`` everywhere but Glific's ``flows``, whose rows are flow revisions carrying the flow's
    id: there a revision is ``(id, inserted_at)`` (see the module docstring)."""
    return ("id", "inserted_at") if layout is Layout.GLIFIC and table == "flows" else ("id",)


def newest_first(layout: Layout, columns: set[str] | frozenset[str]) -> str | None:
    """The order of a table's versions, newest first, from its BigQuery ``columns``: the send
    order (``NEWEST_FIRST``) when it has the send columns; Glific's unstamped tables by
    ``updated_at``; None when the versions cannot be ordered."""
    if {BQ_INSERTED_AT, BQ_UUID} <= columns:
        return NEWEST_FIRST
    if layout is Layout.GLIFIC and "updated_at" in columns:
        return GLIFIC_UNSTAMPED_NEWEST_FIRST
    return None


def missing_version_columns(present: Iterable[str], key: Sequence[str], *, send_columns: bool = True) -> list[str]:
    """The columns a table lacks for its versions to be told apart: its ``key`` and, when
    ``send_columns``, ``bq_inserted_at`` and ``bq_uuid`` (dedup, the ``_latest`` views and the
    exports all ask this one question)."""
    present = set(present)
    return [c for c in ((*key, BQ_INSERTED_AT, BQ_UUID) if send_columns else tuple(key)) if c not in present]


class DedupError(RuntimeError):
    """A table that cannot be deduplicated as it is (for example a metadata column of the wrong type)."""


@dataclass(frozen=True)
class DedupResult:
    """What one dedup pass of one (organization, table) did.

    ``candidates`` counts the ids examined (ids with a version since the lower bound; every id on
    a full pass). ``skipped_reason`` says why nothing was examined (the table does not exist yet,
    or lacks the metadata columns); ``error`` holds the failure that stopped this table (set by
    ``dedup_tenant``, which goes on with the others). ``bytes_processed`` sums what BigQuery
    reported for the statements run (None if it reported nothing).
    """

    organization_id: int
    table: str
    deleted: int = 0
    candidates: int = 0
    seconds: float = 0.0
    skipped_reason: str | None = None
    error: str | None = None
    bytes_processed: int | None = None

    def as_metadata(self) -> dict[str, object]:
        """Flat, JSON-friendly numbers for run metadata and logs."""
        data: dict[str, object] = {
            "organization_id": self.organization_id,
            "table": self.table,
            "deleted": self.deleted,
            "candidates": self.candidates,
            "seconds": round(self.seconds, 3),
        }
        for key in ("skipped_reason", "error", "bytes_processed"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


def dedup_table(
    warehouse: Warehouse,
    table: str | TableSpec,
    *,
    since: datetime | None,
    buffer_window: timedelta = timedelta(0),
    now: datetime | None = None,
    months: Sequence[date] | None = None,
) -> DedupResult:
    """Delete the older versions of each id in the organization's copy of ``table``.

    Args:
        since: the ``now`` of this table's previous successful pass (or an earlier time); None
            for a full pass. Naive datetimes are taken as UTC.
        months: on an incremental pass, the months of the partition column (``inserted_at``)
            that versions sent since the lower bound touched (``sent_months.since``); every
            statement is restricted to them (``month_filter``), and none at all is issued when
            there are none. None: every month (no record, or a full pass).
        buffer_window: rows sent within this long before ``now`` are never modified (legacy
            ``insertAll`` streaming: e.g. 3 hours; Storage Write API: 0).
        now: the pass's clock (UTC); defaults to the current time. Store it as the next ``since``.

    Returns the rows deleted (the DELETE job's ``num_dml_affected_rows``). A table that does not
    exist yet in BigQuery is skipped with a reason; other failures raise.
    """
    started = time.monotonic()
    name = table.name if isinstance(table, TableSpec) else table
    identifiers.checked_table(name)
    if buffer_window < timedelta(0):
        raise ValueError("buffer_window cannot be negative")
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    table_id = f"{warehouse.dataset_ref}.{name}"
    result = _Counter(warehouse.organization.id, name, started)
    if _keeps_versions(table, warehouse.config.layout):
        return result.done(skipped_reason=f"{table_id} is a change log: every version is kept, never "
                                          "deduplicated (glific#5390)")

    try:
        schema = {f.name: f.field_type for f in warehouse.client.get_table(table_id, **warehouse.calls.calls).schema}
    except NotFound:
        return result.done(skipped_reason=f"{table_id} does not exist in BigQuery yet")
    layout = warehouse.config.layout
    key = version_key(layout, name)
    missing = missing_version_columns(schema, key)
    if missing:
        reason = f"{table_id} has no {', '.join(missing)} column"
        if layout is Layout.GLIFIC and {BQ_INSERTED_AT, BQ_UUID} <= set(missing):
            reason += " (Glific writes none for this table and never deduplicated it either)"
        return result.done(skipped_reason=reason)
    wrong = [f"{c} is {schema[c]}, expected {' or '.join(t)}"
             for c, t in {BQ_INSERTED_AT: tuple(_SENT), BQ_UUID: ("STRING",), "id": ("INTEGER", "INT64", "STRING")}.items()
             if schema[c] not in t]
    if wrong:
        raise DedupError(f"{table_id}: " + "; ".join(wrong))
    sent_type = schema[BQ_INSERTED_AT]

    cutoff = now - buffer_window
    lower = lower_bound(since, buffer_window)
    column = table.partition_column if isinstance(table, TableSpec) else "inserted_at"
    in_months = "TRUE"
    if months is not None and lower is not None and schema.get(column) in MONTH_LITERAL:
        if not months:
            log.info("dedup %s: nothing sent since %s", table_id, lower)
            return result.done()
        in_months = month_filter(column, schema[column], months)
    settled = _SETTLED_IN_WINDOW if buffer_window > timedelta(0) else _SETTLED_NO_WINDOW.format(sent=_SENT[sent_type])
    time_params = [_send_time("cutoff", cutoff, sent_type, warehouse)]
    if lower is not None:
        time_params.append(_send_time("since", lower, sent_type, warehouse))

    # 1. Which candidates have older versions that may be deleted (narrow columns only).
    survey = SURVEY.format(
        table=table_id, settled=settled, key=", ".join(key), changed=CHANGED_SINCE if lower is not None else "",
        limit=int(MAX_LISTED_IDS) + 1, months=in_months,
    )
    groups = {row["has_older"]: row for row in result.run(warehouse, survey, time_params)}
    result.candidates = sum(row["ids"] for row in groups.values())
    with_older = groups.get(True)
    if with_older is None:
        log.info("dedup %s: %d candidates, nothing to delete", table_id, result.candidates)
        return result.done()

    if with_older["ids"] <= MAX_LISTED_IDS:
        scope = SCOPE_LISTED
        listed = [i for i in with_older["listed"] if i != ""]
        id_type = "STRING" if schema["id"] == "STRING" else "INT64"
        params = [*time_params, bigquery.ArrayQueryParameter("ids", id_type, listed if id_type == "STRING" else [int(i) for i in listed])]
    else:
        scope = SCOPE_CHANGED.format(table=table_id, months=in_months) if lower is not None else SCOPE_ALL
        params = time_params
    parts = {"table": table_id, "scope": scope, "settled": settled, "sent": _SENT[sent_type], "key": ", ".join(key),
             "newest_first": NEWEST_FIRST, "months": in_months}

    # 2-3. Give a key to rows that lack one (NULL bq_uuid, or an exact copy of another row).
    (check,) = result.run(warehouse, KEY_CHECK.format(**parts), params)
    if check["rows_without_key"]:
        keyed = result.run_dml(warehouse, GIVE_KEYS.format(**parts), params)
        log.info("dedup %s: gave a bq_uuid to %d rows", table_id, keyed)

    # 4. Delete every version ranked below the newest of its id, outside the window.
    result.deleted = result.run_dml(warehouse, DELETE.format(**parts), params)
    log.info("dedup %s: %d candidates, %d with older versions, %d rows deleted",
             table_id, result.candidates, with_older["ids"], result.deleted)
    return result.done()


def _keeps_versions(table: str | TableSpec, layout: Layout) -> bool:
    """Whether ``table`` is a change log (``TableSpec.keeps_versions``), named or given as a spec."""
    if isinstance(table, TableSpec):
        return table.keeps_versions
    return any(spec.keeps_versions for spec in platform_tables_for(layout) if spec.name == table)


def dedup_tenant(
    warehouse: Warehouse,
    tables: Sequence[str | TableSpec] | None = None,
    since: datetime | None | Mapping[str, datetime | None] = None,
    buffer_window: timedelta = timedelta(0),
    *,
    now: datetime | None = None,
    months: Mapping[str, Sequence[date] | None] | None = None,
) -> list[DedupResult]:
    """Deduplicate several tables of one organization, each independently.

    ``since`` is one time for all tables or a mapping per table name (a table missing from the
    mapping gets a full pass): keep it per table, since a table whose pass failed must reach back
    to its own last success. ``months``: per table name, ``dedup_table``'s ``months`` (missing:
    every month). A table that fails comes back with ``error`` set; the others go on.
    Tables that do not exist yet in BigQuery come back with ``skipped_reason``. ``tables``
    defaults to every table of the warehouse's layout.
    """
    results = []
    for table in tables_for(warehouse.config.layout) if tables is None else tables:
        name = table.name if isinstance(table, TableSpec) else str(table)
        table_since = since.get(name) if isinstance(since, Mapping) else since
        started = time.monotonic()
        try:
            results.append(dedup_table(warehouse, table, since=table_since, buffer_window=buffer_window, now=now,
                                       months=(months or {}).get(name)))
        except Exception as error:  # this table only
            message = f"{type(error).__name__}: {error}"
            log.error("dedup of %s for organization %s failed: %s", name, warehouse.organization.id, message)
            results.append(DedupResult(warehouse.organization.id, name, seconds=time.monotonic() - started,
                                       error=message))
    return results


class _Counter:
    """Accumulates one pass's numbers while its statements run."""

    def __init__(self, organization_id: int, table: str, started: float) -> None:
        self.organization_id, self.table, self.started = organization_id, table, started
        self.deleted = self.candidates = 0
        self.bytes_processed: int | None = None

    def _job(self, warehouse: Warehouse, statement: str, params: list) -> queries.Completed:
        completed = queries.run(warehouse, statement, params)
        if completed.job.total_bytes_processed is not None:
            self.bytes_processed = (self.bytes_processed or 0) + completed.job.total_bytes_processed
        return completed

    def run(self, warehouse: Warehouse, statement: str, params: list) -> list[dict]:
        return [dict(row.items()) for row in self._job(warehouse, statement, params).rows]

    def run_dml(self, warehouse: Warehouse, statement: str, params: list) -> int:
        return int(self._job(warehouse, statement, params).job.num_dml_affected_rows or 0)

    def done(self, skipped_reason: str | None = None) -> DedupResult:
        return DedupResult(
            self.organization_id, self.table, deleted=self.deleted, candidates=self.candidates,
            seconds=time.monotonic() - self.started, skipped_reason=skipped_reason,
            bytes_processed=self.bytes_processed,
        )


def _send_time(name: str, value: datetime, sent_type: str, warehouse: Warehouse) -> bigquery.ScalarQueryParameter:
    """A bound compared with ``bq_inserted_at``: UTC, or the organization's local send time (as
    ``glific_bq.stamping`` stamps it, so that the comparison keeps its meaning)."""
    if sent_type == "DATETIME":
        local = local_send_time(value, warehouse.organization.checked_timezone())
        return bigquery.ScalarQueryParameter(name, "DATETIME", local)
    return bigquery.ScalarQueryParameter(name, "TIMESTAMP", value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


__all__ = [
    "DedupError", "DedupResult", "IS_NEWEST_VERSION", "MAX_LISTED_IDS", "NEWEST_FIRST", "SINCE_MARGIN", "dedup_table", "dedup_tenant",
    "lower_bound", "month_filter", "newest_first", "version_key",
]
