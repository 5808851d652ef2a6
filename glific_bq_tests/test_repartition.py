"""Repartitioning a table Glific created unpartitioned (``glific_bq.repartition``), against Glific's
real schema and the emulator, while the minute sync goes on writing to it: a sync of another
session runs inside the steps (through ``on_step``), and every row of the table before, plus every
row the syncs sent, is in the repartitioned table exactly once."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from google.cloud import bigquery

from glific_bq import applied_schemas, registry, repartition, watermarks
from glific_bq.layouts import glific
from glific_bq.local import glific_writes as gw
from glific_bq.repartition import RepartitionOptions, repartition_table
from glific_bq.source import Source
from glific_bq.sync import sync_table
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse

MESSAGES = registry.table("messages", registry.GLIFIC_TABLES)
TODAY = date(2026, 12, 3)
KEPT = "messages__unpartitioned_20261203"
#: Past the sync's horizon, so that every write is sent by the next sync.
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=10)
_phones = itertools.count(1)


def multiset(rows: list[dict]) -> Counter:
    """Rows as a multiset: every column of every row, duplicates counted."""
    return Counter(json.dumps(row, default=str, sort_keys=True) for row in rows)


@dataclass
class Tenant:
    """One organization whose ``messages`` Glific created years ago, unpartitioned, with history:
    several versions per id, rows in several months, rows without ``bq_uuid``."""

    conn: psycopg.Connection
    sync_source: Source  # the minute sync's sessions, not the repartition's
    org: Organization
    warehouse: Warehouse
    contact: int
    bot: int
    messages: list[int]
    synced: list = field(default_factory=list)  # every sync that ran, as (status, rows sent)

    def rows(self, table: str = "messages") -> Counter:
        return multiset(self.warehouse.query(f"SELECT * FROM `{self.warehouse.dataset_ref}.{table}`"))

    def table(self, name: str = "messages") -> bigquery.Table:
        return self.warehouse.client.get_table(f"{self.warehouse.dataset_ref}.{name}")

    def tables(self) -> set[str]:
        return {t.table_id for t in self.warehouse.client.list_tables(self.warehouse.dataset_ref)}

    def change_and_sync(self, expect: str = "synced") -> None:
        """What the minute sync does meanwhile: a new message and a new version of the oldest
        (whose ``inserted_at`` is months back), sent by a sync in a session of its own."""
        at = NOW + timedelta(seconds=len(self.synced))
        self.messages.append(gw.message(self.conn, self.org.id, self.contact, self.bot, inbound=True,
                                        body=f"during {len(self.synced)}", at=at))
        gw.update(self.conn, "messages", self.messages[0], at=at, status="read", body=f"edited {len(self.synced)}")
        result = sync_table(self.sync_source, self.warehouse, self.org, MESSAGES)
        assert result.status == expect, result
        self.synced.append((result.status, result.inserted + result.updated))

    @property
    def rows_synced(self) -> int:
        return sum(sent for _, sent in self.synced)


@pytest.fixture
def sync_source(database_url, db) -> Iterator[Source]:
    with Source(database_url) as source:
        yield source


@pytest.fixture
def control(database_url, db) -> Iterator[psycopg.Connection]:
    """The repartition's own session (the sync lock is a session lock)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_tenant(db, sync_source, glific_warehouse_config) -> Iterator[Callable[[], Tenant]]:
    opened: list[Warehouse] = []

    def make() -> Tenant:
        n = next(_phones)
        months_ago = [NOW - timedelta(days=days) for days in (95, 65, 35)]
        org_id = gw.organization(db, f"Org {n}", f"org{n}", f"91900{n:07d}", timezone="Asia/Kolkata",
                                 at=months_ago[0])
        org = get_organization(db, org_id)
        bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org_id,)).fetchone()[0]
        contact = gw.contact(db, org_id, f"91981{n:07d}", name="Asha", at=months_ago[0])
        warehouse = Warehouse(glific_warehouse_config, org)
        opened.append(warehouse)
        # As Glific created it years ago: no partitioning, no clustering.
        warehouse.client.create_dataset(warehouse.dataset_ref)
        warehouse.client.create_table(bigquery.Table(f"{warehouse.dataset_ref}.messages",
                                                     schema=list(glific.reference_schema()["messages"])))
        tenant = Tenant(db, sync_source, org, warehouse, contact, bot, [])
        for at in months_ago:  # one message a month, each sent, then changed and sent again
            tenant.messages.append(gw.message(db, org_id, contact, bot, inbound=False, body="hello", at=at))
        assert sync_table(sync_source, warehouse, org, MESSAGES).status == "synced"
        for message in tenant.messages:
            gw.update(db, "messages", message, at=NOW - timedelta(days=1), status="delivered")
        assert sync_table(sync_source, warehouse, org, MESSAGES).status == "synced"
        # Glific's own sends from before the take-over: no bq_uuid, one of them twice, alike.
        table = f"`{warehouse.dataset_ref}.messages`"
        for index in (1, 2, 2):
            warehouse.query(f"INSERT INTO {table} SELECT * REPLACE (CAST(NULL AS STRING) AS bq_uuid, "
                            f"DATETIME_SUB(bq_inserted_at, INTERVAL 100 DAY) AS bq_inserted_at, 'by Glific' AS body) "
                            f"FROM {table} WHERE id = @id AND status = 'delivered' AND bq_uuid IS NOT NULL", id=tenant.messages[index])
        return tenant

    yield make
    for warehouse in opened:
        warehouse.close()


def run(control, tenant: Tenant, steps: dict[str, Callable[[], None]] | None = None, **options):
    """One repartition of the tenant's ``messages``, calling ``steps[step]()`` at each step."""
    actions = steps or {}
    return repartition_table(control, tenant.warehouse, MESSAGES, RepartitionOptions(**options),
                             on_step=lambda step: actions.get(step, lambda: None)(), today=TODAY)


def assert_every_row_once(tenant: Tenant, before: Counter) -> None:
    """The table holds every row it held before, and every row the syncs sent since, once each."""
    after = tenant.rows()
    assert not before - after  # nothing lost
    sent = after - before
    assert sum(sent.values()) == tenant.rows_synced  # nothing duplicated, nothing else
    assert all(json.loads(row)["bq_uuid"] for row in sent)


def assert_glific_layout(table: bigquery.Table) -> None:
    assert table.time_partitioning.type_ == "MONTH" and table.time_partitioning.field == "inserted_at"
    assert table.clustering_fields == ["contact_phone", "flow_id"]


def test_an_unpartitioned_glific_table_is_repartitioned_while_the_sync_writes_to_it(control, make_tenant):
    tenant = make_tenant()
    before = tenant.rows()
    assert sum(1 for row in before.elements() if json.loads(row)["bq_uuid"] is None) == 3
    assert len({json.loads(row)["inserted_at"][:7] for row in before}) == 3  # three months

    result = run(control, tenant, {
        "copied": tenant.change_and_sync,  # no lock: written to the old table after the copy
        "caught_up": lambda: tenant.change_and_sync(expect="busy"),  # the lock: this tenant-table waits
    })

    assert result.status == "repartitioned", result
    assert result.rows_caught_up == 2 and result.copies == 1
    assert_glific_layout(tenant.table())
    assert_every_row_once(tenant, before)
    # The old table is kept, as it was at the swap, beside the new one; the copy's name is free again.
    assert tenant.tables() == {"messages", KEPT}
    assert tenant.table(KEPT).time_partitioning is None
    assert tenant.rows(KEPT) == tenant.rows()
    assert repartition.progress(control)[0]["step"] == "done"
    # No process trusts what it knew of the old table: the next sync checks the new one once.
    table_id = f"{tenant.warehouse.dataset_ref}.messages"
    assert applied_schemas.recorded(control, table_id) is None
    # The next sync sends what waited during the swap, into the new table.
    tenant.change_and_sync()
    assert applied_schemas.recorded(control, table_id) is not None
    assert_every_row_once(tenant, before)
    assert sum((tenant.rows() - tenant.rows(KEPT)).values()) == tenant.synced[-1][1] > 0


@pytest.mark.parametrize("crash_at", repartition.STEPS)
def test_a_run_that_dies_at_any_step_is_finished_by_the_next(control, make_tenant, crash_at):
    tenant = make_tenant()
    before = tenant.rows()

    def crash():
        raise RuntimeError(f"killed at {crash_at}")

    with pytest.raises(RuntimeError, match="killed"):
        run(control, tenant, {"copied": tenant.change_and_sync, crash_at: crash})
    tenant.change_and_sync()  # the lock died with the run: the sync goes on, wherever the tables stand
    if crash_at == "old_renamed":  # between the renames: the sync made itself a new messages table
        assert tenant.tables() == {"messages", "messages__repartitioned", KEPT}

    result = run(control, tenant)

    assert result.status == ("already_partitioned" if crash_at == "done" else "repartitioned"), result
    assert_glific_layout(tenant.table())
    assert_every_row_once(tenant, before)
    assert tenant.tables() == {"messages", KEPT}
    assert not before - tenant.rows(KEPT)  # the old rows are kept, whatever happened
    tenant.change_and_sync()
    assert_every_row_once(tenant, before)


def test_a_table_already_partitioned_is_reported_and_left_alone(control, db, sync_source, glific_warehouse_config):
    org = get_organization(db, gw.organization(db, "New", "new", "919111111111", at=NOW))
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org.id,)).fetchone()[0]
    contact = gw.contact(db, org.id, "919822222222", at=NOW)
    gw.message(db, org.id, contact, bot, inbound=True, body="hi", at=NOW)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        assert sync_table(sync_source, warehouse, org, MESSAGES).status == "synced"  # created partitioned
        tenant = Tenant(db, sync_source, org, warehouse, contact, bot, [])
        before, tables = tenant.rows(), tenant.tables()

        result = run(control, tenant)

        assert result.status == "already_partitioned"
        assert "already partitioned (by MONTH of inserted_at, clustered by contact_phone, flow_id)" in result.message
        assert tenant.rows() == before and tenant.tables() == tables == {"messages"}
    assert repartition.progress(control) == []


def test_a_table_glific_does_not_partition_is_left_alone(control, make_tenant):
    tenant = make_tenant()
    result = repartition_table(control, tenant.warehouse, registry.table("contacts", registry.GLIFIC_TABLES))
    assert result.status == "not_partitioned_by_glific"
    assert tenant.tables() == {"messages"}


def test_another_tenant_is_untouched_and_keeps_syncing(control, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    other_before, other_tables = other.rows(), other.tables()

    result = run(control, tenant, {"caught_up": other.change_and_sync})  # while this one's lock is held

    assert result.status == "repartitioned"
    assert other.synced == [("synced", 2)]
    assert other.tables() == other_tables == {"messages"}
    assert other.table().time_partitioning is None
    assert_every_row_once(other, other_before)
    assert [(p["organization_id"], p["step"]) for p in repartition.progress(control)] == [(tenant.org.id, "done")]


def test_a_sync_holding_the_lock_throughout_leaves_the_copy_for_the_next_run(control, database_url, make_tenant):
    tenant = make_tenant()
    before = tenant.rows()
    waits = []
    with psycopg.connect(database_url, autocommit=True) as tick, watermarks.exclusive(tick, tenant.org.id, "messages"):
        busy = run(control, tenant, lock_attempts=3, sleep=waits.append)
    assert busy.status == "busy" and waits == [2.0, 2.0]
    assert tenant.table().time_partitioning is None and repartition.progress(control)[0]["step"] == "copied"
    tenant.change_and_sync()

    result = run(control, tenant)

    assert result.status == "repartitioned" and result.copies == 0 and result.rows_caught_up == 2
    assert_every_row_once(tenant, before)


def test_the_ui_job_repartitions_one_table_of_one_organization(control, database_url, make_tenant,
                                                                glific_warehouse_config):
    import dagster as dg

    from glific_bq.definitions import defs
    from glific_bq.defs.repartition import repartition_job
    from glific_bq.defs.resources import GlificPostgres
    from glific_bq_tests.helpers import bigquery_resource

    assert defs.get_job_def("repartition_job").name == "repartition_job"  # registered: in the UI's Jobs
    tenant = make_tenant()
    before = tenant.rows()
    resources = {"postgres": GlificPostgres(database_url=database_url),
                 "bigquery": bigquery_resource(glific_warehouse_config)}
    config = {"ops": {"repartition_tenant_tables": {"config": {"organization_id": tenant.org.id, "table": "messages"}}}}

    result = repartition_job.execute_in_process(run_config=config, resources=resources,
                                                instance=dg.DagsterInstance.ephemeral())

    assert result.success
    assert_glific_layout(tenant.table())
    assert_every_row_once(tenant, before)
    (observed,) = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observed.asset_key == dg.AssetKey(["bigquery", "messages"])


def test_the_command_line_repartitions_every_table_glific_partitions(control, database_url, make_tenant,
                                                                    glific_warehouse_config, monkeypatch, capsys):
    from glific_bq import cli
    from glific_bq.warehouse.config import ENVIRONMENT

    tenant = make_tenant()
    before = tenant.rows()
    for name, variable in ENVIRONMENT.items():
        value = getattr(glific_warehouse_config, name)
        monkeypatch.setenv(variable, str(getattr(value, "value", value))) if value else monkeypatch.delenv(
            variable, raising=False)
    monkeypatch.setenv("GLIFIC_DATABASE_URL", database_url)
    with pytest.raises(SystemExit):  # one table or all of them, not both
        cli.main(["repartition", "--organization", str(tenant.org.id), "--table", "messages", "--all"])

    assert cli.main(["repartition", "--organization", str(tenant.org.id), "--all"]) == 0

    printed = {r["table"]: r["status"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert printed["messages"] == "repartitioned"
    assert {status for table, status in printed.items() if table != "messages"} == {"missing"}
    assert set(printed) == {spec.name for spec in registry.GLIFIC_TABLES if spec.partitioned}
    assert_every_row_once(tenant, before)


def test_rows_deleted_from_the_old_table_during_the_copy_are_deleted_from_the_copy(control, make_tenant):
    tenant = make_tenant()
    table = f"`{tenant.warehouse.dataset_ref}.messages`"

    def delete_an_older_version():  # what a delete or dedup pass does, while the copy is made
        assert tenant.warehouse.query(f"SELECT COUNT(*) AS n FROM {table} WHERE id = @id AND status != 'delivered'",
                                      id=tenant.messages[0])[0]["n"] == 1
        tenant.warehouse.query(f"DELETE FROM {table} WHERE id = @id AND status != 'delivered'", id=tenant.messages[0])

    result = run(control, tenant, {"copied": delete_an_older_version})

    assert result.status == "repartitioned" and result.copies == 1 and not result.warnings
    assert tenant.rows() == tenant.rows(KEPT)
    assert [r for r in tenant.rows() if json.loads(r)["id"] == tenant.messages[0]] != []


def test_a_dedup_pass_giving_keys_during_the_copy_makes_the_swap_copy_again(control, make_tenant):
    from glific_bq.dedup import dedup_table

    tenant = make_tenant()
    unkeyed = sum(1 for row in tenant.rows().elements() if json.loads(row)["bq_uuid"] is None)

    result = run(control, tenant, {"copied": lambda: dedup_table(tenant.warehouse, MESSAGES, since=None)})

    assert result.status == "repartitioned" and result.copies == 2
    assert "copied again" in result.warnings[0]
    assert tenant.rows() == tenant.rows(KEPT)  # the old table as the dedup pass left it, exactly
    assert sum(1 for row in tenant.rows().elements() if json.loads(row)["bq_uuid"] is None) < unkeyed


def test_a_second_run_launched_meanwhile_does_nothing(control, database_url, make_tenant):
    tenant = make_tenant()
    before, tables = tenant.rows(), tenant.tables()
    with psycopg.connect(database_url, autocommit=True) as other:
        second = []
        first = run(control, tenant, {"copied": lambda: second.append(run(other, tenant))})
    assert [r.status for r in second] == ["busy"] and "another run is repartitioning" in second[0].message
    assert first.status == "repartitioned" and first.copies == 1
    assert tenant.tables() == {*tables, KEPT}
    assert tenant.rows() == before == tenant.rows(KEPT)
