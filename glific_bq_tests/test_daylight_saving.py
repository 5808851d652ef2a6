"""``bq_inserted_at`` keeps increasing when daylight saving time ends (``glific_bq.stamping``): in
the Glific layout it is the organization's local DATETIME, whose wall clock repeats an hour, and
dedup and incremental readers order versions by it. The send clock is injected
(``stamping.clock``), so a real fall-back hour is crossed without waiting for one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from glific_bq import registry, stamping
from glific_bq.dedup import dedup_table
from glific_bq.local import glific_writes as gw
from glific_bq.stamping import local_send_time
from glific_bq.sync import sync_table
from glific_bq.warehouse import Warehouse

from .helpers import add_organization, warehouse_rows

#: Real fall-backs: 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC); 2026-10-25 02:00 BST -> 01:00
#: GMT (01:00 UTC).
FALL_BACKS = {"America/New_York": datetime(2026, 11, 1, 6, tzinfo=timezone.utc),
              "Europe/London": datetime(2026, 10, 25, 1, tzinfo=timezone.utc)}
CONTACTS = registry.table("contacts", registry.GLIFIC_TABLES)
#: Past the sync's horizon by the database clock (the rows' own stamps; only sends are injected).
NOW = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=10)


@pytest.mark.parametrize("zone", FALL_BACKS)
def test_the_local_send_time_increases_through_a_fall_back_and_stays_within_an_hour_of_the_wall_clock(zone):
    change = FALL_BACKS[zone]
    moment, end = change - timedelta(minutes=30), change + timedelta(hours=2, minutes=30)
    previous = None
    while moment < end:  # every 137 ms: a step that is no multiple of the smear's arithmetic
        sent = local_send_time(moment, zone)
        wall = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        assert previous is None or sent > previous, (moment, previous, sent)
        assert timedelta(0) <= sent - wall <= timedelta(hours=1), (moment, sent, wall)
        if moment < change or moment >= change + timedelta(hours=2):
            assert sent == wall, moment  # only the two hours after the change are smeared
        previous = sent
        moment += timedelta(milliseconds=137)


def test_versions_sent_across_a_fall_back_keep_their_order_and_dedup_keeps_the_last(
        db, source, glific_warehouse_config, monkeypatch):
    """A contact renamed and sent again before, during and after New York's repeated hour: each
    version's ``bq_inserted_at`` is greater than the one sent before it, and dedup (full, and
    incremental from a pass inside the repeated hour) keeps the version sent last."""
    zone = "America/New_York"
    change = FALL_BACKS[zone]
    org = add_organization(db, zone)
    contact = gw.contact(db, org.id, "12125550100", name="v0", at=NOW)
    sends = [change - timedelta(minutes=20),  # 01:40 EDT
             change + timedelta(minutes=10),  # 01:10 EST: the wall clock 30 minutes behind the last send
             change + timedelta(minutes=50),  # 01:50 EST
             change + timedelta(minutes=90),  # 02:30 EST
             change + timedelta(hours=3)]     # 04:00 EST: the wall clock again
    stamps: dict[str, datetime] = {}
    with Warehouse(glific_warehouse_config, org) as warehouse:
        for n, sent_at in enumerate(sends):
            if n:
                gw.update(db, "contacts", contact, at=NOW + timedelta(seconds=n), name=f"v{n}")
            monkeypatch.setattr(stamping, "clock", lambda sent_at=sent_at: sent_at)
            assert sync_table(source, warehouse, org, CONTACTS).inserted + n > 0
            stamps.update({r["name"]: r["bq_inserted_at"] for r in warehouse_rows(warehouse, "contacts")
                           if r["id"] == contact})
            if n == 2:  # a full pass inside the repeated hour; the next one starts from it
                dedup_table(warehouse, "contacts", since=None, now=sent_at)
        incremental = dedup_table(warehouse, "contacts", since=sends[2], now=sends[-1])
        kept = [r["name"] for r in warehouse_rows(warehouse, "contacts") if r["id"] == contact]

    in_send_order = [stamps[f"v{n}"] for n in range(len(sends))]
    assert all(a < b for a, b in zip(in_send_order, in_send_order[1:])), in_send_order
    assert in_send_order[1] > datetime(2026, 11, 1, 1, 40)  # not the repeated wall clock, 01:10
    assert incremental.deleted == 2 and kept == ["v4"], kept
