"""Copied values that change (a contact renamed, a flow renamed…) reach every row that copies
them (``glific_bq.lookups``), against Glific's real schema and the emulator: whenever the change
was made or committed, at a bounded cost per sync, and only for the tables that copy the value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from glific_bq import registry
from glific_bq.local import glific_writes as gw
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.tenants import get_organization
from glific_bq.warehouse import Warehouse

from .helpers import add_organization, latest_versions, warehouse_rows

TABLES = registry.GLIFIC_TABLES
MESSAGES = registry.table("messages", TABLES)
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)  # past the sync's horizon
#: Every sync looks for changed values (the default looks once per 30 s per organization).
LOOK = {"lookup_check_seconds": 0}


def _world(db):
    """One organization with two contacts, a flow, and a message of each contact in that flow."""
    org = add_organization(db, "Asia/Kolkata")
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org.id,)).fetchone()[0]
    at = NOW - timedelta(hours=1)
    asha = gw.contact(db, org.id, "919811111111", name="Asha", at=at)
    ravi = gw.contact(db, org.id, "919811111112", name="Ravi", at=at)
    flow = gw.flow(db, org.id, "Registration", at=at)
    messages = [gw.message(db, org.id, contact, bot, inbound=True, body="hi", flow_id=flow, at=at)
                for contact in (asha, ravi)]
    return get_organization(db, org.id), {"asha": asha, "ravi": ravi, "flow": flow, "messages": messages, "bot": bot}


def _sync(source, warehouse, org, name: str = "messages", **options):
    return sync_table(source, warehouse, org, registry.table(name, TABLES), SyncOptions(**options))


def _latest(warehouse, table: str = "messages") -> dict[int, dict]:
    return latest_versions(warehouse_rows(warehouse, table))


def test_a_contact_created_and_renamed_between_two_looks_reaches_its_messages(db, source, glific_warehouse_config):
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, horizon_seconds=600, **LOOK)  # the first look at the organization
        zara = gw.contact(db, org.id, "919811111113", name="Zara", at=NOW + timedelta(seconds=1))
        message = gw.message(db, org.id, zara, ids["bot"], inbound=True, body="hello", at=NOW + timedelta(seconds=1))
        sent = _sync(source, warehouse, org, lookup_check_seconds=3600)  # sent as "Zara", no look
        gw.update(db, "contacts", zara, at=NOW + timedelta(seconds=2), name="Zara Khan")

        result = _sync(source, warehouse, org, **LOOK)

        assert sent.inserted == 1
        assert _latest(warehouse)[message]["contact_name"] == "Zara Khan"
        assert result.refreshed == 1


def test_a_rename_committed_late_reaches_its_messages(db, source, glific_warehouse_config, database_url):
    """A rename whose transaction commits after others that changed later values (a writer whose
    clock runs 10 s behind the database, the sync's margin raised to 30 s for it): the look at
    copied values waits for it as the sync's cursor does (``extract.horizon``)."""
    org, ids = _world(db)
    stamped = "UPDATE contacts SET name = %s, updated_at = now() AT TIME ZONE 'UTC' - %s::interval WHERE id = %s"
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        with psycopg.connect(database_url) as slow:  # a transaction that stays open
            slow.execute(stamped, ("Asha Devi", "10 seconds", ids["asha"]))
            db.execute(stamped, ("Ravi Kumar", "8 seconds", ids["ravi"]))  # committed first, stamped later
            _sync(source, warehouse, org, horizon_seconds=30, **LOOK)
            slow.commit()

        _sync(source, warehouse, org, **LOOK)

        latest = _latest(warehouse)
        assert [latest[m]["contact_name"] for m in ids["messages"]] == ["Asha Devi", "Ravi Kumar"]
