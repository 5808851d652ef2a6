"""Tables already set up in this process: dataset and table metadata checked only when the
source schema changed.

``tables.ensure_table`` costs several BigQuery calls (dataset insert-or-get, table
insert-or-get, an update when columns were added): 4 round trips per (tenant, table) on every
sync, 400 ms at 100 ms a round trip. This cache remembers, per table id, the fingerprint of the
schema last applied in this process; while the source schema keeps that fingerprint, the table
is taken as set up, with no call at all. The first time in a process (every Dagster run is a
new one), one ``tables.get`` shows whether ``ensure_table`` would have anything to do; only
then is it called.

Verification is lazy: an append that BigQuery refuses as a whole (a missing table or dataset, a
field BigQuery does not know) forgets the entry, sets the table up again and is retried once
(``recheck``). A thin wrapper: what setting up means stays in ``tables.ensure_table``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core.exceptions import NotFound
from google.cloud.bigquery import SchemaField

from glific_bq.registry import TableSpec
from glific_bq.warehouse import limits, tables
from glific_bq.warehouse.tables import Target

if TYPE_CHECKING:
    from glific_bq.warehouse.dataset import Warehouse

#: Entries kept per process (a table id with its schema is a few hundred bytes).
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class _Known:
    fingerprint: str
    spec: TableSpec
    target: Target


_known: dict[str, _Known] = {}
_lock = threading.Lock()


def fingerprint(schema: list[SchemaField] | tuple[SchemaField, ...]) -> str:
    """A digest of everything in ``schema`` that the table's set-up depends on."""
    text = repr([field.to_api_repr() for field in schema])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ensure_table(warehouse: Warehouse, spec: TableSpec, schema: list[SchemaField]) -> Target:
    """``tables.ensure_table``, unless this process already applied this very schema."""
    table_id = tables.written_table_id(warehouse, spec, schema)
    digest = fingerprint(schema)
    with _lock:
        known = _known.get(table_id)
    if known is not None and known.fingerprint == digest and known.spec == spec:
        return known.target
    return _verify(warehouse, spec, schema, table_id, digest)


def trust(warehouse: Warehouse, spec: TableSpec, schema: list[SchemaField]) -> None:
    """Take the table as set up for ``schema`` without asking BigQuery (an earlier process applied
    it: ``glific_bq.applied_schemas``); verification stays lazy (``recheck``)."""
    table_id = tables.written_table_id(warehouse, spec, schema)
    with _lock:
        if len(_known) >= MAX_ENTRIES:
            _known.clear()
        _known[table_id] = _Known(fingerprint(schema), spec, Target(table_id, tuple(schema)))


def _verify(warehouse: Warehouse, spec: TableSpec, schema: list[SchemaField], table_id: str, digest: str) -> Target:
    """One ``tables.get`` (1 round trip) when the table is already set up for ``schema``;
    ``tables.ensure_table`` (4 or more) when it is missing or lacks something."""
    limits.api_call("tables.get")
    try:
        existing = warehouse.client.get_table(table_id, **warehouse.calls.calls)
    except NotFound:
        existing = None
    if existing is not None and already_set_up(existing.schema, schema):
        target = Target(table_id, tuple(schema))
    else:
        limits.table_update(table_id)
        for method in ("datasets.insert", "tables.insert"):
            limits.api_call(method)
        target = tables.ensure_table(warehouse, spec, schema)
    with _lock:
        if len(_known) >= MAX_ENTRIES:
            _known.clear()
        _known[table_id] = _Known(digest, spec, target)
    return target


def already_set_up(existing: list[SchemaField], schema: list[SchemaField]) -> bool:
    """Whether ``tables.ensure_table`` would find nothing to do on a table with ``existing``
    columns: every column of ``schema`` is there, of the same kind (``tables._kind``: no drift,
    nothing to add)."""
    by_name = {f.name: f for f in existing}
    return all(f.name in by_name and tables._kind(by_name[f.name]) == tables._kind(f) for f in schema)


def forget(table_id: str) -> None:
    with _lock:
        _known.pop(table_id, None)


def recheck(warehouse: Warehouse, target: Target, refusal: Exception) -> Target | None:
    """After BigQuery refused a whole append to ``target``: if the refusal can be about the table
    itself (missing, or a schema it does not match) and ``target`` came from this cache, forget
    it, set the table up again and return the fresh target to retry with. None otherwise (the
    refusal is about the rows, or the table was just verified)."""
    row_level = bool(getattr(refusal, "messages", None))
    if row_level:
        return None
    with _lock:
        known = _known.get(target.table_id)
    if known is None or known.target is not target:
        return None
    forget(target.table_id)
    if not isinstance(refusal, NotFound) and not _about_schema(refusal):
        return None
    return _verify(warehouse, known.spec, list(target.schema), target.table_id, known.fingerprint)


def _about_schema(refusal: Exception) -> bool:
    text = str(refusal).lower()
    return any(word in text for word in ("schema", "field", "column", "not found", "does not exist"))
