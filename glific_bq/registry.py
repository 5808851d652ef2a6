"""The synced tables and how each one is synced: the only place that lists them.

Adding a table is one line in ``TABLES``. Columns are not listed here: they are read from the
source's catalog at sync time (see ``glific_bq.schema``), so a table's real columns need no code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SyncMode(str, Enum):
    """How changes to a table reach BigQuery."""

    #: New rows by id, and changed rows by (updated_at, id), appended as new versions.
    UPSERT = "upsert"
    #: New rows by id only: Glific never updates these rows. Their cursor is ``inserted_at``, so
    #: the second pass only catches rows whose transaction committed after a later id's did.
    INSERT_ONLY = "insert_only"


class DeletePolicy(str, Enum):
    """What a row deleted in PostgreSQL becomes in BigQuery."""

    #: Nothing: BigQuery keeps the row's history. The default, and the only safe choice for
    #: messages, which Glific purges from PostgreSQL on purpose after two months: BigQuery is
    #: their only long-term copy.
    KEEP = "keep"
    #: A periodic key comparison per tenant deletes, in BigQuery, every version of rows that no
    #: longer exist at the source (contacts erased on request).
    PROPAGATE = "propagate"


@dataclass(frozen=True)
class TableSpec:
    """One synced table.

    Attributes:
        name: table name in PostgreSQL, also used in BigQuery.
        mode: ``UPSERT`` (insert and update passes) or ``INSERT_ONLY`` (Glific's append-only tables).
        cursor_column: the change timestamp of the update pass (``inserted_at`` for insert-only
            tables, where the pass catches late commits). Tables without it sync by id only.
        partition_column: the column BigQuery partitions the table by (monthly). An immutable
            creation time keeps every version of a row in one partition, so dedup and date-bounded
            reports scan only the partitions they need. Falls back to ingestion time if absent.
        deletes: ``KEEP`` (default) or ``PROPAGATE`` (see ``DeletePolicy``).
        fresh_within: for busy tables, how long without any tenant synced before the Dagster UI
            shows the table stale (None: quiet tables, where no sync is normal).
    """

    name: str
    mode: SyncMode = SyncMode.UPSERT
    cursor_column: str = ""
    partition_column: str = "inserted_at"
    deletes: DeletePolicy = DeletePolicy.KEEP
    fresh_within: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.cursor_column:
            cursor = "updated_at" if self.mode is SyncMode.UPSERT else "inserted_at"
            object.__setattr__(self, "cursor_column", cursor)
        for value in (self.name, self.cursor_column, self.partition_column):
            if not _IDENTIFIER.match(value):
                raise ValueError(f"not a plain lower-case SQL identifier: {value!r}")


TABLES: tuple[TableSpec, ...] = (
    TableSpec("contacts", deletes=DeletePolicy.PROPAGATE, fresh_within=timedelta(minutes=30)),
    TableSpec("messages", fresh_within=timedelta(minutes=15)),
    TableSpec("messages_media"),
    TableSpec("flows", SyncMode.INSERT_ONLY),
    TableSpec("flow_results"),
    TableSpec("flow_contexts"),
    TableSpec("flow_counts"),
    TableSpec("profiles"),
    TableSpec("tickets"),
    TableSpec("contact_histories", SyncMode.INSERT_ONLY),
)


def table(name: str) -> TableSpec:
    """The registered table called ``name``; a clear error for anything else."""
    for spec in TABLES:
        if spec.name == name:
            return spec
    raise KeyError(f"{name!r} is not a synced table; registered: {', '.join(t.name for t in TABLES)}")
