"""BigQuery clients and credentials, created once per organization per process and reused.

A new ``bigquery.Client`` is a new HTTPS connection (TCP and TLS: 2 round trips) and new
credentials fetch a new OAuth token (another connection and round trip); a new Storage Write
client is a new gRPC channel (its own TLS handshake). Per tenant per tick that is 5–7 round trips
before the first useful call. ``clients_for`` keeps them per (configuration, organization,
credential version) for the life of the process; google-auth refreshes a cached token only when
it is about to expire. A key saved again in Glific moves its credential's ``updated_at``, so the
next tick builds clients from the new key (the old ones are closed).

Clients are shared by every ``Warehouse`` of that organization in the process, so
``Warehouse.close`` leaves them open; ``close_all`` closes them (tests, shutdown).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from google.cloud import bigquery

from glific_bq.tenants import Organization
from glific_bq.warehouse.config import WarehouseConfig, credentials_for

#: Organizations whose clients are kept per process; the least recently used beyond are dropped.
MAX_ORGANIZATIONS = 1_000


@dataclass
class OrganizationClients:
    """One organization's credentials, project and clients."""

    config: WarehouseConfig
    credentials: object
    project: str
    client: bigquery.Client
    _write_client: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write_client(self):
        """The Storage Write API client (gRPC), created on first use."""
        with self._lock:
            if self._write_client is None:
                from glific_bq.warehouse.writes import open_write_client

                self._write_client = open_write_client(self.config, self.credentials)
            return self._write_client

    def close(self) -> None:
        self.client.close()
        if self._write_client is not None:
            self._write_client.transport.close()
            self._write_client = None


#: (config, organization id) -> (credential version, its clients): one entry per organization, so
#: that a new key replaces the old clients without a scan of every organization's.
_clients: OrderedDict[tuple, tuple[object, OrganizationClients]] = OrderedDict()
_lock = threading.Lock()


def clients_for(config: WarehouseConfig, organization: Organization) -> OrganizationClients:
    """The organization's clients, created on first use in this process. Invalid credentials
    raise ``CredentialsError`` every time (a failure is not cached)."""
    version = organization.credential.version if organization.credential else None
    key = (config, organization.id)
    with _lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == version:
            _clients.move_to_end(key)
            return cached[1]
    credentials, project = credentials_for(config, organization)
    options = {"api_endpoint": config.emulator_host} if config.emulator_host else None
    client = bigquery.Client(project=project, credentials=credentials, location=config.location_for(organization.id),
                             client_options=options)
    clients = OrganizationClients(config, credentials, project, client)
    with _lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == version:  # another thread was quicker: keep one
            client.close()
            return cached[1]
        if cached is not None:  # the clients of an older key of this organization
            cached[1].client.close()
        _clients[key] = (version, clients)
        _clients.move_to_end(key)
        while len(_clients) > MAX_ORGANIZATIONS:
            # Its idle HTTP connections are closed (a Warehouse still holding the client reopens
            # one if it needs to); its gRPC channel closes when no Warehouse holds it any more.
            _, (_, evicted) = _clients.popitem(last=False)
            evicted.client.close()
    return clients


def close_all() -> None:
    """Close every cached client (the process is done with BigQuery)."""
    with _lock:
        for _, clients in _clients.values():
            clients.close()
        _clients.clear()
