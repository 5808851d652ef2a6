"""What an extracted page becomes before BigQuery receives it: the layout's left-out rows
filtered, the extract's own columns dropped, columns read as stored converted on the worker,
RECORD columns decoded, the send columns stamped, and rows missing a REQUIRED value set apart."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from glific_bq import convert
from glific_bq.extract import EXPORT_COLUMN, ID_COLUMN
from glific_bq.joins import Joiner
from glific_bq.layouts import records
from glific_bq.layouts.shape import Shape
from glific_bq.stamping import stamp
from glific_bq.warehouse import SOURCE_ID, Rejected


def exported(rows: pa.Table) -> int:
    """Rows of an extracted page that the layout exports (see ``extract.EXPORT_COLUMN``)."""
    return pc.sum(rows.column(EXPORT_COLUMN)).as_py() or 0 if EXPORT_COLUMN in rows.column_names else rows.num_rows


def prepare(rows: pa.Table, shape: Shape, timezone_name: str, joiner: Joiner | None = None,
            snapshot: str | None = None, organization_id: int | None = None) -> tuple[pa.Table, list[Rejected]]:
    """Extracted rows (of ``organization_id``) as BigQuery receives them: columns copied from
    other tables joined from that organization's rows (``joiner``, in the extract's ``snapshot``:
    see ``glific_bq.joins``), the extract's own
    columns dropped, columns read as stored converted (``glific_bq.convert``), RECORD columns
    decoded, send columns stamped; rows missing a REQUIRED value are set apart (BigQuery would
    refuse them) and returned as rejected, with the column named."""
    if EXPORT_COLUMN in rows.column_names:  # rows the layout leaves out (their positions still count)
        rows = rows.filter(rows.column(EXPORT_COLUMN))
    source_ids = rows.column(ID_COLUMN) if ID_COLUMN in rows.column_names else None
    for name, kind in shape.added.items():  # not read by the extract: NULL, or joined below
        rows = rows.append_column(pa.field(name, kind), pa.nulls(rows.num_rows, kind))
    if shape.joins:
        if joiner is None:
            raise ValueError(f"{shape.table} copies columns from other tables: prepare it with a Joiner")
        if organization_id is None:
            raise ValueError(f"{shape.table} copies columns from other tables: name the organization they belong to")
        rows = joiner.fill(rows, shape.joins, snapshot, organization_id)
    rows = rows.select([f.name for f in shape.schema if f.name in rows.column_names])  # the extract's own dropped
    rows = convert.apply(rows, shape.conversions, timezone_name)
    rows = records.decode(rows, shape.schema, shape.records, timezone_name)
    rows = stamp(rows, shape.stamp, timezone_name)
    if source_ids is not None:  # kept beside each row, never sent: a refused row's letter names its source row
        rows = rows.append_column(SOURCE_ID, source_ids)
    missing = None
    for column in shape.schema:
        if column.mode == "REQUIRED" and column.name in rows.column_names and rows.column(column.name).null_count:
            is_null = pc.is_null(rows.column(column.name))
            missing = is_null if missing is None else pc.or_(missing, is_null)
    if missing is None:
        return rows, []
    rejected = []
    for index in pc.indices_nonzero(missing).to_pylist():
        row = rows.slice(index, 1).to_pylist()[0]
        empty = [f.name for f in shape.schema if f.mode == "REQUIRED" and row.get(f.name, "") is None]
        rejected.append(Rejected.of(row, f"REQUIRED column(s) {', '.join(empty)} NULL in {shape.table}"))
    return rows.filter(pc.invert(missing)), rejected
