"""Connections to BigQuery are closed, not left to the garbage collector: an organization's
clients (REST and the Storage Write API's gRPC channel) are kept for the process and shared by
its warehouses, and closing them closes the channel too."""

from __future__ import annotations

import pytest

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
