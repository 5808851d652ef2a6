"""How to reach BigQuery: the configuration (``WarehouseConfig``, from the environment) and each
organization's credentials."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from glific_bq import identifiers
from glific_bq.cloak import DecryptionError, Vault
from glific_bq.layouts import LAYOUT_ENV, Layout
from glific_bq.tenants import Organization
from glific_bq.warehouse.errors import CredentialsError
from glific_bq.warehouse.queries import DEADLINE_SECONDS, CallPolicy


class Versions(str, Enum):
    """What becomes of the row versions the sync sends (``GLIFIC_BQ_VERSIONS``).

    ``in_place`` (default; what takes over a Glific dataset): versions are appended to ``<table>``
    and the 90-minute dedup deletes all but the newest of each id (``glific_bq.dedup``).
    ``history`` (recommended for new datasets): every version is appended to ``<table>_history``
    and never deleted; ``<table>`` is a clean table, one row per id, refreshed by a MERGE of the
    changed ids only (``glific_bq.clean``).
    """

    IN_PLACE = "in_place"
    HISTORY = "history"


class WriteMethod(str, Enum):
    STORAGE_WRITE = "storage_write"
    STORAGE_WRITE_ARROW = "storage_write_arrow"
    LOAD_PARQUET = "load_parquet"


#: WarehouseConfig field -> the environment variable that sets it.
ENVIRONMENT = {
    "project": "GLIFIC_BQ_PROJECT",  # required: the project of the datasets
    "location": "GLIFIC_BQ_LOCATION",  # dataset location, e.g. US, EU, asia-south1
    "layout": "GLIFIC_BQ_LAYOUT",  # glific (default: Glific's own tables) | raw (exact copies)
    "dataset_template": "GLIFIC_BQ_DATASET_TEMPLATE",  # default {phone} (glific) / glific_{organization_id} (raw)
    "write_method": "GLIFIC_BQ_WRITE_METHOD",  # storage_write | storage_write_arrow | load_parquet
    "versions": "GLIFIC_BQ_VERSIONS",  # in_place (default: dedup deletes older versions) | history (kept; clean tables)
    "gcp_credentials": "GLIFIC_BQ_CREDENTIALS",  # base64 service-account JSON (dagster-gcp's convention)
    "credentials_dir": "GLIFIC_BQ_CREDENTIALS_DIR",  # per-organization <organization_id>.json keys
    "emulator_host": "BIGQUERY_EMULATOR_HOST",  # local emulator REST URL, with http://
    "storage_emulator_host": "BIGQUERY_STORAGE_EMULATOR_HOST",  # local emulator gRPC host:port
    "organizations": "GLIFIC_BQ_ORGANIZATIONS",  # glific (default: Glific's own rule and keys) | active
    "include_organizations": "GLIFIC_BQ_INCLUDE_ORGANIZATIONS",  # only these ids (comma-separated)
    "exclude_organizations": "GLIFIC_BQ_EXCLUDE_ORGANIZATIONS",  # never these ids (comma-separated)
    "locations": "GLIFIC_BQ_LOCATIONS",  # per-organization dataset locations: 12=asia-south1,15=africa-south1
    "cipher_key": "CIPHER_KEY",  # Glific's own: decrypts credentials tagged AES.GCM.V3
    "old_cipher_key": "OLD_CIPHER_KEY",  # Glific's own: decrypts credentials tagged AES.GCM.V2
}

#: Fields that hold secrets: never shown (``repr``), only read from the environment.
SECRET_FIELDS = ("gcp_credentials", "cipher_key", "old_cipher_key")


class OrganizationRule(str, Enum):
    """Who is synced (``GLIFIC_BQ_ORGANIZATIONS``), and where each organization's key comes from.

    ``glific``: exactly the organizations Glific itself would sync (an active credential of the
    ``bigquery`` provider, the organization active, not suspended, not soft-deleted), each with
    the service-account key it saved in Glific, decrypted with Glific's ``CIPHER_KEY`` /
    ``OLD_CIPHER_KEY``, into that key's project. Never any other key or project.

    ``active``: every active, unsuspended, undeleted organization, **bypassing the consent each
    NGO gives in Glific's settings**, with keys configured outside Glific
    (``GLIFIC_BQ_CREDENTIALS_DIR``, ``GLIFIC_BQ_CREDENTIALS``, Application Default Credentials, or
    none with the emulator) into ``GLIFIC_BQ_PROJECT`` or each key's project. Explicit only.
    """

    GLIFIC = "glific"
    ACTIVE = "active"


@dataclass(frozen=True)
class WarehouseConfig:
    """How to reach BigQuery; ``ENVIRONMENT`` names the variable behind each field (all but
    ``deadline_seconds``, a knob for tests and tuning).

    ``layout``: what the tables hold (``glific_bq.layouts``): ``glific`` (Glific's own layout,
    the default) or ``raw``. ``dataset_template`` is formatted with ``organization_id``,
    ``shortcode`` and ``phone`` (the bot's number, which names Glific's datasets); empty means the
    layout's default: ``{phone}`` for ``glific`` (Glific's own datasets, taken over as they are),
    ``glific_{organization_id}`` for ``raw``.

    ``organizations`` is the rule of who is synced and with which key (``OrganizationRule``);
    ``project`` is needed only under the ``active`` rule (under ``glific``, each organization's
    project is its own key's). Secrets (``SECRET_FIELDS``) never show in ``repr``.
    """

    project: str = ""
    location: str | None = None
    dataset_template: str = ""
    write_method: str = WriteMethod.STORAGE_WRITE.value
    gcp_credentials: str | None = field(default=None, repr=False)
    credentials_dir: str | None = None
    emulator_host: str | None = None
    storage_emulator_host: str | None = None
    #: Seconds any BigQuery query, DML or API call may take, retries included (``CallPolicy``).
    deadline_seconds: float = DEADLINE_SECONDS
    layout: Layout = field(default_factory=Layout.from_env)  # GLIFIC_BQ_LAYOUT, like registry.TABLES
    organizations: str = OrganizationRule.GLIFIC.value
    include_organizations: str = ""
    exclude_organizations: str = ""
    locations: str = ""
    cipher_key: str | None = field(default=None, repr=False)
    old_cipher_key: str | None = field(default=None, repr=False)
    #: ``Versions``: versions deduplicated in place, or kept in ``<table>_history`` with clean tables.
    versions: Versions = Versions.IN_PLACE

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "versions", Versions(getattr(self.versions, "value", self.versions) or "in_place"))
        except ValueError:
            raise ValueError(f"{ENVIRONMENT['versions']} must be in_place or history, got {self.versions!r}") from None
        object.__setattr__(self, "layout", Layout.from_env({LAYOUT_ENV: str(getattr(self.layout, "value", self.layout))}))
        if not self.dataset_template:
            default = "{phone}" if self.layout is Layout.GLIFIC else "glific_{organization_id}"
            object.__setattr__(self, "dataset_template", default)
        try:
            rule = OrganizationRule(self.organizations or OrganizationRule.GLIFIC.value)
        except ValueError:
            raise ValueError(f"{ENVIRONMENT['organizations']} must be glific or active, got {self.organizations!r}") from None
        object.__setattr__(self, "organizations", rule.value)
        if rule is OrganizationRule.ACTIVE and not self.project:
            raise ValueError(f"{ENVIRONMENT['project']} is not set: the BigQuery project to write to "
                             f"({ENVIRONMENT['organizations']}=active)")
        WriteMethod(self.write_method)  # a clear error for an unknown method
        CallPolicy(self.deadline_seconds)  # a clear error for a deadline that is not positive
        _ids(self.include_organizations, "include_organizations")  # clear errors for malformed lists, now
        _ids(self.exclude_organizations, "exclude_organizations")
        _locations(self.locations)

    @property
    def rule(self) -> OrganizationRule:
        return OrganizationRule(self.organizations)

    @property
    def included(self) -> frozenset[int] | None:
        """``GLIFIC_BQ_INCLUDE_ORGANIZATIONS``: only these organizations (None: no such limit)."""
        return _ids(self.include_organizations, "include_organizations") if self.include_organizations.strip() else None

    @property
    def excluded(self) -> frozenset[int]:
        """``GLIFIC_BQ_EXCLUDE_ORGANIZATIONS``: never these organizations."""
        return _ids(self.exclude_organizations, "exclude_organizations")

    def location_for(self, organization_id: int) -> str | None:
        """Where a new dataset of this organization is created: its entry in
        ``GLIFIC_BQ_LOCATIONS`` (data residency, glific#5356), else ``GLIFIC_BQ_LOCATION``, else
        BigQuery's default (US, as Glific creates them). An existing dataset is never moved."""
        return _locations(self.locations).get(organization_id, self.location)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WarehouseConfig:
        env = os.environ if environ is None else environ
        return cls(**{"project": "", **{field: env[var] for field, var in ENVIRONMENT.items() if env.get(var)}})

    def dataset_for(self, organization: Organization) -> str:
        """The dataset id of one organization, validated so that no value can inject SQL."""
        try:
            dataset = self.dataset_template.format(
                organization_id=organization.id, shortcode=organization.shortcode or "", phone=organization.phone or ""
            )
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"GLIFIC_BQ_DATASET_TEMPLATE {self.dataset_template!r}: unknown placeholder {error}; "
                "use {organization_id}, {shortcode} or {phone}"
            ) from None
        if not identifiers.is_dataset(dataset):
            raise ValueError(
                f"dataset name {dataset!r} for organization {organization.id} is not a valid BigQuery "
                "dataset id (letters, digits, underscores); check GLIFIC_BQ_DATASET_TEMPLATE"
            )
        return dataset


def _ids(text: str, name: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ValueError(f"{ENVIRONMENT[name]} must be organization ids separated by commas, got {text!r}") from None


def _locations(text: str) -> dict[int, str]:
    locations = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        organization_id, _, location = part.partition("=")
        if not organization_id.isdigit() or not location:
            raise ValueError(f"{ENVIRONMENT['locations']} must look like 12=asia-south1,15=africa-south1, got {text!r}")
        locations[int(organization_id)] = location
    return locations


def destination(layout: Layout, project: str, dataset: str) -> str:
    """Where a tenant's rows go, as its watermarks are keyed (``glific_bq.watermarks``):
    ``layout:project.dataset``. Rows sent to one destination say nothing about another: a new
    dataset (a bot's phone changed), another project or layout starts from the beginning."""
    return f"{Layout(layout).value}:{project}.{dataset}"


def key_for(config: WarehouseConfig, organization: Organization) -> dict | None:
    """The service-account key (as a dict) one organization is synced with, checked; None only
    under the ``active`` rule with no key configured (Application Default Credentials, or
    anonymous with the emulator).

    ``glific`` rule: the key the organization saved in Glific (``credentials.secrets``), decrypted
    with Glific's ciphers; a missing, switched-off, undecryptable or malformed key raises
    ``CredentialsError`` naming what to fix. There is no fallback to any other key.
    ``active`` rule: ``GLIFIC_BQ_CREDENTIALS_DIR/<organization_id>.json``, then the base64
    ``GLIFIC_BQ_CREDENTIALS``.
    """
    if config.rule is OrganizationRule.GLIFIC:
        return _glific_key(config, organization)
    if config.credentials_dir:
        path = Path(config.credentials_dir) / f"{organization.id}.json"
        if path.exists():
            return _read_service_account(path.read_text(), path.name, organization)
    if config.gcp_credentials:
        text = base64.b64decode(config.gcp_credentials).decode()
        return _read_service_account(text, ENVIRONMENT["gcp_credentials"], organization)
    return None


def _glific_key(config: WarehouseConfig, organization: Organization) -> dict:
    credential = organization.credential
    if credential is None or not credential.secrets:
        raise CredentialsError(f"organization {organization.id} has no BigQuery credential in Glific")
    if not credential.is_active:
        raise CredentialsError(f"organization {organization.id}: its BigQuery credential is switched off in Glific")
    try:
        vault = Vault.from_env({ENVIRONMENT["cipher_key"]: config.cipher_key or "",
                                ENVIRONMENT["old_cipher_key"]: config.old_cipher_key or ""})
        secrets = vault.decrypt_map(credential.secrets)
    except DecryptionError as error:
        raise CredentialsError(f"organization {organization.id}: its BigQuery credential {error}") from None
    key = secrets.get("service_account")
    if isinstance(key, dict):  # a map rather than Glific's JSON string: the same key
        key = json.dumps(key)
    if not isinstance(key, str):
        raise CredentialsError(f"organization {organization.id}: its BigQuery credential holds no service_account key")
    return _read_service_account(key, "the service_account of its BigQuery credential", organization)


def project_for(config: WarehouseConfig, key: dict | None) -> str:
    """The project an organization's datasets live in: its key's own project; the configured
    ``GLIFIC_BQ_PROJECT`` only under the ``active`` rule with no key of its own."""
    if key is not None:
        return key["project_id"]
    return config.project


def credentials_for(config: WarehouseConfig, organization: Organization):
    """(credentials, project) for one organization (its key: ``key_for``).

    With the emulator, the key is still decrypted and checked (a broken key fails locally as it
    would in production) and anonymous credentials are used, in the key's own project: the
    emulator keeps projects apart, so tests see each organization's rows land in its own.
    """
    info = key_for(config, organization)
    project = project_for(config, info)
    if config.emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), project
    if info is None:
        import google.auth

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
        return credentials, project
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_info(info)
    except (ValueError, KeyError) as error:
        raise CredentialsError(
            f"organization {organization.id}: service account is not usable ({type(error).__name__})"
        ) from None
    return credentials, project


def _read_service_account(text: str, source: str, organization: Organization) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsError(f"organization {organization.id}: {source} is not valid JSON") from None
    required = {"type", "project_id", "private_key", "client_email"}
    if not isinstance(info, dict) or info.get("type") != "service_account" or not required <= set(info):
        raise CredentialsError(f"organization {organization.id}: {source} is not a service-account key")
    if not identifiers.is_project(info["project_id"]):
        raise CredentialsError(f"organization {organization.id}: {source} names no valid project_id")
    return info
