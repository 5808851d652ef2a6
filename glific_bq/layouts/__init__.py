"""What a source row becomes in BigQuery: the two layouts.

- ``glific`` (the default): Glific's own BigQuery layout, the tables, columns, types and modes
  that Glific's sync writes and that Looker Studio templates and dbt models read
  (``glific_bq/layouts/glific.py``). A drop-in replacement for Glific's sync.
- ``raw``: exact copies of the source tables, every column as the catalog has it
  (``glific_bq/layouts/raw.py``).

Chosen by ``GLIFIC_BQ_LAYOUT``. A layout turns one registered table and its reflected source
columns into a ``Shape``: the BigQuery schema, the SELECT list that produces it, the change
cursor and the row filters. The extract (``glific_bq.extract``) builds its queries from a shape
and knows nothing of either layout.
"""

from __future__ import annotations

import dataclasses

from glific_bq.layouts.shape import LAYOUT_ENV, Layout, Shape, Stamp


def shape_for(layout: Layout, spec, columns: list) -> Shape:
    """The shape of ``spec``'s BigQuery table in ``layout``, from its source's reflected columns
    (``glific_bq.schema.reflect_columns`` of ``spec.source``)."""
    from glific_bq import extract, schema
    from glific_bq.layouts import glific, raw

    cursor = extract.cursor_expression(spec, columns)
    cross_organization = spec.scope.value == "platform"
    if layout is Layout.RAW:
        if cross_organization:
            raise ValueError(f"{spec.name} holds every organization's rows: only the Glific layout has it")
        syncable, warnings = schema.syncable_columns(columns, spec.source)
        shaped = raw.shape(spec, syncable, cursor)
        return dataclasses.replace(shaped, warnings=tuple(warnings))
    if spec.source != glific.source_table(spec.name):
        raise ValueError(
            f"{spec.name} in the Glific layout is filled from {glific.source_table(spec.name)}, not {spec.source}: "
            "use registry.tables_for(Layout.GLIFIC), or the raw layout for exact copies"
        )
    return dataclasses.replace(glific.shape(spec.name, columns, cursor), cross_organization=cross_organization)


def lookup_sources() -> dict[str, dict[tuple[str, ...], list[str]]]:
    """For ``glific_bq.lookups.detect``: ``{looked-up table: {columns: [tables copying them]}}``."""
    from glific_bq.layouts import glific

    return glific.copied_columns()


__all__ = ["LAYOUT_ENV", "Layout", "Shape", "Stamp", "lookup_sources", "shape_for"]
