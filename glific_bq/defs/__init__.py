"""The Dagster layer: a thin shell over the plain-Python sync in ``glific_bq``."""
