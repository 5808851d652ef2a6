"""Tenants: the rows of Glific's ``organizations`` table."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import class_row


class InvalidTimezone(ValueError):
    """An organization whose timezone is missing or unknown: its timestamps cannot be converted."""


@dataclass(frozen=True)
class Organization:
    id: int
    shortcode: str | None
    timezone: str | None
    is_active: bool
    #: The bot's phone number (the phone of ``organizations.contact_id``), which names the
    #: organization's dataset in Glific's layout.
    phone: str | None = None

    @property
    def partition_key(self) -> str:
        """The Dagster partition key of this tenant: its id as a decimal string."""
        return str(self.id)

    def checked_timezone(self) -> str:
        """The IANA timezone of this organization, or a clear error naming it.

        There is no silent default: converting timestamps to a guessed zone would put wrong
        local times in every dashboard of that organization.
        """
        if not self.timezone:
            raise InvalidTimezone(f"organization {self.id} has no timezone")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidTimezone(f"organization {self.id} has an unknown timezone {self.timezone!r}") from None
        return self.timezone


_SELECT = (
    "SELECT o.id, o.shortcode, o.timezone, COALESCE(o.is_active, true) AS is_active, "
    "(SELECT c.phone FROM contacts c WHERE c.id = o.contact_id) AS phone FROM organizations o"
)


def list_organizations(conn: psycopg.Connection) -> list[Organization]:
    """All organizations, active or not, by id."""
    with conn.cursor(row_factory=class_row(Organization)) as cur:
        cur.execute(_SELECT + " ORDER BY o.id")
        return cur.fetchall()


def get_organization(conn: psycopg.Connection, organization_id: int) -> Organization:
    with conn.cursor(row_factory=class_row(Organization)) as cur:
        cur.execute(_SELECT + " WHERE o.id = %s", (organization_id,))
        organization = cur.fetchone()
    if organization is None:
        raise LookupError(f"organization {organization_id} does not exist")
    return organization
