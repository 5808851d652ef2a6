"""Glific's platform dataset: the platform organization's cross-organization tables.

Glific runs as a platform: its ``saas`` row named ``Tides`` names the organization that runs the
service. Glific's sync writes four more tables into that organization's dataset
(``bigquery_tables/1`` in Glific's ``bigquery.ex``), whose rows are every organization's
(``registry.PLATFORM_TABLES``): ``organizations`` (a change log: every change appended, never
deduplicated, glific#5390), ``stats_all`` (insert-only), ``trackers_all`` and ``trial_users``.

Every other read is one organization's (``t.organization_id = <tenant>``, each page checked before
it is written). These tables are the one exception, explicit in the registry
(``registry.Scope.PLATFORM``), and granted in two places only:

- ``work``: the tick plans them for the platform organization alone, and only when the roster
  syncs it in the Glific layout (``tick.plan_tick``);
- ``require_platform_organization``: the sync of such a table refuses any other organization,
  whoever asks for it (a hand-run materialization, the CLI, a resync), before anything is read.

Their watermarks are keyed as usual: the platform organization, the table, the destination. A
database without ``saas`` (an older Glific), or without a ``Tides`` row, has no platform tables;
nor has one with two ``Tides`` rows (Glific's own ``Repo.one!`` would fail there), which is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg

from glific_bq import plan
from glific_bq.layouts import Layout
from glific_bq.registry import TableSpec, platform_tables_for

log = logging.getLogger(__name__)

#: The ``saas`` row that names the platform organization (Glific's ``Saas.organization_id/1`` default).
PLATFORM_NAME = "Tides"

_HAS_SAAS = "SELECT to_regclass('public.saas') IS NOT NULL"
_PLATFORM = "SELECT organization_id FROM saas WHERE name = %s ORDER BY id LIMIT 2"


class NotThePlatform(RuntimeError):
    """A platform table asked for by another organization than the platform's: refused."""


def organization_id(conn: psycopg.Connection) -> int | None:
    """The platform organization's id (the ``saas`` row named ``Tides``), None when there is none.
    Read anew each time (two small queries), so that a change in Glific counts at the next tick."""
    if not conn.execute(_HAS_SAAS).fetchone()[0]:
        return None
    rows = conn.execute(_PLATFORM, (PLATFORM_NAME,)).fetchall()
    if len(rows) > 1:
        log.warning("two saas rows are named %s: no organization gets the platform tables until one is left",
                    PLATFORM_NAME)
        return None
    return rows[0][0] if rows else None


def require_platform_organization(conn: psycopg.Connection, organization: int, table: str) -> None:
    """Refuse (``NotThePlatform``) to sync the cross-organization ``table`` for ``organization``
    unless it is the platform organization: the rows of every organization go into no other
    organization's dataset."""
    platform = organization_id(conn)
    if platform != organization:
        where = f"organization {platform}" if platform is not None else "no organization here (no saas row named Tides)"
        raise NotThePlatform(f"{table} holds every organization's rows: only the platform organization gets it, "
                             f"which is {where}, not organization {organization}")


def work(conn: psycopg.Connection, tenants: Mapping[int, str]) -> dict[int, list[TableSpec]]:
    """The platform tables with rows beyond their watermarks, for the platform organization:
    ``{platform organization id: [tables]}``, or nothing when it is not among ``tenants``
    (organization id -> destination, ``Roster.destinations``) or not synced in the Glific layout."""
    platform = organization_id(conn)
    destination = tenants.get(platform) if platform is not None else None
    if destination is None:
        return {}
    tables = platform_tables_for(_layout_of(destination))
    dirty = plan.dirty(conn, tables, {platform: destination})
    specs = [spec for spec in tables if spec.name in dirty]
    return {platform: specs} if specs else {}


def _layout_of(destination: str) -> Layout:
    """The layout a destination is in (``warehouse.config.destination``: ``layout:project.dataset``)."""
    return Layout(destination.partition(":")[0])


__all__ = ["PLATFORM_NAME", "NotThePlatform", "organization_id", "require_platform_organization", "work"]
