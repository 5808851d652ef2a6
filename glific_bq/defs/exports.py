"""Exports from the Dagster UI: Launchpad → ``export_job``, with the options as run config.

The run's output lists every file written with its row count (a markdown table, and a link per
file). A thin layer over ``glific_bq.export``, which does the work and documents the formats.
"""

from datetime import date

import dagster as dg
from pydantic import Field

from glific_bq import registry
from glific_bq.export import FORMATS, Destination, ExportResult, export_tenant
from glific_bq.tenants import get_organization

from .resources import GlificBigQuery, GlificPostgres


class ExportConfig(dg.Config):
    """What to export for one organization: the latest state of each row (one per id)."""

    organization_id: int = Field(description="organization id")
    tables: list[str] = Field(default=[], description="synced tables to export; empty: all")
    formats: list[str] = Field(default=list(FORMATS), description="any of " + ", ".join(FORMATS))
    destination: str = Field(
        default="exports",
        description="local directory (of the run's machine) or gs://bucket/prefix; files go to "
        "<destination>/<dataset>/<UTC timestamp>/",
    )
    date_from: str | None = Field(
        default=None, description="first day, ISO (2026-01-31), inclusive, on inserted_at in the organization's time"
    )
    date_to: str | None = Field(default=None, description="last day, ISO, inclusive")


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Export one organization's tables (latest row versions) as CSV, Excel and Parquet.",
)
def export_organization(context: dg.OpExecutionContext, config: ExportConfig, postgres: GlificPostgres, bigquery: GlificBigQuery):
    try:
        tables = [registry.table(name) for name in config.tables] or list(registry.TABLES)
        date_from, date_to = (date.fromisoformat(d) if d else None for d in (config.date_from, config.date_to))
        Destination.parse(config.destination)
    except (KeyError, ValueError) as error:
        raise dg.Failure(f"invalid export options: {error}") from None
    with postgres.source() as source:
        organization = get_organization(source.control, config.organization_id)
    warehouse = bigquery.open_warehouse(organization)
    try:
        result = export_tenant(warehouse, tables, config.formats, config.destination, date_from, date_to)
    finally:
        warehouse.close()
    context.log.info(f"exported {sum(result.rows.values())} rows of {len(result.rows)} table(s) to {result.location}")
    yield dg.Output(None, metadata=export_metadata(result))


def export_metadata(result: ExportResult) -> dict[str, dg.MetadataValue]:
    """The run's record of an export: where, how many rows, and a link per file."""
    metadata: dict[str, dg.MetadataValue] = {
        "location": _link(result.location, folder=True),
        "files": dg.MetadataValue.md(result.as_markdown()),
        "total_rows": dg.MetadataValue.int(sum(result.rows.values())),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
    }
    for exported in result.files:
        metadata.setdefault(exported.uri.rsplit("/", 1)[-1], _link(exported.uri))
    if result.manifest:
        metadata["manifest.json"] = _link(result.manifest)
    if result.truncated_cells:
        metadata["xlsx_truncated_cells"] = dg.MetadataValue.int(result.truncated_cells)
    if result.whole_tables:
        metadata["exported_whole"] = dg.MetadataValue.text(
            "no inserted_at, the date range did not apply: " + ", ".join(result.whole_tables))
    if result.skipped:
        metadata["skipped"] = dg.MetadataValue.json(result.skipped)
    return metadata


def _link(uri: str, folder: bool = False) -> dg.MetadataValue:
    """A local path, or for Cloud Storage a link that opens in a browser (the Console for a
    folder, the authenticated download for a file)."""
    if not uri.startswith("gs://"):
        return dg.MetadataValue.path(uri)
    base = "https://console.cloud.google.com/storage/browser/" if folder else "https://storage.cloud.google.com/"
    return dg.MetadataValue.url(base + uri[len("gs://"):])


@dg.job(description="Export one organization's synced tables (CSV, Excel, Parquet) to a directory or bucket.")
def export_job():
    export_organization()


export_jobs = [export_job]
