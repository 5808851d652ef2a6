"""A layout's product: what one synced table becomes in BigQuery (``Shape``), how its send
columns are stamped (``Stamp``), and which layout is chosen (``Layout``). Below both layouts
(``glific``, ``raw``), which build shapes, and the package (``glific_bq.layouts``), which picks one."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from google.cloud.bigquery import SchemaField
from psycopg import sql

if TYPE_CHECKING:
    import pyarrow as pa

    from glific_bq.convert import Conversion
    from glific_bq.joins import Join

LAYOUT_ENV = "GLIFIC_BQ_LAYOUT"


class Layout(str, Enum):
    GLIFIC = "glific"
    RAW = "raw"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Layout:
        value = (os.environ if environ is None else environ).get(LAYOUT_ENV) or cls.GLIFIC.value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{LAYOUT_ENV}={value!r}: choose one of {', '.join(m.value for m in cls)}") from None


class Stamp(str, Enum):
    """How the send columns ``bq_uuid`` and ``bq_inserted_at`` are written."""

    #: Neither column (Glific's tags, flow_labels, stats and trackers have none).
    NONE = "none"
    #: ``bq_inserted_at`` a UTC ``TIMESTAMP`` (the raw layout).
    UTC = "utc"
    #: ``bq_inserted_at`` a ``DATETIME`` in the organization's local time, as Glific writes it,
    #: strictly increasing across re-sends even when daylight saving time ends (see
    #: ``glific_bq.stamping``).
    LOCAL = "local"


@dataclass(frozen=True)
class Shape:
    """One BigQuery table of one layout, and how the extract fills it.

    Attributes:
        table: the BigQuery table (also the watermark's table name).
        source: the PostgreSQL table whose rows drive it (aliased ``t`` in every expression); its
            ``id`` and ``organization_id`` carry the watermark and the tenant check.
        schema: the BigQuery columns in table order, send columns included.
        select: one ``<expression> AS <column>`` per column the extract produces (every schema
            column but the send columns).
        cursor: the update pass's change timestamp over ``t``, naive UTC; None: synced by id only.
        stamp: how ``bq_uuid`` and ``bq_inserted_at`` are written.
        where: the source rows this table exports (None: all of the organization's rows).
        update_where: an extra condition for the update pass only.
        records: RECORD columns the extract produces as JSON text, decoded on the worker.
        warnings: what the layout could not map, for the run's metadata.
        refresh: ``{looked-up table: how a row refers to it}`` for the values this table copies
            from others (``glific_bq.lookups``); empty in the raw layout.
        conversions: ``{column: glific_bq.convert.Conversion}``: columns ``select`` reads as
            stored, converted on the worker (``layouts.rows.prepare``) instead of in the source database.
        joins: ``{column: glific_bq.joins.Join}``: columns copied from other tables, filled on the
            worker from the keys ``select`` reads (``glific_bq.joins.Joiner``).
        added: ``{column: Arrow type}``: the columns ``select`` does not read, added on the worker
            as NULLs of the type the extract would give them: the joined ones, then filled, and
            those always NULL (columns Glific declares but never fills).
        cross_organization: the source rows are every organization's (a ``registry.Scope.PLATFORM``
            table, ``glific_bq.platform``): read without the organization filter and the per-page
            tenant check, and synced only for the platform organization.
    """

    table: str
    source: str
    schema: tuple[SchemaField, ...]
    select: tuple[sql.Composable, ...]
    cursor: sql.Composable | None
    stamp: Stamp
    where: sql.Composable | None = None
    update_where: sql.Composable | None = None
    records: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    refresh: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    conversions: Mapping[str, Conversion] = dataclasses.field(default_factory=dict)
    joins: Mapping[str, Join] = dataclasses.field(default_factory=dict)
    added: Mapping[str, pa.DataType] = dataclasses.field(default_factory=dict)
    cross_organization: bool = False

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.schema]
