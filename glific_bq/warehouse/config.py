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
from glific_bq.layouts import LAYOUT_ENV, Layout
from glific_bq.tenants import Organization
from glific_bq.warehouse.errors import CredentialsError
from glific_bq.warehouse.queries import DEADLINE_SECONDS, CallPolicy


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
    "gcp_credentials": "GLIFIC_BQ_CREDENTIALS",  # base64 service-account JSON (dagster-gcp's convention)
    "credentials_dir": "GLIFIC_BQ_CREDENTIALS_DIR",  # per-organization <organization_id>.json keys
    "emulator_host": "BIGQUERY_EMULATOR_HOST",  # local emulator REST URL, with http://
    "storage_emulator_host": "BIGQUERY_STORAGE_EMULATOR_HOST",  # local emulator gRPC host:port
}


@dataclass(frozen=True)
class WarehouseConfig:
    """How to reach BigQuery; ``ENVIRONMENT`` names the variable behind each field (all but
    ``deadline_seconds``, a knob for tests and tuning).

    ``layout``: what the tables hold (``glific_bq.layouts``): ``glific`` (Glific's own layout,
    the default) or ``raw``. ``dataset_template`` is formatted with ``organization_id``,
    ``shortcode`` and ``phone`` (the bot's number, which names Glific's datasets); empty means the
    layout's default: ``{phone}`` for ``glific`` (Glific's own datasets, taken over as they are),
    ``glific_{organization_id}`` for ``raw``.
    """

    project: str
    location: str | None = None
    dataset_template: str = ""
    write_method: str = WriteMethod.STORAGE_WRITE.value
    gcp_credentials: str | None = None
    credentials_dir: str | None = None
    emulator_host: str | None = None
    storage_emulator_host: str | None = None
    #: Seconds any BigQuery query, DML or API call may take, retries included (``CallPolicy``).
    deadline_seconds: float = DEADLINE_SECONDS
    layout: Layout = field(default_factory=Layout.from_env)  # GLIFIC_BQ_LAYOUT, like registry.TABLES

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", Layout.from_env({LAYOUT_ENV: str(getattr(self.layout, "value", self.layout))}))
        if not self.dataset_template:
            default = "{phone}" if self.layout is Layout.GLIFIC else "glific_{organization_id}"
            object.__setattr__(self, "dataset_template", default)
        if not self.project:
            raise ValueError(f"{ENVIRONMENT['project']} is not set: the BigQuery project to write to")
        WriteMethod(self.write_method)  # a clear error for an unknown method
        CallPolicy(self.deadline_seconds)  # a clear error for a deadline that is not positive

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


def credentials_for(config: WarehouseConfig, organization: Organization):
    """(credentials, project) for one organization.

    Order: ``GLIFIC_BQ_CREDENTIALS_DIR/<organization_id>.json`` (the organization's own service
    account and project, as Glific stores them); the base64 ``GLIFIC_BQ_CREDENTIALS``; Application
    Default Credentials. With the emulator, configured keys are still checked (a broken key fails
    locally as it would in production) and anonymous credentials are used.
    """
    info = None
    if config.credentials_dir:
        path = Path(config.credentials_dir) / f"{organization.id}.json"
        if path.exists():
            info = _read_service_account(path.read_text(), path.name, organization)
    if info is None and config.gcp_credentials:
        text = base64.b64decode(config.gcp_credentials).decode()
        info = _read_service_account(text, ENVIRONMENT["gcp_credentials"], organization)
    if config.emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), config.project
    if info is None:
        import google.auth

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
        return credentials, config.project
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_info(info)
    except (ValueError, KeyError) as error:
        raise CredentialsError(
            f"organization {organization.id}: service account is not usable ({type(error).__name__})"
        ) from None
    return credentials, info.get("project_id") or config.project


def _read_service_account(text: str, source: str, organization: Organization) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsError(f"organization {organization.id}: {source} is not valid JSON") from None
    required = {"type", "project_id", "private_key", "client_email"}
    if not isinstance(info, dict) or info.get("type") != "service_account" or not required <= set(info):
        raise CredentialsError(f"organization {organization.id}: {source} is not a service-account key")
    return info
