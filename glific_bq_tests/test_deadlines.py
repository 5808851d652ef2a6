"""Every BigQuery call gives up within its deadline: a BigQuery that accepts connections and never
answers (an outage, a black-holed network) fails the call instead of hanging the run.

The warehouse points at a local TCP port that accepts and never replies, with a two-second
deadline, and each path (the warehouse's own calls, dedup, deletes, reconcile, views, exports,
checks) must raise within a few multiples of it; the writes (appends and load jobs, which may take
``WRITE_DEADLINES`` deadlines) within a few multiples of theirs."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField

from glific_bq import dedup, deletes, export, reconcile, upkeep_checks, views
from glific_bq.layouts import Layout
from glific_bq.registry import DeletePolicy, TableSpec
from glific_bq.tenants import Organization
from glific_bq.warehouse import Warehouse, WarehouseConfig, writes
from glific_bq.warehouse.queries import WRITE_DEADLINES
from glific_bq.warehouse.tables import Target

DEADLINE = 2.0
#: Slack for the last request's own timeout and retry back-off past the deadline, and for a busy
#: CI machine: the test tells a call that gives up from one that hangs, not how fast it gives up.
GIVE_UP_WITHIN = 10 * DEADLINE
#: The writes (appends and load jobs) may take ``WRITE_DEADLINES`` deadlines (a large upload):
#: tested with a shorter deadline, and twice their time for the same slack.
WRITE_DEADLINE = DEADLINE / 2
WRITES = ("append", "load")
WRITE_GIVES_UP_WITHIN = 2 * WRITE_DEADLINES * WRITE_DEADLINE
ORGANIZATION = Organization(id=1, shortcode="silent", timezone="UTC", is_active=True)
NOTES = TableSpec("notes", deletes=DeletePolicy.PROPAGATE)


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def silent_warehouse(silent_port) -> Warehouse:
    config = WarehouseConfig(organizations="active",
        project="silent-project", dataset_template="glific_{organization_id}", layout=Layout.RAW,
        emulator_host=f"http://127.0.0.1:{silent_port}", storage_emulator_host=f"127.0.0.1:{silent_port}",
        deadline_seconds=DEADLINE,
    )
    return Warehouse(config, ORGANIZATION)


#: A table as a sync writes to it, without asking BigQuery (which would not answer).
TARGET = Target("silent-project.glific_1.notes", (SchemaField("id", "INT64"),))


def _load(warehouse: Warehouse) -> None:
    load = writes.ParquetLoad(warehouse, TARGET)
    load.add(pa.table({"id": [1, 2]}))
    load.load()


CALLS = {
    # The writes: an append (Storage Write API, gRPC) and a backfill's load job (its upload).
    "append": lambda w, source: w.append(TARGET, pa.table({"id": [1, 2]})),
    "load": lambda w, source: _load(w),
    "query": lambda w, source: w.query("SELECT 1"),
    "table_exists": lambda w, source: w.table_exists("notes"),
    "ensure_table": lambda w, source: w.ensure_table(NOTES, [SchemaField("id", "INT64")]),
    "dead_letter_ids": lambda w, source: w.dead_letter_ids("notes"),
    "forget_dead_letters": lambda w, source: w.forget_dead_letters("notes", [1]),
    "dedup": lambda w, source: dedup.dedup_table(w, "notes", since=None),
    "deletes": lambda w, source: deletes.propagate_deletes(source, w, ORGANIZATION, NOTES),
    "reconcile": lambda w, source: reconcile.compare_ids(source, w, ORGANIZATION.id, "notes"),
    "views": lambda w, source: views.create_views(w, ["notes"], []),
    "export": lambda w, source: export.export_tenant(w, ["notes"], ["csv"], source.exports_dir),
    "checks": lambda w, source: upkeep_checks.duplicate_ids(w, ORGANIZATION.id, "notes"),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_silent_bigquery_fails_the_call_within_the_deadline(call, silent_warehouse, source, tmp_path):
    source.exports_dir = tmp_path
    outcome: list[BaseException | None] = []
    warehouse = silent_warehouse
    if call in WRITES:
        warehouse = Warehouse(dataclasses.replace(warehouse.config, deadline_seconds=WRITE_DEADLINE), ORGANIZATION)

    def attempt() -> None:
        try:
            CALLS[call](warehouse, source)
            outcome.append(None)
        except BaseException as error:  # what the call raised is the outcome
            outcome.append(error)

    started = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)  # a hanging call must fail the test, not hang it
    worker.start()
    worker.join(WRITE_GIVES_UP_WITHIN if call in WRITES else GIVE_UP_WITHIN)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), f"{call} still waiting for BigQuery after {elapsed:.1f} s"
    (error,) = outcome
    assert error is not None, f"{call} succeeded against a BigQuery that never answers"
    assert any(word in str(error) for word in ("imeout", "timed out", "Deadline Exceeded")), repr(error)


def test_a_deadline_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="deadline"):
        WarehouseConfig(organizations="active", project="p", deadline_seconds=0)
