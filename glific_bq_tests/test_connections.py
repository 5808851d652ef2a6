"""Connections to BigQuery are closed, not left to the garbage collector: an organization's
clients (REST and the Storage Write API's gRPC channel) are kept for the process and shared by
its warehouses, and closing them closes the channel too."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from glific_bq.tenants import Credential
from glific_bq.warehouse import clients

from .helpers import add_organization


def test_closing_the_clients_closes_the_storage_write_channel(db, warehouse_for):
    warehouse = warehouse_for(add_organization(db))
    channel = warehouse.write_client().transport.grpc_channel

    clients.close_all()

    with pytest.raises(ValueError, match="closed channel"):
        channel.unary_unary("/google.cloud.bigquery.storage.v1.BigQueryWrite/GetWriteStream")(b"", timeout=1)


def test_warehouses_of_one_organization_share_one_channel(db, warehouse_for):
    organization = add_organization(db)

    first, second = warehouse_for(organization), warehouse_for(organization)

    assert first.write_client() is second.write_client()


def test_a_key_saved_again_gets_new_clients_and_the_old_ones_are_closed(db, warehouse_config, monkeypatch):
    organization = add_organization(db)
    old = clients.clients_for(warehouse_config, organization)
    closed = []
    monkeypatch.setattr(old.client, "close", lambda: closed.append(old))
    saved = dataclasses.replace(organization, credential=Credential(1, True, datetime(2026, 12, 3)))

    new = clients.clients_for(warehouse_config, saved)

    assert new is not old and clients.clients_for(warehouse_config, saved) is new
    assert closed == [old]
    assert clients.clients_for(warehouse_config, saved) is new  # kept, once
