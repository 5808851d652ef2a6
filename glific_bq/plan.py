"""Which (organization, table) pairs have work to do: decided from the data, never from an
"active recently" filter (glific#4169). A pair that failed waits 1, 2, 4 … up to 60 minutes before
it is tried again, so that a tenant with invalid credentials does not fail every minute
(glific#5570) while the others go on.

One query per table, whatever the number of organizations: each organization costs two index
probes (``(organization_id, id)`` and ``(organization_id, updated_at, id)``), never a scan.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

from glific_bq import lookups
from glific_bq.extract import HORIZON_SECONDS, cursor_expression
from glific_bq.registry import Scope, TableSpec
from glific_bq.schema import reflect_columns

_DIRTY = """
SELECT o.id
FROM unnest(%(ids)s::bigint[], %(destinations)s::text[]) AS o(id, destination)
LEFT JOIN glific_bq_watermarks w
       ON w.organization_id = o.id AND w."table" = {name} AND w.destination = o.destination
WHERE NOT (COALESCE(w.failures, 0) > 0  -- back off after failures: 1, 2, 4 … 60 minutes
           AND w.last_failed_at > now() - make_interval(mins => least(power(2, w.failures - 1), 60)::int))
  AND (EXISTS (SELECT 1 FROM {table} t WHERE {tenant} AND t.id > COALESCE(w.table_id, 0))
       OR EXISTS (SELECT 1 FROM glific_bq_refresh r WHERE r.organization_id = o.id AND r."table" = {name})
       {updates})
ORDER BY o.id
"""

_UPDATES = """
       OR EXISTS (SELECT 1 FROM {table} t
                  WHERE {tenant} AND t.id <= w.table_id
                    AND ({cursor}, t.id) > (w.last_updated_at, w.last_updated_id)
                    AND {cursor} < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => {margin}))
"""


def dirty_organizations(
    conn: psycopg.Connection, spec: TableSpec, tenants: Mapping[int, str], horizon_seconds: float = HORIZON_SECONDS
) -> list[int]:
    """Ids of the tenants (``tenants``: organization id -> destination, ``Roster.destinations``)
    with rows of ``spec``'s table beyond their watermark for that destination (changes newer than
    the sync's horizon do not count yet)."""
    columns = reflect_columns(conn, spec.source)
    if not columns:
        return []
    lookups.ensure_tables(conn)
    table = sql.Identifier(spec.source)
    cursor = cursor_expression(spec, columns)
    # A platform table's rows are every organization's (glific_bq.platform plans it for one tenant).
    tenant = sql.SQL("TRUE" if spec.scope is Scope.PLATFORM else "t.organization_id = o.id")
    updates = (sql.SQL(_UPDATES).format(table=table, tenant=tenant, cursor=cursor, margin=sql.Literal(horizon_seconds))
               if cursor else sql.SQL(""))
    query = sql.SQL(_DIRTY).format(name=sql.Literal(spec.name), table=table, tenant=tenant, updates=updates)
    ids = sorted(tenants)
    return [row[0] for row in conn.execute(query, {"ids": ids, "destinations": [tenants[i] for i in ids]}).fetchall()]


def dirty(conn: psycopg.Connection, tables: tuple[TableSpec, ...], tenants: Mapping[int, str]) -> dict[str, list[int]]:
    """``{table: [organization ids]}`` for every table with work to do: rows beyond the
    watermarks, or rows to send again because a value they copy changed (``glific_bq.lookups``)."""
    plan = {spec.name: dirty_organizations(conn, spec, tenants) for spec in tables}
    return {name: ids for name, ids in plan.items() if ids}
