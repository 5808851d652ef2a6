"""The synced tables and how each one is synced: the only place that lists them.

Adding a table is one line in ``TABLES``. What a table spec holds is ``glific_bq.catalog``'s
(``TableSpec`` and its choices can be imported from here too). Columns are not listed here: they
are read from the source's catalog at sync time (see ``glific_bq.schema``), so a table's real
columns need no code.
"""

from __future__ import annotations

from datetime import timedelta

from glific_bq.catalog import DeletePolicy, Scope, SyncMode, TableSpec

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


__all__ = ["GLIFIC_TABLES", "PLATFORM", "PLATFORM_TABLES", "RAW_TABLES", "TABLES", "DeletePolicy", "Scope",
           "SyncMode", "TableSpec", "platform_tables_for", "table", "tables_for"]
