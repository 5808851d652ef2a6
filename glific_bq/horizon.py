"""How far a sync's cursor may go: the horizon, and whether the database lets us see it whole.

Rows become visible when their transaction commits but carry the ``updated_at`` (and id) of when
they were written; a cursor that passed them would skip them for good. ``horizon`` is the one
place that says how far it is safe to go; ``late_commit_warning`` says when the database role
cannot see other roles' transactions, so that the protection is off.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

#: Default margin behind the database clock that the update cursor never passes (see ``horizon``).
HORIZON_SECONDS = 5.0

_HORIZON_QUERY = """
SELECT least(
    clock_timestamp(),
    (SELECT min(xact_start) FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid())
) AT TIME ZONE 'UTC' - make_interval(secs => '{margin}'::float8)
"""


def horizon(reader, margin_seconds: float) -> datetime:
    """How far the update cursor may go in this snapshot: the database clock, or the start of
    the oldest transaction still writing if that is earlier, minus a margin (UTC).

    Read before the round's snapshot is taken, in a transaction of its own: a writer that
    commits after ``pg_stat_activity`` was read is then visible to the snapshot. (Read inside the
    snapshot, a long transaction committing between the snapshot and that read would be neither
    visible nor holding the horizon back, and its changes would be skipped for good.) Only
    transactions that have written count: one that reads for longer than the margin and then
    writes rows stamped with its own start time (raw SQL ``now()``; Ecto stamps with the
    application clock just before writing) is not covered. Rows become visible when their transaction
    commits, but carry the ``updated_at`` (and id) of when they were written: a change stamped in
    the current second (Glific's ``timestamp(0)``), by a writer whose clock runs a little ahead,
    or by a transaction still open could otherwise get a key below a cursor that has already
    moved on, and be skipped for good. Such changes wait for a later sync instead. A
    transaction left open for hours holds the cursor back (inserts still flow; their rows are
    sent again once it moves, and dedup keeps one), and rows stamped in the future wait for
    their time without dragging the cursor past rows written later.

    Seeing other sessions' transactions needs the ``pg_read_all_stats`` role (or superuser);
    without it only the clock and the margin protect.
    """
    with reader.cursor() as cur:
        cur.execute(_HORIZON_QUERY.format(margin=repr(float(margin_seconds))))  # no parameters: fewer round trips
        (value,) = cur.fetchone()
    return value


_SEES_ALL_TRANSACTIONS = """
SELECT current_user, rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
FROM pg_roles WHERE rolname = current_user
"""


def late_commit_warning(conn: psycopg.Connection, margin_seconds: float = HORIZON_SECONDS) -> str | None:
    """What to say when the ``horizon`` cannot see other roles' open transactions (the database
    role is neither superuser nor a member of ``pg_read_all_stats``), or None when it can. Then a
    transaction of Glific's open longer than the margin can commit rows the cursor has passed."""
    row = conn.execute(_SEES_ALL_TRANSACTIONS).fetchone()
    if row is None or row[1]:
        return None
    return (f"late-commit protection is OFF: the database role {row[0]} cannot see other roles' open "
            "transactions (it is not a member of pg_read_all_stats), so a Glific transaction open for more "
            f"than {margin_seconds:g} s can commit rows the sync has already passed, and they are never sent. "
            f"Fix: GRANT pg_read_all_stats TO {row[0]}")
