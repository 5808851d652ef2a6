"""The one query path: every BigQuery query and DML statement goes through here, with the retry
and deadline policy, so that no call can hang a run during an outage."""

from __future__ import annotations

from datetime import datetime

from google.cloud import bigquery

#: API calls give up after a minute of retries (the client's default is ten): a run facing a
#: BigQuery outage fails, is recorded and backs off, instead of hanging while ticks pile up.
RETRY = bigquery.DEFAULT_RETRY.with_deadline(60)
TIMEOUT = 30


def query(client: bigquery.Client, statement: str, **params: object) -> list[dict]:
    """Run a query with named scalar parameters; rows as dicts (for checks and tests)."""
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter(k, param_type(v), v) for k, v in params.items()]
    )
    job = client.query(statement, job_config=config, retry=RETRY, timeout=TIMEOUT)
    return [dict(row.items()) for row in job.result(retry=RETRY)]


def param_type(value: object) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    return "STRING"
