"""glific_bq: keep a multi-tenant Glific PostgreSQL database in sync with BigQuery.

The sync logic (this package, except ``glific_bq.defs`` and ``glific_bq.definitions``) is plain
Python that knows nothing of Dagster; the Dagster layer is a thin shell over it.
"""
