"""What goes wrong talking to BigQuery, as the callers see it."""

from __future__ import annotations


class WarehouseError(RuntimeError):
    """BigQuery refused or failed a write: nothing after the last confirmed batch counts as loaded."""


class SchemaDriftError(WarehouseError):
    """A source column changed in a way BigQuery cannot apply in place (for example text → integer)."""


class CredentialsError(WarehouseError):
    """An organization's BigQuery credentials are missing or invalid. Never carries their content."""
