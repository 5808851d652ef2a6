"""``glific-bq``: the sync from the command line, without Dagster, plus set-up helpers.

    glific-bq sync --organization 1 [--table messages ...]   sync now (environment as for Dagster)
    glific-bq redrive --organization 1 [--table messages]  re-send rows BigQuery refused, once fixed
    glific-bq export --organization 1 [--table messages ...] [--format csv ...] [--to DIR|gs://bucket/prefix]
                     [--from 2026-01-01] [--to-date 2026-01-31]   export the latest rows: CSV, Excel, Parquet
    glific-bq repartition --organization 1 (--table messages | --all)   partition tables Glific created unpartitioned
    glific-bq register-tenants                             add organizations as Dagster partitions
    glific-bq demo [--fresh]                               the local demo (see the README)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date

from glific_bq import registry, watermarks
from glific_bq.roster import Tenant
from glific_bq.source import Source, database_url
from glific_bq.sync import SyncOptions


def _tables(args: argparse.Namespace) -> list:
    """The tables named with ``--table``, all registered tables without it."""
    return [registry.table(name) for name in args.table] if args.table else list(registry.TABLES)


def _checked_tenant(source: Source, config, organization_id: int) -> Tenant:
    """The roster's tenant, or a refusal with the reason for an organization it does not sync."""
    from glific_bq.roster import select_tenants

    roster = select_tenants(source.control, config)
    tenant = roster.tenant(organization_id)
    if tenant is None:
        why = roster.why_not(organization_id)
        raise LookupError(f"organization {organization_id} is not synced: {why.reason if why else 'no such organization'}")
    return tenant


def _sync(args: argparse.Namespace) -> int:
    from glific_bq.sync import sync_tenant
    from glific_bq.warehouse import Warehouse, WarehouseConfig

    tables = _tables(args)
    config = WarehouseConfig.from_env()
    with Source(database_url()) as source:
        watermarks.ensure_table(source.control)
        tenant = _checked_tenant(source, config, args.organization)
        results = sync_tenant(source, lambda org: Warehouse(config, org), args.organization, tables,
                              SyncOptions(page_rows=args.page_rows), destination=tenant.destination)
    for result in results:
        print(json.dumps(result.as_metadata(), default=str))
    return 0 if all(r.status in ("synced", "busy") for r in results) else 1


def _warehouse(source: Source, organization_id: int, *, tenant_only: bool = True):
    """The warehouse of one organization, configured from the environment; the caller closes it.
    Writing (``tenant_only``) needs an organization the roster syncs; an export only reads."""
    from glific_bq.tenants import get_organization
    from glific_bq.warehouse import Warehouse, WarehouseConfig

    config = WarehouseConfig.from_env()
    if tenant_only:
        _checked_tenant(source, config, organization_id)
    return Warehouse(config, get_organization(source.control, organization_id))


def _redrive(args: argparse.Namespace) -> int:
    from glific_bq.redrive import redrive

    tables = _tables(args)
    with Source(database_url()) as source:
        warehouse = _warehouse(source, args.organization)
        try:
            results = [redrive(source, warehouse, warehouse.organization, spec) for spec in tables]
        finally:
            warehouse.close()
    for result in results:
        print(json.dumps({"table": result.table, "loaded": result.updated, "still_refused": result.set_aside}))
    return 0 if all(r.set_aside == 0 for r in results) else 1


def _export(args: argparse.Namespace) -> int:
    from glific_bq.export import FORMATS, ExportError, export_tenant

    tables = _tables(args)
    with Source(database_url()) as source:
        warehouse = _warehouse(source, args.organization, tenant_only=False)
    try:
        result = export_tenant(warehouse, tables, args.format or FORMATS, args.to, args.date_from, args.date_to)
    except ExportError as error:
        print(f"glific-bq: {error}", file=sys.stderr)
        return 1
    finally:
        warehouse.close()
    for exported in result.files:
        print(json.dumps({"table": exported.table, "format": exported.format, "rows": exported.rows,
                          "file": exported.uri, "sheets": list(exported.sheets),
                          "truncated_cells": exported.truncated_cells}, ensure_ascii=False))
    print(json.dumps({"location": result.location, "manifest": result.manifest, "skipped": result.skipped,
                      "exported_whole": result.whole_tables}, ensure_ascii=False))
    return 0


def _repartition(args: argparse.Namespace) -> int:
    from glific_bq.repartition import repartition_tenant, tables_to_repartition, warehouse_config
    from glific_bq.tenants import get_organization
    from glific_bq.warehouse import Warehouse, WarehouseConfig

    config = WarehouseConfig.from_env()
    specs = tables_to_repartition(config.layout, args.table, args.all)
    with Source(database_url()) as source:
        _checked_tenant(source, config, args.organization)
        with Warehouse(warehouse_config(config), get_organization(source.control, args.organization)) as warehouse:
            results = repartition_tenant(source.control, warehouse, specs)
    for result in results:
        print(json.dumps(result.as_metadata(), default=str))
    return 0 if all(r.status not in ("failed", "busy") for r in results) else 1


def _register_tenants(args: argparse.Namespace) -> int:
    import dagster as dg

    from glific_bq.defs.partitions import tenants
    from glific_bq.roster import select_tenants
    from glific_bq.warehouse import WarehouseConfig

    with Source(database_url()) as source:
        keys = [t.organization.partition_key for t in select_tenants(source.control, WarehouseConfig.from_env()).tenants]
    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(tenants.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(tenants.name, new)
    print(f"tenants: {len(new)} added, {len(keys) - len(new)} already registered")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glific-bq", description="Glific PostgreSQL → BigQuery sync")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="sync one organization now")
    sync.add_argument("--organization", type=int, required=True, help="organization id")
    sync.add_argument("--table", action="append", help="a registered table (repeatable; default all)")
    sync.add_argument("--page-rows", type=int, default=SyncOptions.page_rows)
    again = commands.add_parser("redrive", help="send again the rows BigQuery refused (once fixed at the source)")
    again.add_argument("--organization", type=int, required=True)
    again.add_argument("--table", action="append", help="a registered table (repeatable; default all)")
    export = commands.add_parser("export", help="export one organization's latest rows (CSV, Excel, Parquet)")
    export.add_argument("--organization", type=int, required=True)
    export.add_argument("--table", action="append", help="a registered table (repeatable; default all)")
    export.add_argument("--format", action="append", help="csv, xlsx or parquet (repeatable; default all)")
    export.add_argument("--to", default="exports", help="a local directory or gs://bucket/prefix (default: exports)")
    export.add_argument("--from", dest="date_from", type=date.fromisoformat,
                        help="first day, ISO, on inserted_at in the organization's time")
    export.add_argument("--to-date", dest="date_to", type=date.fromisoformat, help="last day, ISO, inclusive")
    repart = commands.add_parser("repartition", help="partition one organization's tables Glific created unpartitioned, "
                                "as Glific creates them today (docs/repartition.md)")
    repart.add_argument("--organization", type=int, required=True)
    which = repart.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", help="one registered table")
    which.add_argument("--all", action="store_true", help="every table Glific partitions")
    commands.add_parser("register-tenants", help="add the synced organizations as Dagster partitions")
    demo = commands.add_parser("demo", help="run the local demo", add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from glific_bq.local.demo import main as demo_main

        demo_main(args.rest)
        return 0
    try:
        return {"sync": _sync, "redrive": _redrive, "export": _export, "repartition": _repartition,
                "register-tenants": _register_tenants}[args.command](args)
    except (ValueError, LookupError) as error:  # configuration and input mistakes: say what, not a traceback
        print(f"glific-bq: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
