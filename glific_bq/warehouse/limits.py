"""Staying inside BigQuery's limits by construction: calls are spread by per-method limiters
instead of bursting at the top of the minute.

The limits that apply (https://cloud.google.com/bigquery/quotas), and what keeps us inside:

- API requests: 100 per second per user per method (``tables.get``, ``tables.insert``,
  ``datasets.insert``…). Each process paces its own metadata calls to ``API_CALLS_PER_SECOND``
  per method (``GLIFIC_BQ_API_CALLS_PER_SECOND``, default 40): two shards stay under the limit;
  with more shards, lower it to 80 / shards.
- Table metadata updates: 5 per 10 seconds per table. Only a schema change updates a table
  (``tables.ensure_table`` adds columns); each table is verified at most once per
  ``TABLE_UPDATE_SPACING`` seconds in a process.
- Storage Write API: concurrent connections per project and region (1,000 regionally, 10,000 in
  the US and EU multi-regions). We append to the ``_default`` stream (no CreateWriteStream
  calls at all), one append at a time per worker: connections = workers × shards, 8 by default.

Jitter: a limiter hands out its slots with a small random offset, so processes started by the
same tick do not line their calls up.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict

#: Environment variable of the per-process, per-method API call rate.
API_RATE_ENV = "GLIFIC_BQ_API_CALLS_PER_SECOND"
#: BigQuery allows 100 API requests per second per user and method; one process takes 40.
API_CALLS_PER_SECOND = 40.0
#: BigQuery allows 5 metadata updates per 10 s per table; verifying a table (which may update
#: it once) is spaced by this many seconds.
TABLE_UPDATE_SPACING = 2.0


class RateLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced (a slot schedule, thread-safe).
    Callers sleep outside the lock until their slot, plus up to ``jitter`` of one interval."""

    def __init__(self, rate: float, jitter: float = 0.1, *, clock=time.monotonic, sleep=time.sleep) -> None:
        if not rate > 0:
            raise ValueError(f"a rate limit must be positive, got {rate!r}")
        self.interval = 1.0 / rate
        self.jitter = jitter
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep  # injectable: tests run on a clock of their own

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now + (random.random() * self.jitter * self.interval if slot > now else 0.0)
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)


def _api_rate() -> float:
    value = os.environ.get(API_RATE_ENV)
    if not value:
        return API_CALLS_PER_SECOND
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{API_RATE_ENV} must be a number of calls per second, got {value!r}") from None


_lock = threading.Lock()
_api: dict[str, RateLimiter] = {}
_table_updates: dict[str, RateLimiter] = defaultdict(lambda: RateLimiter(1 / TABLE_UPDATE_SPACING, jitter=0.0))


def api_call(method: str) -> float:
    """Wait for a slot of ``method`` (e.g. ``tables.get``) in this process's budget."""
    with _lock:
        limiter = _api.get(method)
        if limiter is None:
            limiter = _api[method] = RateLimiter(_api_rate())
    return limiter.acquire()


def table_update(table_id: str) -> float:
    """Wait until ``table_id`` may have its metadata updated again (5 per 10 s per table)."""
    with _lock:
        limiter = _table_updates[table_id]
    return limiter.acquire()
