"""What an export wrote, and why it could not go on: ``ExportResult`` (the manifest's content),
``ExportedFile``, ``ExportError``."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date

log = logging.getLogger(__name__)

class ExportError(RuntimeError):
    """An export that cannot go on (bad options, a table without ids, rows of another tenant)."""


@dataclass(frozen=True)
class ExportedFile:
    """One table in one written file. The xlsx workbook holds every table: one entry per table,
    all with the workbook's ``uri``, and ``sheets`` naming the table's sheets."""

    table: str
    format: str
    uri: str  # local path or gs:// URI
    rows: int
    sheets: tuple[str, ...] = ()
    truncated_cells: int = 0  # xlsx cells cut to Excel's limit (see TRUNCATION_MARKER)


@dataclass
class ExportResult:
    """What one export wrote, and what it did not."""

    organization_id: int
    dataset: str
    location: str  # the export's folder: a local path or gs:// URI
    formats: tuple[str, ...]
    date_from: date | None = None
    date_to: date | None = None
    files: list[ExportedFile] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows exported
    whole_tables: list[str] = field(default_factory=list)  # no inserted_at: the date range did not apply
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it was not exported
    manifest: str | None = None
    seconds: float = 0.0

    @property
    def truncated_cells(self) -> int:
        return sum(f.truncated_cells for f in self.files)

    def as_dict(self) -> dict:
        """JSON-friendly: the manifest's content."""
        data = asdict(self)
        data["date_from"] = self.date_from and self.date_from.isoformat()
        data["date_to"] = self.date_to and self.date_to.isoformat()
        data["truncated_cells"] = self.truncated_cells
        data["seconds"] = round(self.seconds, 3)
        return data

    def as_markdown(self) -> str:
        """The files with their row counts, as a markdown table."""
        lines = ["| table | format | rows | file |", "|---|---|---:|---|"]
        for f in self.files:
            where = f.uri + (f" ({', '.join(f.sheets)})" if f.sheets else "")
            note = f"; {f.truncated_cells} cells truncated" if f.truncated_cells else ""
            lines.append(f"| {f.table} | {f.format} | {f.rows:,}{note} | {where} |")
        lines += [f"| {t} | — | — | skipped: {why} |" for t, why in self.skipped.items()]
        return "\n".join(lines)
