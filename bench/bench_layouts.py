"""The Glific layout beside the raw layout, in one run, on the same rows; and the cost of a
looked-up value that changes (a contact renamed after it has sent many messages).

    python bench/bench_layouts.py [--messages 100000] [--contacts 2000]

Both layouts sync the same organization's messages into the local emulator (pgserver + bqemulator
in-process, Storage Write API), from an empty dataset; then one contact with ``--renamed``
messages is renamed and the next sync's refresh is timed. The emulator's own write speed is part
of the numbers (it is far slower than BigQuery for large appends): compare within a run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="glific_bq_runtime_"))

import pgserver  # noqa: E402
import psycopg  # noqa: E402

from glific_bq import registry, watermarks  # noqa: E402
from glific_bq.layouts import Layout  # noqa: E402
from glific_bq.local import glific_writes as gw  # noqa: E402
from glific_bq.local.bigquery_emulator import LocalBigQuery  # noqa: E402
from glific_bq.local.glific_schema import create_glific_schema  # noqa: E402
from glific_bq.source import Source  # noqa: E402
from glific_bq.sync import SyncOptions, sync_table  # noqa: E402
from glific_bq.tenants import get_organization  # noqa: E402
from glific_bq.warehouse import Warehouse, WarehouseConfig  # noqa: E402


def seed(conn, messages: int, contacts: int, renamed: int) -> tuple[int, int]:
    at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    org = gw.organization(conn, "Bench", "bench", "919000000001", timezone="Asia/Kolkata", at=at)
    bot = conn.execute("SELECT contact_id FROM organizations WHERE id = %s", (org,)).fetchone()[0]
    people = gw.insert(conn, "contacts", [
        {"organization_id": org, "phone": f"91{7000000000 + i}", "name": f"Contact {i}",
         "language_id": gw._default_language(conn, org)} for i in range(contacts)], at=at)
    flow = gw.flow(conn, org, "Registration", at=at)
    rows = [gw.message_row(org, people[0] if i < renamed else people[i % contacts], bot, inbound=i % 2 == 0,
                           body=f"message {i} " + "x" * 40, flow_id=flow) for i in range(messages)]
    for start in range(0, messages, 20_000):
        gw.insert(conn, "messages", rows[start:start + 20_000], at=at)
    return org, people[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument("--renamed", type=int, default=5_000, help="messages of the renamed contact")
    args = parser.parse_args()
    server = pgserver.get_server(tempfile.mkdtemp(prefix="bench_layouts_"), cleanup_mode="stop")
    url = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        create_glific_schema(conn)
        watermarks.ensure_table(conn)
        t = time.monotonic()
        org_id, renamed_contact = seed(conn, args.messages, args.contacts, args.renamed)
        print(f"seeded {args.messages:,} messages in {time.monotonic() - t:.1f} s")
    with LocalBigQuery() as emulator, Source(url) as source:
        organization = get_organization(source.control, org_id)
        print(f"{'layout':<8} {'rows':>9} {'seconds':>8} {'rows/s':>9}")
        for layout in (Layout.RAW, Layout.GLIFIC):
            config = WarehouseConfig(organizations="active", project=emulator.project, emulator_host=emulator.rest_url,
                                     storage_emulator_host=emulator.grpc_endpoint, layout=layout,
                                     dataset_template=f"b{uuid.uuid4().hex[:6]}_{{organization_id}}")
            source.control.execute("DELETE FROM glific_bq_watermarks")
            spec = registry.table("messages", registry.tables_for(layout))
            with Warehouse(config, organization) as warehouse:
                started = time.monotonic()
                result = sync_table(source, warehouse, organization, spec)
                seconds = time.monotonic() - started
                print(f"{layout.value:<8} {result.inserted:>9,} {seconds:>8.1f} {result.inserted / seconds:>9,.0f}")
                if layout is Layout.GLIFIC:
                    options = SyncOptions(lookup_check_seconds=0)
                    sync_table(source, warehouse, organization, spec, options)  # records the digests
                    later = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=1)
                    gw.update(source.control, "contacts", renamed_contact, at=later, name="Renamed")
                    started = time.monotonic()
                    result = sync_table(source, warehouse, organization, spec, options)
                    seconds = time.monotonic() - started
                    print(f"rename of a contact with {args.renamed:,} messages: {result.refreshed:,} rows sent again "
                          f"in {seconds:.1f} s ({result.refreshed / max(seconds, 1e-9):,.0f} rows/s); "
                          f"a sync with nothing renamed: ", end="")
                    started = time.monotonic()
                    sync_table(source, warehouse, organization, spec, options)
                    print(f"{(time.monotonic() - started) * 1000:.0f} ms")
    server.cleanup()


if __name__ == "__main__":
    main()
