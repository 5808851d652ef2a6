"""The views' reference in ``docs/looker-studio.md``, generated from the definitions
(``python -m glific_bq.views docs/looker-studio.md``; a test keeps the page in sync)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from glific_bq.layouts import Layout
from glific_bq.registry import GLIFIC_TABLES, RAW_TABLES, TableSpec
from glific_bq.views.definitions import FLAT_FIELDS, latest_description, latest_view_name, reports_for

# -- documentation -----------------------------------------------------------------------------

DOCS_BEGIN = "<!-- BEGIN GENERATED: view reference (python -m glific_bq.views docs/looker-studio.md) -->"
DOCS_END = "<!-- END GENERATED: view reference -->"


#: What the generated docs say of each layout, before its views.
_LAYOUT_DOCS = {
    Layout.GLIFIC: (
        "### Glific layout (`GLIFIC_BQ_LAYOUT=glific`, the default)",
        "The tables keep Glific's names, columns and types; these views are added beside them. "
        "`flows_latest` holds every published revision once (the latest row per `(id, inserted_at)`); "
        "tags, flow_labels, stats and trackers, which Glific writes without `bq_uuid`/`bq_inserted_at`, "
        "take their newest `updated_at` per id.",
    ),
    Layout.RAW: (
        "### Raw layout (`GLIFIC_BQ_LAYOUT=raw`)",
        "Exact copies of the source tables: the reports join on ids.",
    ),
}


def reference_markdown() -> str:
    """The reference section of ``docs/looker-studio.md``: every view of both layouts, its
    description and columns (the same whatever layout is configured)."""
    lines: list[str] = []
    for layout, tables in ((Layout.GLIFIC, GLIFIC_TABLES), (Layout.RAW, RAW_TABLES)):
        title, intro = _LAYOUT_DOCS[layout]
        lines += [title, "", intro, ""]
        lines += _layout_reference(layout, tables)
    return "\n".join(lines).rstrip("\n")


def _layout_reference(layout: Layout, tables: Sequence[TableSpec]) -> list[str]:
    lines = [
        "#### `<table>_latest` (one per synced table)",
        "",
        latest_description("<table>").replace("<table>", "the table") + " Same columns as the table:",
        ", ".join(f"`{latest_view_name(t.name)}`" for t in tables) + ".",
        "",
    ]
    for view in reports_for(layout):
        lines += [
            f"#### `{view.name}`",
            "",
            view.description,
            "",
            "Reads: " + ", ".join(f"`{latest_view_name(t)}`" for t in view.reads) + ".",
            "",
            "| column | type | meaning |",
            "|---|---|---|",
            *(f"| `{c.name}` | {c.type} | {c.description.replace('|', '/')} |" for c in view.columns),
            "",
        ]
    if layout is Layout.GLIFIC:
        lines += [
            f"#### `{FLAT_FIELDS}` (procedure and view)",
            "",
            "Glific's procedure, created as Glific creates it: `CALL` it to (re)build the view `flat_fields`, one "
            "row per contact: `id`, `group_category` (the contact's group labels), one column per contact-field "
            "label (spaces and other signs become `_`), `inserted_at` and `last_updated_at` (first and last field "
            "change). Corrected: one row per contact (it reads `contacts_latest`), labels with quotes or signs no "
            "longer break it. Called once when the views are created; call it again after adding a field label.",
            "",
        ]
    return lines


def write_reference(path: Path) -> bool:
    """Rewrite the generated section of ``path``; True if it changed."""
    text = path.read_text()
    before, begin, rest = text.partition(DOCS_BEGIN)
    _, end, after = rest.partition(DOCS_END)
    if not begin or not end:
        raise ValueError(f"{path} lacks the markers {DOCS_BEGIN!r} … {DOCS_END!r}")
    new = f"{before}{DOCS_BEGIN}\n{reference_markdown()}\n{DOCS_END}{after}"
    if new != text:
        path.write_text(new)
    return new != text

