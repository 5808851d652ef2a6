"""What a synced table is (``TableSpec``) and the choices it makes (``SyncMode``,
``DeletePolicy``, ``Scope``): the catalog every other module builds on. It imports nothing of
glific_bq, so layouts and the registry of tables (``glific_bq.registry``) both depend on it and
never on each other in a circle."""

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


class Scope(str, Enum):
    """Whose rows a table holds, and so which datasets may receive them."""

    #: One organization's rows (``organization_id``): read for that organization only, every page
    #: checked, written into its own dataset.
    TENANT = "tenant"
    #: Every organization's rows (Glific's platform dataset: ``glific_bq.platform``): planned, read
    #: and written only for the platform organization (the ``saas`` row named ``Tides``), in the
    #: Glific layout; any other organization's sync of such a table is refused.
    PLATFORM = "platform"


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
        source: the PostgreSQL table whose rows fill it (default: ``name``; Glific's ``flows``
            are flow revisions, ``speed_sends`` session templates).
        partitioned: whether a table we create is partitioned monthly by ``partition_column``.
        cluster_by: the clustering columns of a table we create.
        fresh_within: for busy tables, how long without any tenant synced before the Dagster UI
            shows the table stale (None: quiet tables, where no sync is normal).
        scope: ``TENANT`` (one organization's rows) or ``PLATFORM`` (every organization's, for
            the platform organization's dataset only; see ``Scope``).
        keeps_versions: every version sent is kept: the table is a change log, never
            deduplicated (Glific's platform ``organizations``, glific#5390).
    """

    name: str
    mode: SyncMode = SyncMode.UPSERT
    cursor_column: str = ""
    partition_column: str = "inserted_at"
    deletes: DeletePolicy = DeletePolicy.KEEP
    fresh_within: timedelta | None = None
    source: str = ""
    partitioned: bool = True
    cluster_by: tuple[str, ...] = ("id",)
    scope: Scope = Scope.TENANT
    keeps_versions: bool = False

    def __post_init__(self) -> None:
        if self.scope is Scope.PLATFORM and self.deletes is DeletePolicy.PROPAGATE:
            raise ValueError(f"{self.name}: a platform table holds every organization's rows; its deletes "
                             "cannot be compared per tenant")
        if not self.source:
            object.__setattr__(self, "source", self.name)
        if not self.cursor_column:
            cursor = "updated_at" if self.mode is SyncMode.UPSERT else "inserted_at"
            object.__setattr__(self, "cursor_column", cursor)
        for value in (self.name, self.source, self.cursor_column, self.partition_column):
            if not _IDENTIFIER.match(value):
                raise ValueError(f"not a plain lower-case SQL identifier: {value!r}")
