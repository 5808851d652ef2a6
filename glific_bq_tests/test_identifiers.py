"""Names spliced into BigQuery SQL: one check, the same limits everywhere."""

from __future__ import annotations

import pytest

from glific_bq import identifiers


@pytest.mark.parametrize("name", ["messages", "_t", "a" * 1024, "Contacts_2"])
def test_table_names_bigquery_takes_pass(name):
    assert identifiers.checked_table(name) == name


@pytest.mark.parametrize("name", ["", "1st", "a" * 1025, "x`; DROP TABLE y; --", "a.b", "a b", "é", None, 7])
def test_names_that_could_break_out_of_a_quote_are_refused(name):
    with pytest.raises(ValueError, match="not a valid BigQuery table name"):
        identifiers.checked_table(name)


def test_columns_stop_at_bigquerys_300_characters():
    assert identifiers.is_column("c" * 300) and not identifiers.is_column("c" * 301)


@pytest.mark.parametrize("ref", ["p.d", "example.com:my-project.glific_1", "my-project.123"])
def test_dataset_refs_with_domain_scoped_projects_pass(ref):
    assert identifiers.checked_dataset_ref(ref) == ref


@pytest.mark.parametrize("ref", ["d", "p.d-x", "p`.d", ".d", "p.d;"])
def test_broken_dataset_refs_are_refused(ref):
    with pytest.raises(ValueError, match="project.dataset"):
        identifiers.checked_dataset_ref(ref)
