"""Which (organization, table) pairs have work to do: decided from the data, never from an
"active recently" filter (glific#4169). A pair that failed waits 1, 2, 4 … up to 60 minutes before
it is tried again, so that a tenant with invalid credentials does not fail every minute
(glific#5570) while the others go on.

One query per table, whatever the number of organizations: each organization costs two index
probes (``(organization_id, id)`` and ``(organization_id, updated_at, id)``), never a scan.

A change counts as waiting once it is older than the sync's margin (``HORIZON_SECONDS``) by the
database clock, deliberately without the open-transaction part of ``horizon.horizon``: rows a
long-open transaction holds back are waiting, so the stalled-watermark alert sees them.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

from glific_bq import lookups
from glific_bq.extract import cursor_expression
from glific_bq.horizon import HORIZON_SECONDS
from glific_bq.registry import Scope, TableSpec
from glific_bq.schema import reflect_columns

_DIRTY = """
SELECT o.id
FROM unnest(%(ids)s::bigint[], %(destinations)s::text[]) AS o(id, destination)
LEFT JOIN glific_bq_watermarks w
       ON w.organization_id = o.id AND w."table" = {name} AND w.destination = o.destination
WHERE NOT (COALESCE(w.failures, 0) > 0  -- back off after failures: 1, 2, 4 … 60 minutes
           AND w.last_failed_at > now() - make_interval(mins => least(power(2, w.failures - 1), 60)::int))
  AND ({inserts}
       OR EXISTS (SELECT 1 FROM glific_bq_refresh r WHERE r.organization_id = o.id AND r."table" = {name})
       {updates})
ORDER BY o.id
"""

_INSERTS = "EXISTS (SELECT 1 FROM {table} t WHERE t.organization_id = o.id AND t.id > COALESCE(w.table_id, 0))"

_UPDATES = """
       OR EXISTS (SELECT 1 FROM {table} t
                  WHERE t.organization_id = o.id AND t.id <= w.table_id
                    AND ({cursor}, t.id) > (w.last_updated_at, w.last_updated_id)
                    AND {cursor} < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => {margin}))
"""

# A platform table (glific_bq.platform: every organization's rows, planned for one tenant) has no
# (organization_id, ...) index to probe, and PostgreSQL answers an EXISTS over the whole table by a
# sequential scan (185 ms a tick at 720,000 stats rows). These probes use the primary key (the
# newest id) and an index on (cursor, id) where there is one (0.3 ms; without it the same scan,
# as Glific's own sync does). Rows above the id bound are dirty by the first probe anyway.
_PLATFORM_INSERTS = "(SELECT max(t.id) FROM {table} t) > COALESCE(w.table_id, 0)"

_PLATFORM_UPDATES = """
       OR (SELECT 1 FROM {table} t
           WHERE ({cursor}, t.id) > (w.last_updated_at, w.last_updated_id)
             AND {cursor} < (clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => {margin})
           ORDER BY {cursor}, t.id LIMIT 1) IS NOT NULL
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
    inserts, changes = (_PLATFORM_INSERTS, _PLATFORM_UPDATES) if spec.scope is Scope.PLATFORM else (_INSERTS, _UPDATES)
    updates = sql.SQL(changes).format(table=table, cursor=cursor, margin=sql.Literal(horizon_seconds)) if cursor else sql.SQL("")
    query = sql.SQL(_DIRTY).format(name=sql.Literal(spec.name), table=table, updates=updates,
                                   inserts=sql.SQL(inserts).format(table=table))
    ids = sorted(tenants)
    return [row[0] for row in conn.execute(query, {"ids": ids, "destinations": [tenants[i] for i in ids]}).fetchall()]


def dirty(conn: psycopg.Connection, tables: tuple[TableSpec, ...], tenants: Mapping[int, str]) -> dict[str, list[int]]:
    """``{table: [organization ids]}`` for every table with work to do: rows beyond the
    watermarks, or rows to send again because a value they copy changed (``glific_bq.lookups``)."""
    plan = {spec.name: dirty_organizations(conn, spec, tenants) for spec in tables}
    return {name: ids for name, ids in plan.items() if ids}
