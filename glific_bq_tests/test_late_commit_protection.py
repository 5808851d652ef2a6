"""Late-commit protection needs to see other roles' open transactions (``pg_read_all_stats``):
without it the sync says so loudly instead of silently losing rows."""

from __future__ import annotations

import uuid

import dagster as dg
import psycopg

from glific_bq import horizon
from glific_bq.defs.alerting import stalled_watermarks
from glific_bq.defs.resources import GlificPostgres

from .helpers import bigquery_resource


def _limited_role(db, database_url) -> tuple[str, str]:
    """A login role like the one an operator creates for glific_bq, without pg_read_all_stats."""
    role = f"glific_bq_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT ALL ON SCHEMA public TO {role}")
    db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    db.execute(f"GRANT USAGE ON SCHEMA global TO {role}")
    db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA global TO {role}")
    return role, psycopg.conninfo.make_conninfo(database_url, user=role)


def test_a_role_without_pg_read_all_stats_is_told_what_to_grant(db, database_url):
    role, url = _limited_role(db, database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        warning = horizon.late_commit_warning(conn)
    assert warning and "late-commit protection is OFF" in warning and f"GRANT pg_read_all_stats TO {role}" in warning

    db.execute(f"GRANT pg_read_all_stats TO {role}")
    with psycopg.connect(url, autocommit=True) as conn:
        assert horizon.late_commit_warning(conn) is None
    assert horizon.late_commit_warning(db) is None  # the tests' superuser sees everything


def test_the_stalled_watermark_sensor_says_protection_is_off(db, database_url, warehouse_config):
    role, url = _limited_role(db, database_url)
    resources = {"postgres": GlificPostgres(database_url=url), "bigquery": bigquery_resource(warehouse_config)}
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = stalled_watermarks(context)
    assert isinstance(result, dg.SkipReason) and "late-commit protection OFF" in result.skip_message
