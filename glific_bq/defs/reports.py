"""Views as assets, per tenant: ``reports/<table>_latest`` and ``reports/<report>``.

The UI then shows the whole lineage, e.g. ``postgres/messages`` → ``bigquery/messages`` →
``reports/messages_latest`` and ``reports/contacts_messages``. A materialization creates or
replaces the view(s) in that tenant's dataset through ``glific_bq.views`` (a report also creates
the ``_latest`` views it reads). A view is evaluated by BigQuery when it is queried, so it shows
new rows without being materialized again: it needs creating once per tenant, and again only when
its SQL changes or a source table gains columns (so that the view's schema lists them).
The views are those of the configured layout (``views.REPORTS``, ``registry.TABLES``); in the
Glific layout, materializing ``reports/contacts_latest`` also creates Glific's ``flat_fields``
procedure and calls it (``views.FLAT_FIELDS``), listed in the run's ``views_created``.

**Automation.** ``VIEW_AUTOMATION``: a tenant's view is requested once its input tables exist for
that tenant (the view's partition is missing and none of the same tenant's ``bigquery/<table>``
partitions is), once — a failed run is not retried in a loop; materialize it by hand — and again
for every tenant when the view's SQL changes (``code_version_changed``; the code version is a hash
of the SQL and its docs). Not ``eager()``: the sync materializes ``bigquery/<table>`` every
minute, and eager would re-create every view of every active tenant every minute for nothing. Not
``on_missing()`` either: it counts the partitions that exist at its first evaluation as handled,
so tenants registered before the sensor's first tick (the demo's three, or every tenant of a
deployment that adds these assets) would never get their views. ``missing().newly_true()`` is
true for them at the first evaluation, and stays true until the view is requested or created.

Conditions only run if an automation-condition sensor evaluates them. Dagster 1.13 adds an
implicit ``default_automation_condition_sensor`` for assets with a condition, but it starts
STOPPED (``AutomationConditionSensorDefinition``'s ``default_status`` is ``STOPPED``, and the
implicit sensor is built without one): under ``dagster dev`` nothing would happen until someone
switched it on in the UI. ``report_views_automation`` targets the ``reports`` group with
``default_status=RUNNING`` (assets it targets are not given to the default sensor), and the
daemon that ``dagster dev`` starts evaluates it every 30 s (the instance's ``auto_materialize``
settings default to enabled, with sensors). Several tenants requested in one tick become one
backfill, which ``BackfillPolicy.single_run()`` runs as one run.
"""

from collections.abc import Sequence

import dagster as dg

from glific_bq import views
from glific_bq.isolation import each_tenant
from glific_bq.registry import TABLES, TableSpec, table
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse

from .assets import table_key
from .partitions import tenants
from .resources import GlificBigQuery, GlificPostgres

GROUP = "reports"

#: Once a tenant's input tables exist (for tenants known at the first evaluation too); again when
#: the view's SQL changes.
VIEW_AUTOMATION = (
    (
        dg.AutomationCondition.missing().newly_true()
        .since(dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated())
        .with_label("missing_since_last_requested")
        | dg.AutomationCondition.code_version_changed()
    )
    & ~dg.AutomationCondition.any_deps_missing()
).with_label("view_missing_or_changed_and_tables_exist")


def view_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, name])


def create_tenant_views(
    context: dg.AssetExecutionContext,
    postgres: GlificPostgres,
    bigquery: GlificBigQuery,
    view: str,
    tables: Sequence[str],
    reports: Sequence[views.ReportView] = (),
) -> None:
    """Create ``view`` (and what it reads) in the dataset of each tenant of the run, recording a
    materialization per tenant. A tenant whose inputs do not exist yet, or that fails, does not
    stop the others; they are raised together at the end."""
    failures, organizations = [], []
    with postgres.source() as source:
        for key in context.partition_keys:
            try:
                organizations.append(get_organization(source.control, int(key)))
            except LookupError as error:  # this tenant only
                failures.append(f"organization {key}: {error}")

    def create(organization: Organization, warehouse: Warehouse):
        return warehouse.dataset_ref, views.create_views(warehouse, tables, reports)

    for outcome in each_tenant(organizations, bigquery.open_warehouse, create, what=f"views ({view})"):
        key = outcome.organization.partition_key
        if outcome.failed:
            failures.append(f"organization {key}: {outcome.error}")
            continue
        dataset_ref, created = outcome.result
        if view in created.skipped:
            failures.append(f"organization {key}: {view} not created: {created.skipped[view]}")
            continue
        context.log_event(dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=key,
            metadata={"dataset": dataset_ref, "view": f"{dataset_ref}.{view}", "views_created": ", ".join(created)},
        ))
    if failures:
        raise dg.Failure(
            f"{len(failures)} tenant(s) without {view}:\n" + "\n".join(failures[:20]),
            metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))},
        )


def latest_view_asset(spec: TableSpec) -> dg.AssetsDefinition:
    name = views.latest_view_name(spec.name)

    @dg.asset(
        key=view_key(name),
        deps=[table_key(spec)],
        partitions_def=tenants,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"bigquery"},
        description=f"View: exactly one row per id of {spec.name}, its newest version, even between dedup runs.",
        code_version=views.latest_code_version(),
        automation_condition=VIEW_AUTOMATION,
        metadata={"sql": dg.MetadataValue.md(f"```sql\n{views.LATEST_VIEW}\n```")},
        output_required=False,
    )
    def _latest(context: dg.AssetExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
        create_tenant_views(context, postgres, bigquery, name, [spec.name])
        yield from ()  # each tenant's materialization was recorded as it was created

    return _latest


def report_asset(report: views.ReportView) -> dg.AssetsDefinition:
    @dg.asset(
        key=view_key(report.name),
        deps=[table_key(table(t)) for t in report.reads],
        partitions_def=tenants,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"bigquery"},
        description=f"View: {report.description}",
        code_version=views.report_code_version(report),
        automation_condition=VIEW_AUTOMATION,
        metadata={
            "dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn(c.name, c.type, description=c.description) for c in report.columns
            ]),
            "sql": dg.MetadataValue.md(f"```sql\n{report.sql.strip()}\n```"),
        },
        output_required=False,
    )
    def _report(context: dg.AssetExecutionContext, postgres: GlificPostgres, bigquery: GlificBigQuery):
        create_tenant_views(context, postgres, bigquery, report.name, [], [report])
        yield from ()  # each tenant's materialization was recorded as it was created

    return _report


latest_view_assets = [latest_view_asset(spec) for spec in TABLES]
report_view_assets = [report_asset(report) for report in views.REPORTS]
#: Every view asset, for ``Definitions(assets=[..., *report_assets])``.
report_assets = [*latest_view_assets, *report_view_assets]

report_views_automation = dg.AutomationConditionSensorDefinition(
    "report_views_automation",
    target=dg.AssetSelection.groups(GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Creates each tenant's views once its tables exist in BigQuery, and again when their SQL changes.",
)
#: For ``Definitions(sensors=[..., *report_sensors])``.
report_sensors = [report_views_automation]
