"""Every wait on PostgreSQL has a deadline (issue 16, item 12): connections time out, statements
are cancelled, pipeline stages give up, and a run that gives up releases its locks."""

from __future__ import annotations

import threading

import psycopg
import pytest

from glific_bq import pipeline, postgres, watermarks
from glific_bq.source import Source


def test_every_connection_of_a_source_has_its_deadlines(database_url, db):
    with Source(database_url) as source:
        control = source.control.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
        joins = source.joiner.connection.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
        with source.reader.cursor() as cur:
            cur.execute("SELECT current_setting('statement_timeout') AS t")
            extract_timeout = cur.fetchone()[0]
        source.reader.commit()
        info = source.control.info.get_parameters()
    assert (control, joins, extract_timeout) == ("2min", "2min", "30min")
    assert info["connect_timeout"] == "10" and info["keepalives"] == "1" and info["tcp_user_timeout"] == "60000"


def test_a_statement_past_its_deadline_is_cancelled(database_url):
    with psycopg.connect(postgres.with_deadlines(database_url, statement_seconds=0.2), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")


def test_the_urls_own_options_are_kept(database_url):
    url = postgres.with_deadlines(f"{database_url}&options=-c%20work_mem%3D7MB&connect_timeout=3")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_setting('work_mem')").fetchone()[0] == "7MB"
        assert conn.info.get_parameters()["connect_timeout"] == "3"


def test_a_stage_that_produces_nothing_gives_up():
    never = threading.Event()

    def stuck():
        never.wait()  # a read that never returns
        yield 1

    with pytest.raises(pipeline.StageTimeout, match="nothing produced"):
        list(pipeline.ahead(stuck(), timeout=0.2, name="stuck"))
    never.set()


def test_a_run_that_gives_up_releases_its_locks(database_url, db):
    source = Source(database_url)
    lock = watermarks.exclusive(source.control, 1, "messages")
    assert lock.__enter__()  # held, never released by hand
    with psycopg.connect(database_url, autocommit=True) as other:
        with watermarks.exclusive(other, 1, "messages") as second:
            assert not second
        pid = source.control.info.backend_pid
        source.close()  # what a failed sync's cleanup does
        # The server ends the backend (and its locks) once it reads the goodbye: wait for that.
        other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            other.execute("SELECT pg_sleep(0.01)")
        with watermarks.exclusive(other, 1, "messages") as after:
            assert after
