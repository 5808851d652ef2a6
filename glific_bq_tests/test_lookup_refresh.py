"""Copied values that change (a contact renamed, a flow renamed…) reach every row that copies
them (``glific_bq.lookups``), against Glific's real schema and the emulator: whenever the change
was made or committed, at a bounded cost per sync, and only for the tables that copy the value."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import psycopg

from glific_bq import layouts, lookups, registry
from glific_bq import source as state_tables
from glific_bq.layouts import glific
from glific_bq.local import glific_writes as gw
from glific_bq.schema import reflect_columns
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.tenants import get_organization
from glific_bq.warehouse import Warehouse

from .helpers import add_organization, latest_versions, warehouse_rows

TABLES = registry.GLIFIC_TABLES
MESSAGES = registry.table("messages", TABLES)
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)  # past the sync's horizon
#: Every sync looks for changed values (the default looks once per 30 s per organization).
LOOK = {"lookup_check_seconds": 0}


def _world(db, more: int = 0):
    """One organization with two contacts, a staff user, a flow, and a message of each contact in
    that flow answered by the staff user (and ``more`` messages of the first one)."""
    org = add_organization(db, "Asia/Kolkata")
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org.id,)).fetchone()[0]
    at = NOW - timedelta(hours=1)
    gw.update(db, "contacts", bot, at=at)  # the organization's own contact too, an hour ago: no change later
    asha = gw.contact(db, org.id, "919811111111", name="Asha", at=at)
    ravi = gw.contact(db, org.id, "919811111112", name="Ravi", at=at)
    staff = gw.user(db, org.id, "919822222222", "Meera", roles=("staff",), at=at)
    flow = gw.flow(db, org.id, "Registration", at=at, keywords=["hi"])
    messages = [gw.message(db, org.id, contact, bot, inbound=True, body="hi", flow_id=flow, user_id=staff, at=at)
                for contact in (asha, ravi, *[asha] * more)]
    return get_organization(db, org.id), {"asha": asha, "ravi": ravi, "staff": staff, "flow": flow,
                                          "messages": messages, "bot": bot}


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
    copied values waits for it as the sync's cursor does (``horizon.horizon``)."""
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



def _versions(warehouse) -> dict[int, int]:
    """How many versions of each message BigQuery holds."""
    counts: dict[int, int] = {}
    for row in warehouse_rows(warehouse, "messages"):
        counts[row["id"]] = counts.get(row["id"], 0) + 1
    return counts


def test_a_flow_renamed_after_many_messages_is_sent_again_a_bounded_number_of_rows_per_sync(
        db, source, glific_warehouse_config):
    org, ids = _world(db, more=8)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        gw.update(db, "flows", ids["flow"], at=NOW, name="Enrolment")

        syncs = [_sync(source, warehouse, org, refresh_rows=4, page_rows=2, **LOOK) for _ in range(3)]

        assert [s.refreshed for s in syncs] == [4, 4, 2]  # rows, not parents: one flow, ten messages
        assert {r["flow_name"] for r in _latest(warehouse).values()} == {"Enrolment"}
        assert set(_versions(warehouse).values()) == {2}  # each sent again once


def test_a_sync_that_dies_while_sending_again_leaves_the_rest_for_the_next(db, source, glific_warehouse_config):
    org, ids = _world(db, more=8)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        gw.update(db, "flows", ids["flow"], at=NOW, name="Enrolment")
        pages = []

        def dies_at_the_third_page(step: str) -> None:
            if step == "extracted":
                pages.append(step)
                if len(pages) == 3:
                    raise RuntimeError("the worker died")

        try:
            sync_table(source, warehouse, org, MESSAGES, SyncOptions(page_rows=2, **LOOK), on_step=dies_at_the_third_page)
        except RuntimeError:
            pass
        result = _sync(source, warehouse, org, page_rows=2, **LOOK)

        assert len(pages) == 3 and result.refreshed == 6  # the two pages confirmed are not sent again
        assert {r["flow_name"] for r in _latest(warehouse).values()} == {"Enrolment"}
        assert set(_versions(warehouse).values()) == {2}



def test_a_flow_renamed_again_while_its_messages_are_sent_again_gives_them_all_the_last_name(
        db, source, glific_warehouse_config):
    """The second rename is seen by another table's sync (its look queues the refresh again)
    while this one sends the first: the pages sent before it carry the first name, so they are
    sent again."""
    org, ids = _world(db, more=4)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        gw.update(db, "flows", ids["flow"], at=NOW, name="Enrolment")
        pages = []

        def renamed_again_at_the_first_page(step: str) -> None:
            if step == "written" and not pages:
                pages.append(step)
                gw.update(db, "flows", ids["flow"], at=NOW + timedelta(seconds=1), name="Onboarding")
                lookups.detect(db, [org.id], layouts.lookup_sources(), horizon=NOW + timedelta(seconds=2))

        sync_table(source, warehouse, org, MESSAGES, SyncOptions(page_rows=2, **LOOK),
                   on_step=renamed_again_at_the_first_page)
        _sync(source, warehouse, org, **LOOK)

        assert pages and {r["flow_name"] for r in _latest(warehouse).values()} == {"Onboarding"}


def test_refreshes_queued_by_an_earlier_version_are_sent(db, source, glific_warehouse_config):
    org, ids = _world(db)
    db.execute("""CREATE TABLE glific_bq_refresh (organization_id bigint NOT NULL, "table" text NOT NULL,
                  parent text NOT NULL, id bigint NOT NULL, PRIMARY KEY (organization_id, "table", parent, id))""")
    db.execute("""INSERT INTO glific_bq_refresh VALUES (%s, 'messages', 'flows', %s)""", (org.id, ids["flow"]))
    with Warehouse(glific_warehouse_config, org) as warehouse:
        result = _sync(source, warehouse, org, **LOOK)

    assert result.inserted == 2 and result.refreshed == 2
    assert db.execute("SELECT count(*) FROM glific_bq_refresh").fetchone()[0] == 0



def test_a_staff_login_sends_the_staff_contact_again_not_the_messages_of_that_user(
        db, source, glific_warehouse_config):
    """Only contacts copy a user's login (``last_login_as_staff_at``); messages copy the name."""
    org, ids = _world(db)
    (staff_contact,) = db.execute("SELECT contact_id FROM users WHERE id = %s", (ids["staff"],)).fetchone()
    with Warehouse(glific_warehouse_config, org) as warehouse:
        for table in ("contacts", "messages"):
            _sync(source, warehouse, org, table, **LOOK)
        gw.update(db, "users", ids["staff"], at=NOW, last_login_at=NOW, last_login_from="10.0.0.7")

        contacts, messages = (_sync(source, warehouse, org, table, **LOOK) for table in ("contacts", "messages"))

        assert (contacts.refreshed, messages.refreshed) == (1, 0)
        assert _latest(warehouse, "contacts")[staff_contact]["last_login_from_as_staff"] == "10.0.0.7"


def test_editing_a_flows_keywords_sends_nothing_again(db, source, glific_warehouse_config):
    """No table but ``flows`` copies them (see ``glific.NOT_REFRESHED``), nor the flow's tag."""
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        gw.update(db, "flows", ids["flow"], at=NOW, keywords=["hello", "start"])

        result = _sync(source, warehouse, org, **LOOK)

        assert result.refreshed == 0
        assert db.execute("SELECT count(*) FROM glific_bq_refresh").fetchone()[0] == 0


def _copied(text: str, parents: set[str]) -> dict[str, set[str]]:
    """``{looked-up table: columns}`` that SQL over aliased tables (``public.contacts c``) reads
    from them, keys aside (its id, and its organization: every read is tenant-bound)."""
    found: dict[str, set[str]] = {}
    for table, alias in re.findall(r"public\.(\w+) (\w+)", text):
        if table in parents:
            found.setdefault(table, set()).update(set(re.findall(rf"\b{alias}\.(\w+)", text)) - {"id", "organization_id"})
    return found


def test_every_value_copied_from_a_looked_up_table_is_declared(db):
    """What each table copies (its joins, subqueries and filters) is exactly what
    ``glific.COPIES`` declares, and every key it copies by is one the refresh follows: a value a
    table copies is never left stale, and a value it does not copy never sends it again."""
    parents = set(glific.copied_columns())
    for spec in TABLES:
        columns = reflect_columns(db, spec.source)
        if not columns:
            continue  # a table this database lacks
        shape = layouts.shape_for(layouts.Layout.GLIFIC, spec, columns)
        texts = [c.as_string(None) for c in (*shape.select, shape.where) if c is not None]
        texts += [f"{join.fetch.source} {join.value}" for join in shape.joins.values()]
        found: dict[str, set[str]] = {}
        for text in texts:
            for parent, names in _copied(text, parents).items():
                found.setdefault(parent, set()).update(names)
        if spec.name in glific.NOT_REFRESHED:
            assert found, spec.name  # the reason it gives still holds: it copies what can change
            continue
        for join in shape.joins.values():
            parent = join.fetch.source.removeprefix("public.").removesuffix(" x")
            if parent in parents and join.fetch.match == "x.id":
                assert join.key in shape.refresh.get(parent, ()), (spec.name, join.key)
        declared = {parent: set(copy.columns) for parent, copy in glific.COPIES.get(spec.name, {}).items()
                    if parent in shape.refresh}
        assert found == declared, spec.name



def test_a_rename_after_an_upgrade_from_one_digest_per_row_is_sent(db, source, glific_warehouse_config):
    """An earlier version kept one digest of every copied column per row; they cannot say which
    tables copy what changed, so they go, and the next change of such a row is sent to every
    table copying from it."""
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        db.execute("DELETE FROM glific_bq_lookup_digests")
        db.execute("CREATE TABLE glific_bq_lookups (organization_id bigint, parent text, id bigint, digest text)")
        state_tables._created.clear()  # a new process, of the new version
        gw.update(db, "flows", ids["flow"], at=NOW, name="Enrolment")

        result = _sync(source, warehouse, org, **LOOK)

        assert result.refreshed == 2
        assert db.execute("SELECT to_regclass('glific_bq_lookups')").fetchone()[0] is None


def _digest_versions(db) -> list[tuple[str, str]]:
    """Each kept digest and the transaction that last wrote it (``xmin``)."""
    return db.execute("SELECT digest, xmin::text FROM glific_bq_lookup_digests ORDER BY parent, copied, id").fetchall()


def test_the_first_look_at_an_organization_keeps_digests_and_sends_nothing_again(db, source, glific_warehouse_config):
    org, _ = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        result = _sync(source, warehouse, org, **LOOK)

    assert (result.inserted, result.refreshed) == (2, 0)
    assert db.execute("SELECT count(*) FROM glific_bq_refresh").fetchone()[0] == 0
    assert db.execute("SELECT count(DISTINCT parent) FROM glific_bq_lookup_digests").fetchone()[0] >= 3


def test_a_change_that_copies_nothing_queues_nothing_and_writes_no_digest(db, source, glific_warehouse_config):
    """A contact field set by a flow, and a rename undone before the next look: the contact
    changed, but the values other tables copy from it did not (its digests are unchanged), so
    nothing is queued, nothing sent again, and no digest is written."""
    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        kept = _digest_versions(db)
        gw.update(db, "contacts", ids["asha"], at=NOW, fields=gw.contact_fields({"age": "30"}, at=NOW))
        gw.update(db, "contacts", ids["ravi"], at=NOW, name="Ravi K")
        gw.update(db, "contacts", ids["ravi"], at=NOW + timedelta(seconds=1), name="Ravi")

        queued = lookups.detect(db, [org.id], layouts.lookup_sources(), horizon=NOW + timedelta(seconds=2))
        result = _sync(source, warehouse, org, **LOOK)

        assert (queued, result.refreshed) == (0, 0)
        assert db.execute("SELECT count(*) FROM glific_bq_refresh").fetchone()[0] == 0
        assert _digest_versions(db) == kept


def test_a_ticks_tenants_are_checked_together_and_each_gets_its_own_renames(
        db, database_url, glific_warehouse_config, monkeypatch):
    """The tenants of one tick are checked together (``lookups.Checks``): one look covers every
    tenant, one statement per looked-up table, and each tenant's rename reaches its own messages
    and no one else's; a tenant first looked at in that look records and sends nothing again."""
    from glific_bq import tick

    worlds = [_world(db) for _ in range(3)]
    orgs = [org for org, _ in worlds]
    looks: list[list[int]] = []
    real_detect = lookups.detect

    def counted(conn, organization_ids, *args, **kwargs):
        looks.append(sorted(organization_ids))
        return real_detect(conn, organization_ids, *args, **kwargs)

    monkeypatch.setattr(lookups, "detect", counted)
    options = tick.TickOptions(workers=3, sync=SyncOptions(lookup_check_seconds=3600))
    work = {org.id: [MESSAGES] for org in orgs[:2]}  # the third one is first synced later

    def open_warehouse(org):
        return Warehouse(glific_warehouse_config, org)

    tick.sync_tenants(database_url, open_warehouse, work, options)  # the first look at the first two
    for n, (_, ids) in enumerate(worlds):
        gw.update(db, "contacts", ids["asha"], at=NOW, name=f"Asha {n}")
    looks.clear()
    monkeypatch.setattr(lookups, "checks", lookups.Checks())  # a new process: all due

    results = tick.sync_tenants(database_url, open_warehouse, {org.id: [MESSAGES] for org in orgs}, options)

    assert looks == [[org.id for org in orgs]]  # one look for the three
    refreshed = {r.organization_id: r.refreshed for r in results}
    assert refreshed == {orgs[0].id: 1, orgs[1].id: 1, orgs[2].id: 0}  # the third: a first look
    for n, (org, ids) in enumerate(worlds[:2]):
        with Warehouse(glific_warehouse_config, org) as warehouse:
            assert _latest(warehouse)[ids["messages"][0]]["contact_name"] == f"Asha {n}"


def test_a_joint_look_that_fails_leaves_each_tenant_to_look_alone(db, database_url, glific_warehouse_config,
                                                                   monkeypatch):
    """A look at several tenants that PostgreSQL refuses (here: any look at more than one) does not
    fail their syncs: each tenant looks alone, and gets its rename."""
    from glific_bq import tick

    worlds = [_world(db) for _ in range(2)]
    real_detect = lookups.detect
    looks: list[list[int]] = []

    def refuses_several(conn, organization_ids, *args, **kwargs):
        looks.append(sorted(organization_ids))
        if len(set(organization_ids)) > 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real_detect(conn, organization_ids, *args, **kwargs)

    options = tick.TickOptions(workers=1, sync=SyncOptions(lookup_check_seconds=3600))
    work = {org.id: [MESSAGES] for org, _ in worlds}

    def open_warehouse(org):
        return Warehouse(glific_warehouse_config, org)

    tick.sync_tenants(database_url, open_warehouse, work, options)
    for n, (_, ids) in enumerate(worlds):
        gw.update(db, "contacts", ids["asha"], at=NOW, name=f"Asha {n}")
    monkeypatch.setattr(lookups, "detect", refuses_several)
    monkeypatch.setattr(lookups, "checks", lookups.Checks())  # a new process: all due

    results = tick.sync_tenants(database_url, open_warehouse, work, options)

    assert [r.status for r in results] == ["synced", "synced"]
    assert [r.refreshed for r in results] == [1, 1]
    assert looks == [sorted(work), [min(work)], [max(work)]]  # together (refused), then each alone


def test_a_refresh_queued_for_a_table_no_longer_copied_from_is_dropped_and_plans_nothing(
        db, source, glific_warehouse_config):
    """A refresh queued for a looked-up table that messages no longer copy from (the layout
    changed since it was queued): the next sync of messages drops it, so it does not keep the
    pair planned every minute."""
    from glific_bq import plan

    org, ids = _world(db)
    with Warehouse(glific_warehouse_config, org) as warehouse:
        _sync(source, warehouse, org, **LOOK)
        db.execute('INSERT INTO glific_bq_refresh (organization_id, "table", parent, id) VALUES (%s, %s, %s, %s)',
                   (org.id, "messages", "no_longer_copied", 1))
        planned = plan.dirty_organizations(db, MESSAGES, {org.id: warehouse.destination})

        _sync(source, warehouse, org, **LOOK)

        assert planned == [org.id]
        assert db.execute("SELECT count(*) FROM glific_bq_refresh WHERE organization_id = %s",
                          (org.id,)).fetchone()[0] == 0
        assert plan.dirty_organizations(db, MESSAGES, {org.id: warehouse.destination}) == []
