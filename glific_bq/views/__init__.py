"""BigQuery views over a tenant's synced tables: the exact latest state, and reports for Looker Studio.

The BigQuery dialect of views lives here, and only here. Two kinds:

- ``<table>_latest``, one per synced table: exactly one row per id, its newest version, with the
  table's own columns. The sync appends every change as a new row version and the dedup pass
  deletes older versions only every 90 minutes, so ``SELECT * FROM messages`` shows an edited
  message two or three times in between; ``messages_latest`` never does. The newest version is
  chosen by the dedup's own total order (``dedup.NEWEST_FIRST``: send time, then ``bq_uuid``), so the
  view and the dedup always agree on which version survives — including on ties of
  ``updated_at``, which Glific's ``ORDER BY updated_at DESC`` left ambiguous (glific#1750, #2093).
- Report views, which read only ``_latest`` views: ``contacts_messages``,
  ``daily_message_counts``, ``flow_results_answers``, ``contact_growth``,
  ``message_delivery_failures``, over each layout's own columns (``RAW_REPORTS``,
  ``GLIFIC_REPORTS``; ``reports_for(layout)``; ``REPORTS`` is the configured layout's).

**The Glific layout.** The ``_latest`` views cover Glific's tables: ``flows_latest`` holds the
latest row per ``(id, inserted_at)``, i.e. every published revision of every flow once (the
dedup's ``version_key``; the current revision of a flow is its latest ``inserted_at``); tags,
flow_labels, stats and trackers, which Glific writes without send columns, take their newest
``updated_at`` per id. ``contacts_messages`` is Glific's own view (its SQL, its columns) over the
latest versions, so one row per message, where Glific's view repeats a message once per stored
version of the message and of its contact. Glific's ``flat_fields`` procedure is created as
Glific creates it, over ``contacts_latest``, with its labels quoted, and called once so that the
``flat_fields`` view exists (``CALL `<dataset>.flat_fields`()`` rebuilds it with new labels).
No timezone conversion anywhere: every DATETIME is already the organization's local time.

**Single source.** Each report's SQL, description and column docs are one ``ReportView`` value:
the description and column docs become the view's BigQuery description and column descriptions,
and ``reference_markdown()`` renders the same values into ``docs/looker-studio.md``
(``python -m glific_bq.views docs/looker-studio.md`` rewrites that section; a test checks it).

**Local times.** Timestamps arrive as DATETIME in the organization's local timezone (see
``glific_bq.schema``), so ``DATE(inserted_at)`` is the organization's local day: no timezone
appears in any view.

**JSON.** json/jsonb columns are STRING holding JSON text. The reports parse them once with
``SAFE.PARSE_JSON`` (invalid text gives NULL rather than failing the whole query;
``wide_number_mode => 'round'`` keeps numbers beyond FLOAT64 precision from failing it) and read
fields with ``JSON_VALUE`` and literal paths. Flow answers have keys that vary by flow, so they are
flattened with ``JSON_KEYS(json, 1)`` and the JSON subscript operator ``results[key]``: BigQuery
accepts only literal JSONPaths in ``JSON_VALUE``/``JSON_EXTRACT_SCALAR``, so building a path with
``CONCAT('$.', key, '.input')`` — which the local emulator happens to accept — fails on BigQuery.
Emulator quirk: ``SAFE.PARSE_JSON(x)[key]`` is mistranslated there, hence the parse in a CTE first.

**Safety.** Identifiers are validated (project, dataset, table names) and quoted; descriptions are
fixed text of this module, written as escaped string literals. No value is spliced into SQL.
"""

from glific_bq.views.create import CreatedViews, _string_literal, create_views, latest_sql_for, view_ddl
from glific_bq.views.definitions import (
    FLAT_FIELDS,
    FLAT_FIELDS_PROCEDURE,
    GLIFIC_REPORTS,
    LATEST_SUFFIX,
    LATEST_VIEW,
    RAW_REPORTS,
    REPORTS,
    ReportView,
    ViewColumn,
    code_version,
    latest_code_version,
    latest_description,
    latest_sql,
    latest_view_name,
    report_code_version,
    reports_for,
)
from glific_bq.views.docs import DOCS_BEGIN, DOCS_END, reference_markdown, write_reference

__all__ = [
    "DOCS_BEGIN", "DOCS_END", "FLAT_FIELDS", "FLAT_FIELDS_PROCEDURE", "GLIFIC_REPORTS", "LATEST_SUFFIX",
    "LATEST_VIEW", "RAW_REPORTS", "REPORTS", "CreatedViews", "ReportView", "ViewColumn", "_string_literal",
    "code_version", "create_views", "latest_code_version", "latest_description", "latest_sql", "latest_sql_for",
    "latest_view_name", "reference_markdown", "report_code_version", "reports_for", "view_ddl", "write_reference",
]
