"""The send columns every row version carries: ``bq_uuid`` (a new UUID per send) and
``bq_inserted_at`` (when it was sent).

``bq_inserted_at`` is what consumers order versions by and what incremental dbt models use as
their cursor (``WHERE bq_inserted_at > <last max>``), so every re-send of a row must carry a
larger value than the send before it:

- raw layout: a UTC ``TIMESTAMP``: increasing by nature;
- Glific layout: a ``DATETIME`` in the organization's local time, as Glific writes it. Local
  wall-clock time repeats an hour when daylight saving time ends; a row re-sent in that hour
  would get a *smaller* value than the send an hour before, and an incremental reader would skip
  it. So for twice the length of the repeated hour after the clocks go back, the local send time
  runs at half speed from the old offset down to the new one (``local_send_time``): strictly
  increasing, continuous, and never more than that hour away from the wall clock. (The same idea
  as a leap-second smear.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from glific_bq.layouts import Stamp
from glific_bq.schema import BQ_INSERTED_AT, BQ_UUID

#: How far back a clock change is looked for (the longest fall-back, 1 h, smeared over 2 h).
_WINDOW = timedelta(hours=2)


def utc_now() -> datetime:
    """The current time, UTC, aware."""
    return datetime.now(timezone.utc)


#: The send clock ``stamp`` reads when not given ``now``: tests replace it to send at a chosen
#: moment (across a daylight-saving change) without waiting for it.
clock: Callable[[], datetime] = utc_now


def stamp(rows: pa.Table, style: Stamp, timezone_name: str | None = None, now: datetime | None = None) -> pa.Table:
    """``rows`` with ``bq_uuid`` and ``bq_inserted_at`` appended as ``style`` says (unchanged
    for ``Stamp.NONE``). ``now``: the send time (UTC, aware), for tests."""
    if style is Stamp.NONE:
        return rows
    now = now or clock()
    n = rows.num_rows
    if style is Stamp.LOCAL:
        if not timezone_name:
            raise ValueError("a local send time needs the organization's timezone")
        sent = pa.array(np.full(n, np.datetime64(local_send_time(now, timezone_name), "us")), pa.timestamp("us"))
    else:
        sent = pa.array(np.full(n, np.datetime64(now.astimezone(timezone.utc).replace(tzinfo=None), "us")),
                        pa.timestamp("us", tz="UTC"))
    return rows.append_column(BQ_UUID, random_uuids(n)).append_column(BQ_INSERTED_AT, sent)


def local_send_time(now: datetime, timezone_name: str) -> datetime:
    """The organization-local send time of ``now`` (aware): the wall clock, except just after the
    clocks go back, where it is smeared so that it never decreases (see the module docstring)."""
    zone = ZoneInfo(timezone_name)
    now = now.astimezone(timezone.utc)
    offset_now = now.astimezone(zone).utcoffset()
    earlier = now - _WINDOW
    offset_before = earlier.astimezone(zone).utcoffset()
    wall = (now + offset_now).replace(tzinfo=None)
    if offset_before <= offset_now:
        return wall
    # The clocks went back in between: find when, exactly. Clock changes fall on whole seconds,
    # so the search runs over whole seconds and finds the same instant whatever ``now`` is (a
    # change found "to within a second" moves with ``now`` and made the smear go back by up to
    # half a second).
    low, high = math.floor(earlier.timestamp()), math.ceil(now.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    change = datetime.fromtimestamp(high, timezone.utc)
    shift = offset_before - offset_now
    elapsed = now - change
    if elapsed >= 2 * shift:
        return wall
    return (now + offset_before - elapsed / 2).replace(tzinfo=None)


def random_uuids(n: int) -> pa.Array:
    """``n`` random version-4 UUIDs as text, built vectorized."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    hexed = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw.tobytes().hex().encode())])
    parts = [pc.binary_slice(hexed, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return pc.cast(pc.binary_join_element_wise(*parts, pa.scalar(b"-")), pa.string())
