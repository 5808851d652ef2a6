"""How glific_bq connects to Glific's PostgreSQL: every wait has a deadline.

A connection that cannot be made gives up after ``CONNECT_TIMEOUT_SECONDS``; a server that stops
answering (a failover, a network partition) is noticed by TCP keepalives and ``tcp_user_timeout``
within about a minute; a statement runs at most ``CONTROL_STATEMENT_SECONDS`` (catalog,
watermarks, planning: all small) or ``EXTRACT_STATEMENT_SECONDS`` (an extract streams a page of a
backfill). A run that gives up closes its connections, which releases its advisory locks, so the
next tick is not skipped for ever behind a hung one.
"""

from __future__ import annotations

import psycopg
from psycopg import conninfo

CONNECT_TIMEOUT_SECONDS = 10
CONTROL_STATEMENT_SECONDS = 120
EXTRACT_STATEMENT_SECONDS = 1800
#: Probe an idle connection after 30 s, every 10 s, give up after 3 unanswered probes; give up on
#: data left unacknowledged for 60 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
              "tcp_user_timeout": 60_000}


def with_deadlines(url: str, statement_seconds: float = CONTROL_STATEMENT_SECONDS, **settings: object) -> str:
    """``url`` (a libpq URI or key=value string) with the connect timeout, the keepalives and a
    ``statement_timeout``; options the URL already sets are kept (its own timeouts win)."""
    given = conninfo.conninfo_to_dict(url)
    options = f"-c statement_timeout={int(statement_seconds * 1000)}"
    if given.get("options"):
        options = f"{options} {given['options']}"
    defaults = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVES}
    return conninfo.make_conninfo("", **{**defaults, **given, "options": options, **settings})


def connect(url: str, application_name: str, statement_seconds: float = CONTROL_STATEMENT_SECONDS) -> psycopg.Connection:
    """An autocommit psycopg connection with the deadlines above."""
    return psycopg.connect(with_deadlines(url, statement_seconds), autocommit=True, application_name=application_name)
