"""The embedded local stack: PostgreSQL (pgserver), the BigQuery emulator, sample data, the demo."""
