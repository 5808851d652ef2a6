"""Who is synced, and where: the tenant roster, decided at every tick from Glific's own database.

Glific keeps its control plane in its own tables: an NGO turns BigQuery on or off in Glific's
settings (its ``credentials`` row of the ``bigquery`` provider), an organization is suspended or
deleted in Glific. ``select_tenants`` reads all of it in two queries (the catalog, then every
organization with its credential) and applies the configured rule (``OrganizationRule``), the
operator's include and exclude lists (which only narrow the set), and the checks no
organization may fail: a usable key, a valid dataset name, and a dataset of its own. A change in
Glific takes effect at the next tick; nothing is cached between rosters.

Every organization is either a ``Tenant`` (synced, with its project and dataset) or not synced
with the reason, which the UI shows (``defs/sensors.py``). An organization whose key is unusable
is not synced, and the NGO is told (``glific_bq.notices``); no other organization is affected,
and there is never a fallback to another key or project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from glific_bq.tenants import Organization, list_organizations
from glific_bq.warehouse.config import OrganizationRule, WarehouseConfig, destination, key_for, project_for
from glific_bq.warehouse.errors import CredentialsError

# Why an organization is not synced (the start of each reason; ``NotSynced.reason`` says more).
INACTIVE = "organization inactive"
SUSPENDED = "suspended"
DELETED = "deleted"
NEVER_ENABLED = "BigQuery never enabled"
SWITCHED_OFF = "BigQuery credential switched off"
KEY_UNUSABLE = "key unusable"
NOT_INCLUDED = "not in GLIFIC_BQ_INCLUDE_ORGANIZATIONS"
EXCLUDED = "in GLIFIC_BQ_EXCLUDE_ORGANIZATIONS"
NO_DATASET = "no valid dataset name"
SHARED_DATASET = "dataset shared"


@dataclass(frozen=True)
class Tenant:
    """An organization that is synced, and where its rows go."""

    organization: Organization
    project: str
    dataset: str
    layout: str

    @property
    def id(self) -> int:
        return self.organization.id

    @property
    def destination(self) -> str:
        """Where this tenant's rows go, as watermarks are keyed: ``layout:project.dataset``."""
        return destination(self.layout, self.project, self.dataset)


@dataclass(frozen=True)
class NotSynced:
    """An organization that is not synced, and why (no key material, no other tenant's name)."""

    organization: Organization
    kind: str
    reason: str

    @property
    def id(self) -> int:
        return self.organization.id


@dataclass
class Roster:
    tenants: list[Tenant] = field(default_factory=list)
    not_synced: list[NotSynced] = field(default_factory=list)

    def tenant(self, organization_id: int) -> Tenant | None:
        return next((t for t in self.tenants if t.id == organization_id), None)

    def why_not(self, organization_id: int) -> NotSynced | None:
        return next((n for n in self.not_synced if n.id == organization_id), None)

    @property
    def destinations(self) -> dict[int, str]:
        """Organization id -> destination, for every tenant (what ``plan`` plans over)."""
        return {t.id: t.destination for t in self.tenants}

    @property
    def unusable_keys(self) -> list[NotSynced]:
        """Organizations that turned BigQuery on but whose key cannot be used: the NGO is told."""
        return [n for n in self.not_synced if n.kind == KEY_UNUSABLE]


def select_tenants(conn: psycopg.Connection, config: WarehouseConfig) -> Roster:
    """The roster now: every organization, synced (``Tenant``) or not (``NotSynced``, with the
    reason). Two queries, whatever the number of organizations; keys are decrypted in memory."""
    return roster_of(list_organizations(conn), config)


def roster_of(organizations: list[Organization], config: WarehouseConfig) -> Roster:
    roster = Roster()
    owners: dict[tuple[str, str], Tenant] = {}
    for organization in organizations:  # by id: of two sharing a dataset, the older one keeps it
        verdict = _verdict(organization, config)
        if isinstance(verdict, NotSynced):
            roster.not_synced.append(verdict)
            continue
        owner = owners.get((verdict.project, verdict.dataset))
        if owner is not None:
            roster.not_synced.append(NotSynced(organization, SHARED_DATASET, (
                f"{SHARED_DATASET}: dataset {verdict.dataset} of project {verdict.project} is already synced "
                f"for organization {owner.id} (their bots share a phone number); fix the phone or "
                "GLIFIC_BQ_DATASET_TEMPLATE")))
            continue
        owners[(verdict.project, verdict.dataset)] = verdict
        roster.tenants.append(verdict)
    return roster


def _verdict(organization: Organization, config: WarehouseConfig) -> Tenant | NotSynced:
    def no(kind: str, reason: str | None = None) -> NotSynced:
        return NotSynced(organization, kind, reason or kind)

    if not organization.is_active:
        return no(INACTIVE)
    if organization.is_suspended:
        return no(SUSPENDED)
    if organization.is_deleted:
        return no(DELETED)
    if config.included is not None and organization.id not in config.included:
        return no(NOT_INCLUDED)
    if organization.id in config.excluded:
        return no(EXCLUDED)
    if config.rule is OrganizationRule.GLIFIC:
        credential = organization.credential
        if credential is None:
            return no(NEVER_ENABLED, f"{NEVER_ENABLED} (no bigquery credential in Glific)")
        if not credential.is_active:
            return no(SWITCHED_OFF)
    try:
        key = key_for(config, organization)
    except CredentialsError as error:
        return no(KEY_UNUSABLE, f"{KEY_UNUSABLE}: {error}")
    try:
        dataset = config.dataset_for(organization)
    except ValueError as error:
        return no(NO_DATASET, f"{NO_DATASET}: {error}")
    return Tenant(organization, project_for(config, key), dataset, config.layout.value)
