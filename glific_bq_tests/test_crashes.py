"""A sync killed at any step loses nothing, and after dedup leaves exactly one version per row.

One round of Glific messages with every pass at work, in pages of two rows: the update pass
(three messages edited), the insert pass (three new ones), the end-of-round cursor advance, and
the lookup refresh pass (a contact renamed: her four messages are sent again, with the progress
kept page by page). The sync is killed at every crash point of that round in turn (``CRASH_POINTS``:
each step of each page, each write cut in half, the look for changed values just after the
end-of-round advance, each refresh page's progress and its end); a new process then syncs again,
dedup runs, and BigQuery must hold exactly the source's rows, each once, in their latest
version (body and copied contact name)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from glific_bq import extract, lookups, registry
from glific_bq.dedup import dedup_table
from glific_bq.local import glific_writes as gw
from glific_bq.source import Source
from glific_bq.sync import SyncOptions, sync_table
from glific_bq.tenants import Organization, get_organization
from glific_bq.warehouse import Warehouse, writes

from .helpers import add_organization, warehouse_rows

MESSAGES = registry.table("messages", registry.GLIFIC_TABLES)
#: Pages of two rows; every sync looks for changed values (the default looks every 30 s).
PAGES = SyncOptions(page_rows=2, lookup_check_seconds=0)
#: Past the sync's horizon, so every write is sent by the next sync.
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=10)

#: The crash points of the round, in the order the sync reaches them (``test_the_crash_points_are_every_step_of_the_round``
#: keeps this list true). ``write``: the write is cut in half (its first half written), then the process dies.
CRASH_POINTS = (
    "update 1: extracted", "update 1: write", "update 1: written", "update 1: advanced",
    "update 2: extracted", "update 2: write", "update 2: written", "update 2: advanced",
    "insert 1: extracted", "insert 1: write", "insert 1: written", "insert 1: advanced",
    "insert 2: extracted", "insert 2: write", "insert 2: written", "insert 2: advanced",
    "after the end-of-round cursor advance: lookups.detect",
    "refresh 1: extracted", "refresh 1: write", "refresh 1: written", "refresh 1: lookups.progressed",
    "refresh 2: extracted", "refresh 2: write", "refresh 2: written", "refresh 2: lookups.progressed",
    "refresh: lookups.done",
)


class Crash(Exception):
    """The process dies here."""


class Crashes:
    """Names each crash point as the sync reaches it (``points``), once ``armed``, and dies at ``at``."""

    def __init__(self) -> None:
        self.at: str | None = None
        self.armed = False
        self.points: list[str] = []
        self.pass_ = ""
        self.pages = {"update": 0, "insert": 0, "refresh": 0}

    def reach(self, point: str, die: bool = True) -> bool:
        if not self.armed:
            return False
        self.points.append(point)
        if point == self.at and die:
            raise Crash(f"killed at {point}")
        return point == self.at

    def here(self, step: str) -> str:
        return f"{self.pass_} {self.pages[self.pass_]}: {step}"

    def on_step(self, step: str) -> None:
        if step == "extracted" and self.armed:
            self.pages[self.pass_] += 1
        self.reach(self.here(step))


@pytest.fixture
def crashes(monkeypatch) -> Crashes:
    """The sync's steps, the passes it reads, the refresh bookkeeping and every write, observed
    (and, at the crash point, killed) where the sync calls them."""
    crashes = Crashes()
    real_write, real_pages = writes.write, extract.pages
    real_detect, real_progressed, real_done = lookups.detect, lookups.progressed, lookups.done

    def write(warehouse, target, rows):
        if crashes.reach(crashes.here("write"), die=False):  # cut in half: its first half written
            real_write(warehouse, target, rows.slice(0, rows.num_rows // 2))
            raise Crash("killed during the write")
        real_write(warehouse, target, rows)

    def pages(reader, query, pass_, **kwargs):
        crashes.pass_ = pass_.name.lower()
        return real_pages(reader, query, pass_, **kwargs)

    def detect(*args, **kwargs):
        crashes.reach("after the end-of-round cursor advance: lookups.detect")
        return real_detect(*args, **kwargs)

    def progressed(*args, **kwargs):
        batch = real_progressed(*args, **kwargs)
        crashes.reach(crashes.here("lookups.progressed"))
        return batch

    def done(*args, **kwargs):
        real_done(*args, **kwargs)
        crashes.reach("refresh: lookups.done")

    monkeypatch.setattr(writes, "write", write)
    monkeypatch.setattr(extract, "pages", pages)
    monkeypatch.setattr(lookups, "detect", detect)
    monkeypatch.setattr(lookups, "progressed", progressed)
    monkeypatch.setattr(lookups, "done", done)
    return crashes


def _changed(db, database_url, config) -> Organization:
    """An organization synced once, then changed so that its next round runs every pass."""
    org = add_organization(db, "Asia/Kolkata")
    bot = db.execute("SELECT contact_id FROM organizations WHERE id = %s", (org.id,)).fetchone()[0]
    at = NOW - timedelta(hours=1)
    gw.update(db, "contacts", bot, at=at)
    asha = gw.contact(db, org.id, "919811111111", name="Asha", at=at)
    ravi = gw.contact(db, org.id, "919811111112", name="Ravi", at=at)
    sent = {contact: [gw.message(db, org.id, contact, bot, inbound=True, body="hi", at=at) for _ in range(n)]
            for contact, n in ((asha, 4), (ravi, 3))}
    with Source(database_url) as source:
        sync_table(source, Warehouse(config, org), org, MESSAGES, PAGES)
    gw.update(db, "messages", sent[ravi], at=NOW, body="edited")  # the update pass: two pages
    for _ in range(3):  # the insert pass: two pages
        gw.message(db, org.id, ravi, bot, inbound=True, body="new", at=NOW)
    # The refresh pass: her four messages, two pages that only the refresh sends again.
    gw.update(db, "contacts", asha, at=NOW, name="Asha Devi")
    return get_organization(db, org.id)


def _sync(database_url, config, org: Organization, crashes: Crashes):
    crashes.armed = True
    try:
        with Source(database_url) as source:
            return sync_table(source, Warehouse(config, org), org, MESSAGES, PAGES, on_step=crashes.on_step)
    finally:
        crashes.armed = False


def test_the_crash_points_are_every_step_of_the_round(db, database_url, glific_warehouse_config, crashes):
    result = _sync(database_url, glific_warehouse_config, _changed(db, database_url, glific_warehouse_config), crashes)
    assert (result.updated, result.inserted, result.refreshed) == (3, 3, 4)
    assert tuple(crashes.points) == CRASH_POINTS


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_sync_killed_at_any_step_loses_nothing_and_dedup_leaves_one_version(
        point, db, database_url, glific_warehouse_config, crashes):
    org = _changed(db, database_url, glific_warehouse_config)
    crashes.at = point
    with pytest.raises(Crash):
        _sync(database_url, glific_warehouse_config, org, crashes)

    warehouse = Warehouse(glific_warehouse_config, org)
    with Source(database_url) as restarted:  # a new process: fresh connections
        assert sync_table(restarted, warehouse, org, MESSAGES, PAGES).caught_up
    dedup_table(warehouse, "messages", since=None)

    rows = warehouse_rows(warehouse, "messages")
    expected = {i: (body, name) for i, body, name in db.execute(
        "SELECT m.id, m.body, c.name FROM messages m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.organization_id = %s", (org.id,)).fetchall()}
    assert sorted(r["id"] for r in rows) == sorted(expected)  # nothing lost, nothing invented, no copies
    assert {r["id"]: (r["body"], r["contact_name"]) for r in rows} == expected
