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


#: The raw layout: exact copies of these source tables.
RAW_TABLES: tuple[TableSpec, ...] = (
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


def _glific(name: str, mode: SyncMode | None = None, **options) -> TableSpec:
    """One of Glific's BigQuery tables, partitioned and clustered as Glific creates it."""
    from glific_bq.layouts.glific import reference_facts, source_table

    facts = reference_facts()
    if mode is None:
        mode = SyncMode.INSERT_ONLY if name in facts["insert_only"] else SyncMode.UPSERT
    return TableSpec(
        name, mode, source=source_table(name),
        partitioned=name in facts["partitioned_month_by_inserted_at"],
        cluster_by=tuple(facts["cluster_fields"].get(name, ())),
        scope=Scope.PLATFORM if name in facts["platform_only"] else Scope.TENANT,
        keeps_versions=name in facts["change_logs"],
        **options,
    )


#: The Glific layout: Glific's own BigQuery tables (``glific_bq/layouts/glific.py``). ``flows``
#: syncs flow revisions with an update pass, so that a draft published later is exported.
GLIFIC_TABLES: tuple[TableSpec, ...] = (
    _glific("contacts", deletes=DeletePolicy.PROPAGATE, fresh_within=timedelta(minutes=30)),
    _glific("messages", fresh_within=timedelta(minutes=15)),
    _glific("messages_media"),
    _glific("flows", SyncMode.UPSERT),
    _glific("flow_results"),
    _glific("flow_contexts"),
    _glific("flow_counts"),
    _glific("flow_labels"),
    _glific("profiles"),
    _glific("tickets"),
    _glific("contact_histories"),
    _glific("tags"),
    _glific("groups"),
    _glific("contacts_groups"),
    _glific("contacts_fields"),
    _glific("stats"),
    _glific("trackers"),
    _glific("saved_searches"),
    _glific("speed_sends"),
    _glific("interactive_templates"),
    _glific("message_broadcasts"),
    _glific("message_broadcast_contacts"),
    _glific("message_conversations"),
    _glific("wa_groups"),
    _glific("wa_messages"),
    _glific("wa_groups_phones"),
    _glific("wa_groups_collections"),
    _glific("contacts_wa_groups"),
    _glific("wa_reactions"),
    _glific("whatsapp_forms"),
    _glific("whatsapp_forms_responses"),
    _glific("certificate_templates"),
    _glific("issued_certificates"),
)


#: Glific's platform dataset: the tables Glific writes only into the platform organization's
#: dataset (``bigquery_tables/1``), with the rows of every organization (``glific_bq.platform``).
#: Never in ``TABLES``: no other tenant plans, syncs or deduplicates them. ``organizations`` is a
#: change log (every change appended, never deduplicated: glific#5390); ``stats_all`` is insert-only.
PLATFORM_TABLES: tuple[TableSpec, ...] = (
    _glific("organizations"),
    _glific("stats_all"),
    _glific("trackers_all"),
    _glific("trial_users"),
)


def tables_for(layout) -> tuple[TableSpec, ...]:
    """The tables synced in ``layout`` (a ``glific_bq.layouts.Layout``) for every tenant."""
    return RAW_TABLES if layout.value == "raw" else GLIFIC_TABLES


def platform_tables_for(layout) -> tuple[TableSpec, ...]:
    """The platform organization's own tables in ``layout``: only the Glific layout has them."""
    return () if layout.value == "raw" else PLATFORM_TABLES


def _configured_layout():
    from glific_bq.layouts import Layout

    return Layout.from_env()


#: The tables of the layout configured by ``GLIFIC_BQ_LAYOUT`` (what the Dagster definitions show).
TABLES: tuple[TableSpec, ...] = tables_for(_configured_layout())
#: The platform organization's tables in the configured layout (planned by ``glific_bq.platform``).
PLATFORM: tuple[TableSpec, ...] = platform_tables_for(_configured_layout())


def table(name: str, tables: tuple[TableSpec, ...] | None = None) -> TableSpec:
    """The registered table called ``name`` (by default among ``TABLES`` and ``PLATFORM``); a
    clear error for anything else."""
    tables = (*TABLES, *PLATFORM) if tables is None else tables
    for spec in tables:
        if spec.name == name:
            return spec
    raise KeyError(f"{name!r} is not a synced table; registered: {', '.join(t.name for t in tables)}")
