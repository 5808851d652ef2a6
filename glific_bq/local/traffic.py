"""Simulated live Glific traffic against a database built by :mod:`glific_bq.local.sample_data`.

Inserts inbound and outbound messages, advances outbound statuses (enqueued → sent →
delivered → read, or error), edits contacts, and now and then adds contacts, flow runs,
contact history and tickets, for every organization in ``organizations``. Each step is one
short transaction stamped with ``now() AT TIME ZONE 'UTC'`` (truncated to seconds for
``timestamp(0)`` columns, as Ecto does), so a running sync sees a steady stream of inserts and
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
from psycopg.types.json import Jsonb

__all__ = ["main", "run"]

logger = logging.getLogger("glific_bq.traffic")

APPLICATION_NAME = "glific_bq.traffic"
"""``application_name`` of the simulator's connection, to tell it apart in ``pg_stat_activity``."""

_NOW_USEC = "(now() AT TIME ZONE 'UTC')"
_NOW_SEC = "date_trunc('second', now() AT TIME ZONE 'UTC')"
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
                organizations.append(_Organization(org_id, bot_contact_id, contact_ids, flows))
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
# Steps: each runs inside a transaction and returns False when it had nothing to do.
# ---------------------------------------------------------------------------------------------


def _insert_message(conn: psycopg.Connection, org: _Organization, rng: random.Random, inbound: bool) -> bool:
    if not org.contact_ids:
        return False
    contact_id = rng.choice(org.contact_ids)
    row = conn.execute(
        f"UPDATE contacts SET last_message_number = last_message_number + 1, "
        f"last_message_at = {_NOW_SEC}, last_communication_at = {_NOW_SEC}, "
        f"is_org_read = NOT %s, updated_at = {_NOW_USEC} "
        f"WHERE id = %s AND organization_id = %s RETURNING last_message_number",
        (inbound, contact_id, org.id),
    ).fetchone()
    if row is None:
        return False
    flow_id = rng.choice(org.flows)[0] if org.flows and rng.random() < 0.4 else None
    conn.execute(
        f"INSERT INTO messages (uuid, body, type, flow, status, bsp_status, bsp_message_id, "
        f"message_number, sender_id, receiver_id, contact_id, flow_id, is_read, organization_id, "
        f"inserted_at, updated_at) "
        f"VALUES (%s, %s, 'text', %s, %s, %s, %s, %s, %s, %s, %s, %s, false, %s, {_NOW_SEC}, {_NOW_SEC})",
        (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            rng.choice(_INBOUND if inbound else _OUTBOUND),
            "inbound" if inbound else "outbound",
            "received" if inbound else "enqueued",
            "delivered" if inbound else "enqueued",
            f"wamid.{rng.getrandbits(64):x}" if inbound else None,
            row[0],
            contact_id if inbound else org.bot_contact_id,
            org.bot_contact_id if inbound else contact_id,
            contact_id,
            flow_id,
            org.id,
        ),
    )
    return True


def _inbound_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    return _insert_message(conn, org, rng, inbound=True)


def _outbound_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    return _insert_message(conn, org, rng, inbound=False)


def _advance_statuses(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    """Move the newest pending outbound messages one status further, as BSP callbacks do."""
    cases = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in _NEXT_STATUS.items())
    status = f"(CASE status::text {cases} END)::message_status_enum"
    cur = conn.execute(
        f"UPDATE messages SET status = {status}, bsp_status = {status}, "
        f"bsp_message_id = COALESCE(bsp_message_id, gen_random_uuid()::text), "
        f"sent_at = COALESCE(sent_at, {_NOW_SEC}), updated_at = {_NOW_SEC} "
        f"WHERE id IN (SELECT id FROM messages WHERE organization_id = %s AND flow = 'outbound' "
        f"AND status IN ('enqueued', 'sent', 'delivered') ORDER BY id DESC LIMIT %s)",
        (org.id, rng.randint(1, 10)),
    )
    return cur.rowcount > 0


def _fail_message(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    cur = conn.execute(
        f"UPDATE messages SET status = 'error', bsp_status = 'error', errors = %s, updated_at = {_NOW_SEC} "
        f"WHERE id = (SELECT id FROM messages WHERE organization_id = %s AND flow = 'outbound' "
        f"AND status IN ('enqueued', 'sent') ORDER BY id DESC LIMIT 1)",
        (Jsonb({"message": "Message undeliverable 😞", "payload": {"code": rng.choice([1002, 1008, 470])}}), org.id),
    )
    return cur.rowcount > 0


def _update_contact(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    key, label, values = rng.choice((
        ("district", "District", ("Pune", "पुणे", "Mombasa", "São Paulo")),
        ("age_group", "Age Group", ("11 to 18", "19 or above")),
        ("score", "Score", tuple(str(n) for n in range(11))),
    ))
    field_value = {key: {"type": "string", "label": label, "value": rng.choice(values), "inserted_at": None}}
    cur = conn.execute(
        f"UPDATE contacts SET fields = fields || %s, last_communication_at = {_NOW_SEC}, "
        f"updated_at = {_NOW_USEC} WHERE id = %s AND organization_id = %s",
        (Jsonb(field_value), rng.choice(org.contact_ids), org.id),
    )
    return cur.rowcount > 0


def _insert_contact(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    name = rng.choice(("Asha", "Juma", "João", "New contact 😀", None, ""))
    row = conn.execute(
        f"INSERT INTO contacts (name, phone, status, bsp_status, language_id, optin_time, optin_status, "
        f"optin_method, group_ids, fields, organization_id, inserted_at, updated_at) "
        f"VALUES (%s, %s, 'valid', 'session_and_hsm', %s, {_NOW_SEC}, true, 'WA', %s, '{{}}', %s, "
        f"{_NOW_USEC}, {_NOW_USEC}) ON CONFLICT (phone, organization_id) DO NOTHING RETURNING id",
        (name, f"9{rng.randrange(10**10, 10**11)}", rng.randint(1, 4), [rng.randint(1, 8)], org.id),
    ).fetchone()
    if row is None:
        return False
    org.contact_ids.append(row[0])
    return True


def _flow_run(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    """Record a contact's answers the way Glific does: a flow context and its flow result."""
    if not org.contact_ids or not org.flows:
        return False
    flow_id, flow_uuid = rng.choice(org.flows)
    contact_id = rng.choice(org.contact_ids)
    results = Jsonb({
        "age": {"input": str(rng.randint(8, 60)), "category": "Has Number"},
        "district": {"input": rng.choice(("Pune", "पुणे", "Kisumu", "Belém")), "category": "All Responses"},
    })
    context_id = conn.execute(
        f"INSERT INTO flow_contexts (node_uuid, flow_uuid, flow_id, contact_id, results, completed_at, "
        f"organization_id, inserted_at, updated_at) "
        f"VALUES (gen_random_uuid(), %s, %s, %s, %s, {_NOW_SEC}, %s, {_NOW_SEC}, {_NOW_SEC}) RETURNING id",
        (flow_uuid, flow_id, contact_id, results, org.id),
    ).fetchone()[0]
    conn.execute(
        f"INSERT INTO flow_results (results, flow_uuid, flow_version, flow_context_id, contact_id, flow_id, "
        f"organization_id, inserted_at, updated_at) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s, {_NOW_USEC}, {_NOW_USEC})",
        (results, flow_uuid, rng.randint(1, 12), context_id, contact_id, flow_id, org.id),
    )
    return True


def _update_flow_result(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    cur = conn.execute(
        f"UPDATE flow_results SET results = results || %s, updated_at = {_NOW_USEC} "
        f"WHERE id = (SELECT id FROM flow_results WHERE organization_id = %s ORDER BY id DESC OFFSET %s LIMIT 1)",
        (Jsonb({"feedback": {"input": rng.choice(("Muito bom 😀", "Nzuri", "अच्छा")), "category": "Other"}}),
         org.id, rng.randint(0, 20)),
    )
    return cur.rowcount > 0


def _contact_history(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    event_type, label = rng.choice((
        ("contact_flow_started", "Flow Started: Registration"),
        ("contact_fields_updated", "Updated contact field: district"),
        ("contact_language_updated", "Changed contact language to हिन्दी"),
    ))
    conn.execute(
        f"INSERT INTO contact_histories (event_type, event_label, event_meta, event_datetime, contact_id, "
        f"organization_id, inserted_at, updated_at) "
        f"VALUES (%s, %s, %s, {_NOW_SEC}, %s, %s, {_NOW_USEC}, {_NOW_USEC})",
        (
            event_type, label, Jsonb({"source": "traffic", "step": rng.randint(1, 9)}),
            rng.choice(org.contact_ids), org.id,
        ),
    )
    return True


def _ticket(conn: psycopg.Connection, org: _Organization, rng: random.Random) -> bool:
    if not org.contact_ids:
        return False
    conn.execute(
        f"INSERT INTO tickets (body, topic, status, contact_id, message_number, organization_id, "
        f"inserted_at, updated_at) VALUES (%s, %s, 'open', %s, %s, %s, {_NOW_SEC}, {_NOW_SEC})",
        (rng.choice(_INBOUND), rng.choice(("Certificate", "मदद", "Pagamento")), rng.choice(org.contact_ids),
         rng.randint(1, 50), org.id),
    )
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
