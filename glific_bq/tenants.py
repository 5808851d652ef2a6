"""Tenants: the rows of Glific's ``organizations`` table, with what Glific's control plane says
of each (suspended, soft-deleted, its BigQuery credential). Who is synced is decided from these
in ``glific_bq.roster``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import sql


class InvalidTimezone(ValueError):
    """An organization whose timezone is missing or unknown: its timestamps cannot be converted."""


@dataclass(frozen=True)
class Credential:
    """An organization's row of Glific's ``credentials`` for the ``bigquery`` provider.

    ``secrets`` is Cloak's encrypted map (``glific_bq.cloak``), holding the service-account key;
    it is never shown (``repr``) and never decrypted here. ``updated_at`` is the credential's
    version: a key saved again in Glific moves it, and cached clients follow (``warehouse.clients``).
    """

    id: int
    is_active: bool
    updated_at: datetime | None
    secrets: bytes | None = field(default=None, repr=False)
    keys: dict | None = field(default=None, repr=False)

    @property
    def version(self) -> tuple[int, datetime | None]:
        return self.id, self.updated_at


@dataclass(frozen=True)
class Organization:
    id: int
    shortcode: str | None
    timezone: str | None
    is_active: bool
    #: The bot's phone number (the phone of ``organizations.contact_id``), which names the
    #: organization's dataset in Glific's layout.
    phone: str | None = None
    name: str | None = None
    is_suspended: bool = False
    #: Soft-deleted (``organizations.deleted_at`` set; databases before 2026 lack the column).
    is_deleted: bool = False
    #: Its BigQuery credential in Glific, if it ever saved one.
    credential: Credential | None = field(default=None, repr=False, compare=False, hash=False)

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


# What this database has: Glific's credentials table and providers (a database that is not a
# whole Glific has neither), and organizations.deleted_at (added by a 2026 migration).
_CATALOG = """
SELECT to_regclass('public.credentials') IS NOT NULL AND to_regclass('global.providers') IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'organizations'::regclass
               AND attname = 'deleted_at' AND NOT attisdropped),
       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'organizations'::regclass
               AND attname = 'is_suspended' AND NOT attisdropped),
       EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'organizations'::regclass
               AND attname = 'name' AND NOT attisdropped)
"""

_SELECT = """
SELECT o.id, o.shortcode, o.timezone, COALESCE(o.is_active, true),
       (SELECT c.phone FROM contacts c WHERE c.id = o.contact_id),
       {name}, {suspended}, {deleted},
       {credential}
FROM organizations o
{join}
"""

_CREDENTIAL = "cr.id, COALESCE(cr.is_active, false), cr.updated_at, cr.secrets, cr.keys"
_JOIN = """LEFT JOIN credentials cr ON cr.organization_id = o.id
    AND cr.provider_id = (SELECT p.id FROM global.providers p WHERE p.shortcode = 'bigquery')"""


def _query(conn: psycopg.Connection, where: sql.Composable, params: tuple) -> list[Organization]:
    has_credentials, has_deleted_at, has_suspended, has_name = conn.execute(_CATALOG).fetchone()
    query = sql.SQL(_SELECT).format(
        name=sql.SQL("o.name" if has_name else "NULL"),
        suspended=sql.SQL("COALESCE(o.is_suspended, false)" if has_suspended else "false"),
        deleted=sql.SQL("o.deleted_at IS NOT NULL" if has_deleted_at else "false"),
        credential=sql.SQL(_CREDENTIAL if has_credentials else "NULL, NULL, NULL, NULL, NULL"),
        join=sql.SQL(_JOIN if has_credentials else ""),
    ) + where
    organizations = []
    for (id_, shortcode, timezone, active, phone, name, suspended, deleted,
         credential_id, credential_active, updated_at, secrets, keys) in conn.execute(query, params):
        credential = None if credential_id is None else Credential(
            credential_id, credential_active, updated_at, None if secrets is None else bytes(secrets), keys)
        organizations.append(Organization(id_, shortcode, timezone, active, phone, name, suspended, deleted, credential))
    return organizations


def list_organizations(conn: psycopg.Connection) -> list[Organization]:
    """All organizations, synced or not, by id (two queries: the catalog, then the rows)."""
    return _query(conn, sql.SQL(" ORDER BY o.id"), ())


def get_organization(conn: psycopg.Connection, organization_id: int) -> Organization:
    found = _query(conn, sql.SQL(" WHERE o.id = %s"), (organization_id,))
    if not found:
        raise LookupError(f"organization {organization_id} does not exist")
    return found[0]
