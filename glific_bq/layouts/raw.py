"""The raw layout: exact copies of the source tables, every column as the catalog has it, with
the type mapping of ``glific_bq.schema``, and ``bq_uuid`` and ``bq_inserted_at`` (UTC) last.
Columns are read as stored and converted on the worker (``glific_bq.convert``) except the few
types Arrow cannot decode, which ``Column.select_expression`` casts in SQL."""

from __future__ import annotations

from psycopg import sql

from glific_bq.catalog import TableSpec
from glific_bq.extract import TIMEZONE
from glific_bq.layouts.shape import Shape, Stamp
from glific_bq.schema import Column, bigquery_schema


def shape(spec: TableSpec, columns: list[Column], cursor: sql.Composable | None) -> Shape:
    """``spec``'s table copied column for column (``columns``: the syncable source columns)."""
    return Shape(
        table=spec.name,
        source=spec.source,
        schema=tuple(bigquery_schema(columns)),
        select=tuple(c.extract_expression(TIMEZONE) for c in columns),
        conversions={c.target_name: c.conversion for c in columns if c.conversion is not None},
        cursor=cursor,
        stamp=Stamp.UTC,
    )
