"""Notification: the alert and recovery messages, and the Slack-compatible webhook that carries
them (its URL is a secret: never logged)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

from glific_bq.alerts.detection import FAILING, STALLED, _parse, _when, safe_error

# -- messages ----------------------------------------------------------------------------------------

_WHAT_TO_DO = {
    STALLED: (
        "Check Dagster (Runs) for failed or hung `sync_job` runs (a hung run holds this table's lock), "
        "and that the `sync_every_minute` schedule is running. To sync it now: "
        "`glific-bq sync --organization {org} --table {table}`."
    ),
    FAILING: (
        "Read the error and fix its cause (often the organization's BigQuery credentials, dataset "
        "permissions or timezone). Syncs are retried with backoff (up to hourly); to retry now: "
        "`glific-bq sync --organization {org} --table {table}`. The count resets at the next success."
    ),
}


def _who(incident: Mapping) -> str:
    name = incident.get("organization")
    org = f"organization {incident['organization_id']}" + (f" ({name})" if name else "")
    return f"{org}, table `{incident['table']}`"


def alert_text(incident: Mapping) -> str:
    """The alert of one incident: which organization and table, what, and what to do."""
    what = "has STALLED" if incident["kind"] == STALLED else "is FAILING"
    todo = _WHAT_TO_DO[incident["kind"]].format(org=incident["organization_id"], table=incident["table"])
    return f"[glific_bq] {_who(incident)} {what}: {incident['detail'].rstrip('.')}.\nWhat to do: {todo}"


def recovery_text(incident: Mapping) -> str:
    """The recovery message of one incident."""
    opened = _parse(incident["opened_at"])
    resolved = _parse(incident.get("resolved_at") or incident["opened_at"])
    started = opened
    if incident["kind"] == STALLED and incident.get("since"):  # a failing incident's is its last failure
        started = min(opened, _parse(incident["since"]))
    minutes = max(0, round((resolved - started).total_seconds() / 60))
    return (
        f"[glific_bq] RESOLVED: {_who(incident)} is syncing again (was {incident['kind']} since "
        f"{_when(started)}, alerted {_when(opened)}, cleared {_when(resolved)}: {minutes} min)."
    )


#: Incidents listed in one webhook message; the others are counted.
MAX_LISTED = 20


def webhook_text(alerts: Sequence[Mapping], recoveries: Sequence[Mapping]) -> str:
    """One message for everything to deliver, so that an outage of many tenants is one post."""
    lines = [alert_text(i) for i in alerts] + [recovery_text(i) for i in recoveries]
    if len(lines) > MAX_LISTED:
        lines = lines[:MAX_LISTED] + [
            f"… and {len(lines) - MAX_LISTED} more: see the observations of the bigquery/<table> assets in Dagster."
        ]
    return "\n\n".join(lines)


# -- the webhook -------------------------------------------------------------------------------------


class WebhookError(RuntimeError):
    """The alert webhook could not be reached or refused the message. Never shows the URL's path or
    query, which hold the webhook's secret."""


def post_webhook(url: str, text: str, *, timeout: float = 10) -> None:
    """POST ``{"text": text}`` (Slack's incoming-webhook format, also understood by Mattermost and
    others) to ``url``; raises ``WebhookError`` on any failure."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"the alert webhook URL must be http(s)://host/…, got scheme {parts.scheme!r}")
    body = json.dumps({"text": _slack_escape(text)}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        reply = safe_error(error.read(200).decode("utf-8", "replace"), 200) if error.fp else ""
        raise WebhookError(f"alert webhook at {host} answered HTTP {error.code}: {reply}") from None
    except urllib.error.URLError as error:
        raise WebhookError(f"alert webhook at {host} unreachable: {error.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # timeouts, resets, bad replies
        raise WebhookError(f"alert webhook at {host} failed: {type(error).__name__}: {error}") from None


def announce(log, text: str, environ: Mapping[str, str] | None = None) -> bool:
    """A one-off alert (not an incident of the sensor's): logged as an error, and posted to
    ``GLIFIC_ALERT_WEBHOOK_URL`` when set. Never raises; returns whether the webhook took it."""
    from glific_bq.alerts.settings import AlertSettings

    log.error(text)
    url = AlertSettings.from_env(environ).webhook_url
    if not url:
        return False
    try:
        post_webhook(url, text)
    except WebhookError as error:
        log.warning(f"could not deliver the alert: {error}")
        return False
    return True


def _slack_escape(text: str) -> str:
    """Slack reads ``<…>`` as links and mentions: an error text must not ping ``<!channel>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
