"""Simulated live Glific traffic against a database built by :mod:`glific_bq.local.sample_data`.

Every write goes through :mod:`glific_bq.local.glific_writes` (stamped by the application's
clock, as Glific's Ecto writes are); Glific's triggers do the rest.

Inserts inbound and outbound messages, advances outbound statuses (enqueued → sent →
delivered → read, or error), edits contacts, and now and then adds contacts, flow runs,
contact history and tickets, for every organization in ``organizations``. Each step is one
short transaction, so a running sync sees a steady stream of inserts and
updates. If the database goes away, the simulator logs it, retries every second, and carries on.

Run ``python -m glific_bq.local.traffic --database-url URL --rate 5``; stop it with Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from glific_bq.local import glific_writes as gw

__all__ = ["main", "run"]

logger = logging.getLogger("glific_bq.traffic")

APPLICATION_NAME = "glific_bq.traffic"
"""``application_name`` of the simulator's connection, to tell it apart in ``pg_stat_activity``."""

_REFRESH_SECONDS = 30.0  # how often the list of organizations, contacts and flows is re-read
_RETRY_SECONDS = 1.0

_INBOUND = ("Hi", "नमस्ते 🙏", "Habari? 😀", "Olá, tudo bem?", "Yes", "Sim", "Ndiyo", "हाँ", 'He said "ok" \\ fine', "")
_OUTBOUND = ("Welcome! 😀", "कृपया अपनी उम्र बताएं", "Asante, umesajiliwa ✅", "Qual é a sua idade?", "Reply 1 or 2")
_NEXT_STATUS = {"enqueued": "sent", "sent": "delivered", "delivered": "read"}


@dataclass
class _Organization:
    id: int
    bot_contact_id: int
    contact_ids: list[int]
    flows: list[tuple[int, uuid.UUID]]
    group_ids: list[int] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)


@dataclass
class _World:
    """What the steps pick from; re-read periodically and after failures."""

    organizations: list[_Organization] = field(default_factory=list)
    loaded_at: float = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > _REFRESH_SECONDS

    def load(self, conn: psycopg.Connection) -> None:
        organizations = []
        with conn.transaction():
            rows = conn.execute(
                "SELECT o.id, COALESCE(o.contact_id, "
                "(SELECT min(c.id) FROM contacts c WHERE c.organization_id = o.id)) "
                "FROM organizations o ORDER BY o.id"
            ).fetchall()
            for org_id, bot_contact_id in rows:
                if bot_contact_id is None:
                    continue
                contact_ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM contacts WHERE organization_id = %s AND id <> %s "
                        "ORDER BY id DESC LIMIT 500",
                        (org_id, bot_contact_id),
                    )
                ]
                flows = conn.execute(
                    "SELECT id, uuid FROM flows WHERE organization_id = %s ORDER BY id", (org_id,)
                ).fetchall()
                groups, tags = (
                    [row[0] for row in conn.execute(f"SELECT id FROM {table} WHERE organization_id = %s", (org_id,))]
                    for table in ("groups", "tags")
                )
                organizations.append(_Organization(org_id, bot_contact_id, contact_ids, flows, groups, tags))
        self.organizations = organizations
        self.loaded_at = time.monotonic()


_Step = Callable[[psycopg.Connection, _Organization, random.Random], bool]


def run(
    conninfo: str,
    stop: threading.Event | None = None,
    rate_per_second: float = 5.0,
    seed: int | None = None,
) -> dict[str, int]:
    """Generate traffic until ``stop`` is set; return how many times each step ran.

    About ``rate_per_second`` steps run per second, each in its own transaction, on one
    organization picked at random. Connection failures are logged and retried every second
    (so the simulator outlives database restarts); other database errors skip the step and
    re-read the organizations. ``seed`` makes the sequence of choices reproducible.
    """
    if rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    stop = stop or threading.Event()
    rng = random.Random(seed)
    interval = 1.0 / rate_per_second
    steps, weights = zip(*_STEPS)
    counts: Counter[str] = Counter()
    world = _World()
    conn: psycopg.Connection | None = None
    unavailable = False
    next_step = time.monotonic()
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = _connect(conninfo)
                    world.loaded_at = float("-inf")
                    if unavailable:
                        logger.info("database is back")
                    unavailable = False
                if world.stale():
                    world.load(conn)
                if not world.organizations:
                    logger.warning("no organizations with contacts yet; waiting")
                    world.loaded_at = float("-inf")
                    stop.wait(_RETRY_SECONDS)
                    continue
                step = rng.choices(steps, weights)[0]
                with conn.transaction():
                    done = step(conn, rng.choice(world.organizations), rng)
                if done:
                    counts[step.__name__.lstrip("_")] += 1
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log = logger.debug if unavailable else logger.warning
                log("database unavailable, retrying in %.0f s: %s", _RETRY_SECONDS, exc)
                unavailable = True
                if conn is not None:
                    conn.close()
                    conn = None
                stop.wait(_RETRY_SECONDS)
                continue
            except psycopg.Error as exc:
                logger.warning("step failed, re-reading organizations: %s", exc)
                world.loaded_at = float("-inf")
            # Keep to the requested rate, but never burst more than one step to catch up.
            next_step = max(next_step + interval, time.monotonic() - interval)
            stop.wait(max(0.0, next_step - time.monotonic()))
    finally:
        if conn is not None:
            conn.close()
    logger.info("traffic stopped: %s", dict(counts))
    return dict(counts)


def _connect(conninfo: str) -> psycopg.Connection:
    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME)
    conn.execute("SET statement_timeout = '10s'")
    logger.info("connected to %s", conn.info.dbname)
    return conn


# ---------------------------------------------------------------------------------------------
# Steps: each runs inside a transaction and returns False when it had nothing to do. Rows are
# written through glific_writes, as Glific writes them; its triggers do the rest.
# ---------------------------------------------------------------------------------------------


def _insert_message(conn: psycopg.Connection, org: _Organization, rng: random.Random, inbound: bool) -> bool:
    if not org.contact_ids:
        return False
    gw.message(
        conn, org.id, rng.choice(org.contact_ids), org.bot_contact_id, inbound=inbound,
        uuid=uuid.UUID(int=rng.getrandbits(128), version=4), body=rng.choice(_INBOUND if inbound else _OUTBOUND),
        bsp_message_id=f"wamid.{rng.getrandbits(64):x}" if inbound else None,
        flow_id=rng.choice(org.flows)[0] if org.flows and rng.random() < 0.4 else None,
    )
    return True


def _inbound_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    return _insert_message(conn, org, rng, inbound=True)


def _outbound_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    return _insert_message(conn, org, rng, inbound=False)


def _advance_statuses(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    """Move the newest pending outbound messages one status further, as BSP callbacks do."""
    pending = conn.execute(
        "SELECT id, status::text FROM messages WHERE organization_id = %s AND flow = 'outbound' "
        "AND status IN ('enqueued', 'sent', 'delivered') ORDER BY id DESC LIMIT %s",
        (org.id, rng.randint(1, 10)),
    ).fetchall()
    now = gw.utc_now()
    for message_id, status in pending:
        new = _NEXT_STATUS[status]
        sent = {"bsp_message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "sent_at": now} if status == "enqueued" else {}
        gw.update(conn, "messages", message_id, status=new, bsp_status=new, **sent)
    return bool(pending)


def _newest(conn: psycopg.Connection, table: str, org: _Organization, where: str = "true", offset: int = 0):
    return conn.execute(
        f"SELECT id FROM {table} WHERE organization_id = %s AND {where} ORDER BY id DESC OFFSET %s LIMIT 1",
        (org.id, offset),
    ).fetchone()


def _fail_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    row = _newest(conn, "messages", org, "flow = 'outbound' AND status IN ('enqueued', 'sent')")
    if row:
        gw.update(conn, "messages", row[0], status="error", bsp_status="error",
                  errors={"message": "Message undeliverable 😞", "payload": {"code": rng.choice([1002, 1008, 470])}})
    return row is not None


def _merge_json(conn: psycopg.Connection, table: str, column: str, row_id: int, value: dict[str, Any]) -> None:
    """Read-modify-write of a jsonb map, as the application changes one."""
    (current,) = conn.execute(f"SELECT {column} FROM {table} WHERE id = %s FOR UPDATE", (row_id,)).fetchone()
    gw.update(conn, table, row_id, **{column: {**(current or {}), **value}})


def _update_contact(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    key, values = rng.choice((
        ("district", ("Pune", "पुणे", "Mombasa", "São Paulo")),
        ("age_group", ("11 to 18", "19 or above")),
        ("score", tuple(str(n) for n in range(11))),
    ))
    _merge_json(conn, "contacts", "fields", rng.choice(org.contact_ids), gw.contact_fields({key: rng.choice(values)}))
    return True


def _insert_contact(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    contact_id = gw.contact(
        conn, org.id, f"9{rng.randrange(10**10, 10**11)}", name=rng.choice(("Asha", "Juma", "João", "New contact 😀", None, "")),
        bsp_status="session_and_hsm", optin_time=gw.utc_now(), optin_status=True, optin_method="WA",
    )
    if org.group_ids:
        gw.add_to_group(conn, org.id, contact_id, rng.choice(org.group_ids))
    org.contact_ids.append(contact_id)
    return True


def _tag_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    """Tag a recent message, or untag it: either moves the message's updated_at (trigger)."""
    row = _newest(conn, "messages", org, "flow = 'inbound'", rng.randint(0, 20))
    if not row or not org.tag_ids:
        return False
    tag_id = rng.choice(org.tag_ids)
    if not gw.untag_message(conn, row[0], tag_id):
        gw.tag_message(conn, org.id, row[0], tag_id)
    return True


def _flow_run(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    """Record a contact's answers the way Glific does: a flow context and its flow result."""
    if not org.contact_ids or not org.flows:
        return False
    flow_id, flow_uuid = rng.choice(org.flows)
    run = {"flow_uuid": flow_uuid, "flow_id": flow_id, "contact_id": rng.choice(org.contact_ids), "organization_id": org.id,
           "results": {"age": {"input": str(rng.randint(8, 60)), "category": "Has Number"},
                       "district": {"input": rng.choice(("Pune", "पुणे", "Kisumu", "Belém")), "category": "All Responses"}}}
    context_id = gw.insert_one(conn, "flow_contexts", node_uuid=uuid.uuid4(), completed_at=gw.utc_now(), **run)
    gw.insert_one(conn, "flow_results", flow_version=rng.randint(1, 12), flow_context_id=context_id, **run)
    return True


def _update_flow_result(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    row = _newest(conn, "flow_results", org, offset=rng.randint(0, 20))
    if row:
        _merge_json(conn, "flow_results", "results", row[0],
                    {"feedback": {"input": rng.choice(("Muito bom 😀", "Nzuri", "अच्छा")), "category": "Other"}})
    return row is not None


def _contact_history(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    event_type, label = rng.choice((
        ("contact_flow_started", "Flow Started: Registration"),
        ("contact_fields_updated", "Updated contact field: district"),
        ("contact_language_updated", "Changed contact language to हिन्दी"),
    ))
    gw.insert_one(conn, "contact_histories", event_type=event_type, event_label=label, event_datetime=gw.utc_now(),
                  event_meta={"source": "traffic", "step": rng.randint(1, 9)}, contact_id=rng.choice(org.contact_ids),
                  organization_id=org.id)
    return True


def _ticket(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    gw.insert_one(conn, "tickets", body=rng.choice(_INBOUND), topic=rng.choice(("Certificate", "मदद", "Pagamento")),
                  status="open", contact_id=rng.choice(org.contact_ids), organization_id=org.id)
    return True


_STEPS: tuple[tuple[_Step, int], ...] = (
    (_inbound_message, 30),
    (_outbound_message, 30),
    (_advance_statuses, 20),
    (_update_contact, 8),
    (_fail_message, 1),
    (_insert_contact, 3),
    (_flow_run, 4),
    (_update_flow_result, 2),
    (_contact_history, 3),
    (_ticket, 1),
    (_tag_message, 2),
)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: run the simulator until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m glific_bq.local.traffic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="PostgreSQL connection string (default: $DATABASE_URL)")
    parser.add_argument("--rate", type=float, default=5.0, help="steps per second (default: 5)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible sequence")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or $DATABASE_URL is required")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    run(args.database_url, stop=stop, rate_per_second=args.rate, seed=args.seed)


if __name__ == "__main__":
    main()
