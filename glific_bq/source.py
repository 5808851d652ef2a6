"""Connections to the Glific PostgreSQL database.

Two connections, each for what it does best: psycopg (autocommit) for control queries —
catalog, watermarks, locks, organizations — and ADBC for the extract, which hands rows over as
Arrow without a Python object per value. The ADBC session runs every transaction as REPEATABLE
READ, READ ONLY: one round of a sync sees one snapshot, and the extract can never write.
"""

from __future__ import annotations

import os

import adbc_driver_postgresql.dbapi as adbc
import psycopg


def database_url(environ: dict[str, str] | None = None) -> str:
    """``GLIFIC_DATABASE_URL``, or a clear error."""
    url = (os.environ if environ is None else environ).get("GLIFIC_DATABASE_URL")
    if not url:
        raise ValueError("GLIFIC_DATABASE_URL is not set: the Glific PostgreSQL database to sync from")
    return url


class Source:
    """The control and extract connections to one database. Use as a context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.control = psycopg.connect(url, autocommit=True, application_name="glific_bq")
        self._reader = None

    @property
    def reader(self):
        """The ADBC extract connection, opened on first use."""
        if self._reader is None:
            self._reader = adbc.connect(self.url)
            with self._reader.cursor() as cur:
                cur.execute("SET application_name = 'glific_bq_extract'")
                cur.execute(
                    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
            self._reader.commit()
        return self._reader

    def reset_reader(self) -> None:
        """Drop the extract connection (after an error left its transaction unusable)."""
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # already broken; a new one is opened on next use
                pass
            self._reader = None

    def close(self) -> None:
        self.reset_reader()
        self.control.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
