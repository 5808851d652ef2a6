"""Alert settings from the environment: every default in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

# -- configuration: every default in one place ------------------------------------------------------

WEBHOOK_URL_ENV = "GLIFIC_ALERT_WEBHOOK_URL"
STALL_MINUTES_ENV = "GLIFIC_ALERT_STALL_MINUTES"
FAILURES_ENV = "GLIFIC_ALERT_FAILURES"

#: A watermark that has not moved for this long while rows wait is stalled.
STALL_AFTER = timedelta(minutes=10)
#: This many consecutive failed syncs of one (organization, table) is an incident.
FAILURES_AFTER = 3


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    stall_after: timedelta = STALL_AFTER
    failures_after: int = FAILURES_AFTER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """Settings from ``GLIFIC_ALERT_*`` variables; unset or empty ones keep their defaults."""
        env = os.environ if environ is None else environ
        settings = cls(webhook_url=(env.get(WEBHOOK_URL_ENV) or "").strip() or None)
        if minutes := (env.get(STALL_MINUTES_ENV) or "").strip():
            settings = replace(settings, stall_after=timedelta(minutes=_positive(STALL_MINUTES_ENV, minutes, float)))
        if failures := (env.get(FAILURES_ENV) or "").strip():
            settings = replace(settings, failures_after=_positive(FAILURES_ENV, failures, int))
        return settings


def _positive(name: str, value: str, kind: type):
    try:
        number = kind(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return number
