"""Alerts when a tenant-table stops syncing (glific#3196, #4599: single tables silently stopped
syncing while everything else went on), once per incident.

Two kinds of problem per (organization, table):

- ``stalled``: the source holds rows beyond the watermark (``plan``'s notion of work to do) and
  the watermark has not moved for ``stall_after``;
- ``failing``: ``failures_after`` or more consecutive failed syncs (``glific_bq_watermarks.failures``).
  A failing pair is not also reported as stalled: the failure is the cause, and says why.

"Not moved" is ``glific_bq_watermarks.advanced_at``, or for a row never advanced its
``created_at`` (its creation, or the last move by Glific's own sync for a row taken over).
An old watermark alone is not a stall: a tenant idle for hours that just received a message has
one too, and is synced within the minute. So the wait is also counted from when the rows were
first seen waiting (``waiting_since``), which the sensor remembers between evaluations; without
that memory (a plain ``find_problems(conn, tables, tenants)``) only the watermark's age counts.

Incidents live in a JSON-serializable ``state`` (the sensor's cursor): ``diff`` turns each
evaluation's problems into new, resolved and still-open incidents, so that an incident gives one
alert when it opens and one recovery message when it clears, not one per evaluation. A message
that could not be delivered (webhook down) stays marked undelivered and is retried next time.

Plain Python: no Dagster here (see ``glific_bq.defs.alerting``).
"""

from glific_bq.alerts.detection import (
    FAILING,
    MAX_ERROR_CHARS,
    STALLED,
    PairStatus,
    Problem,
    Snapshot,
    find_problems,
    incident_key,
    problems_in,
    read_status,
    safe_error,
)
from glific_bq.alerts.incidents import diff
from glific_bq.alerts.notification import (
    MAX_LISTED,
    WebhookError,
    alert_text,
    announce,
    post_webhook,
    recovery_text,
    webhook_text,
)
from glific_bq.alerts.settings import (
    FAILURES_AFTER,
    FAILURES_ENV,
    STALL_AFTER,
    STALL_MINUTES_ENV,
    WEBHOOK_URL_ENV,
    AlertSettings,
)
from glific_bq.alerts.state import (
    MAX_UNDELIVERED_RECOVERIES,
    STATE_VERSION,
    Evaluation,
    dump_state,
    empty_state,
    evaluate,
    load_state,
    mark_delivered,
    undelivered,
)

__all__ = [
    "FAILING", "FAILURES_AFTER", "FAILURES_ENV", "MAX_ERROR_CHARS", "MAX_LISTED", "MAX_UNDELIVERED_RECOVERIES",
    "STALLED", "STALL_AFTER", "STALL_MINUTES_ENV", "STATE_VERSION", "WEBHOOK_URL_ENV", "AlertSettings",
    "Evaluation", "PairStatus", "Problem", "Snapshot", "WebhookError", "alert_text", "announce", "diff", "dump_state",
    "empty_state", "evaluate", "find_problems", "incident_key", "load_state", "mark_delivered", "post_webhook",
    "problems_in", "read_status", "recovery_text", "safe_error", "undelivered", "webhook_text",
]
