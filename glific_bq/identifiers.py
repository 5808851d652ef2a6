"""BigQuery identifiers: the one check every name spliced into SQL passes first (values are
always bound as parameters; names cannot be, so they are validated, then quoted).

We accept a conservative subset of what BigQuery allows, so that no name can end a quoted
identifier or string:

- tables (and views): a letter or underscore, then letters, digits, underscores; at most 1,024
  characters (BigQuery's limit);
- columns: the same, at most 300 characters (BigQuery's limit; ``schema.bigquery_column_name``
  maps any other source column name to one of these);
- datasets: letters, digits, underscores, 1 to 1,024 characters (BigQuery's rule);
- projects: letters, digits, ``.``, ``:``, ``_``, ``-`` (domain-scoped ids like
  ``example.com:project`` included), at most 251 characters.
"""

from __future__ import annotations

import re

TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,250}$")


def is_table(name: object) -> bool:
    return isinstance(name, str) and TABLE.match(name) is not None


def is_column(name: object) -> bool:
    return isinstance(name, str) and COLUMN.match(name) is not None


def is_dataset(name: object) -> bool:
    return isinstance(name, str) and DATASET.match(name) is not None


def is_project(name: object) -> bool:
    return isinstance(name, str) and PROJECT.match(name) is not None


def checked_table(name: object) -> str:
    """``name`` if it is a table name we splice into SQL; a clear error otherwise."""
    if not is_table(name):
        raise ValueError(f"not a valid BigQuery table name: {name!r}")
    return name


def checked_dataset_ref(dataset_ref: str) -> str:
    """``project.dataset`` if both parts are valid; a clear error otherwise."""
    project, _, dataset = dataset_ref.rpartition(".")
    if not PROJECT.match(project) or not is_dataset(dataset):
        raise ValueError(f"not a valid BigQuery project.dataset: {dataset_ref!r}")
    return dataset_ref
