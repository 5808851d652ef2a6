"""The one query path: every BigQuery query and DML statement goes through here, with one retry
and deadline policy, so that no call can hang a run during an outage.

``CallPolicy`` bounds each call: a request that gets no answer is abandoned after
``request_timeout`` seconds and retried while retryable errors last, but never past ``deadline``
seconds in all (a write, which moves far more data: ``write_timeout``, five deadlines) (the client's own defaults are ten minutes of retries and, for jobs, twenty more
of job retries; a result with no timeout waits forever). A query job that fails is not restarted
within the call: the run fails, is recorded, and the next one tries again. A run facing a BigQuery outage then
fails, is recorded and backs off, instead of hanging while ticks pile up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from google.cloud import bigquery

if TYPE_CHECKING:
    from glific_bq.warehouse.dataset import Warehouse

#: Seconds a BigQuery call may take in all, retries included, unless configured otherwise.
DEADLINE_SECONDS = 60.0
#: Seconds one HTTP request may wait for an answer.
REQUEST_TIMEOUT_SECONDS = 30.0
#: Deadlines one write may take (an append stream, a load job's upload, the wait for the load
#: job): 300 s with the default deadline, since a page of 20,000 wide rows is a large upload and
#: a load job waits for BigQuery's shared slots. Still a multiple of the configured deadline, so
#: that a BigQuery that stops answering fails a write too, in bounded time.
WRITE_DEADLINES = 5


@dataclass(frozen=True)
class CallPolicy:
    """Retry and deadline of every BigQuery API call of one warehouse."""

    deadline: float = DEADLINE_SECONDS

    def __post_init__(self) -> None:
        if not self.deadline > 0:
            raise ValueError(f"a BigQuery deadline must be positive, got {self.deadline!r}")

    @property
    def retry(self):
        """Retries of one API request (get_table, jobs.insert, getQueryResults…)."""
        return bigquery.DEFAULT_RETRY.with_deadline(self.deadline)

    @property
    def request_timeout(self) -> float:
        return min(REQUEST_TIMEOUT_SECONDS, self.deadline)

    @property
    def write_timeout(self) -> float:
        """Seconds one write may take (``WRITE_DEADLINES`` deadlines)."""
        return WRITE_DEADLINES * self.deadline

    @property
    def calls(self) -> dict:
        """``retry`` and ``timeout`` keyword arguments for a client call."""
        return {"retry": self.retry, "timeout": self.request_timeout}


@dataclass(frozen=True)
class Completed:
    """A finished statement: its job (``num_dml_affected_rows``, ``total_bytes_processed``) and
    its rows, read page by page on iteration."""

    job: bigquery.QueryJob
    rows: bigquery.table.RowIterator


def run(warehouse: Warehouse, statement: str, params: Sequence = (), *, labels: dict[str, str] | None = None,
        page_size: int | None = None) -> Completed:
    """Run ``statement`` (a query or DML) with ``params`` (``bigquery`` query parameters) and wait
    for it within the warehouse's deadline (``warehouse.calls``)."""
    policy = warehouse.calls
    config = bigquery.QueryJobConfig(query_parameters=list(params), labels=labels or {})
    # job_retry=None: with a job retry, the client wraps job creation in a retry of its own
    # with a fixed ten-minute deadline. A job that fails fails the call; the run backs off.
    job = warehouse.client.query(statement, job_config=config, job_retry=None, **policy.calls)
    return Completed(job, job.result(retry=policy.retry, timeout=policy.deadline, page_size=page_size))


def rows(warehouse: Warehouse, statement: str, params: Sequence = ()) -> list[dict]:
    """``run`` and read every row, as dicts."""
    return [dict(row.items()) for row in run(warehouse, statement, params).rows]


def dml(warehouse: Warehouse, statement: str, params: Sequence = ()) -> int:
    """``run`` a DML statement; the rows it changed."""
    return int(run(warehouse, statement, params).job.num_dml_affected_rows or 0)


def query(warehouse: Warehouse, statement: str, **params: object) -> list[dict]:
    """Run a query with named scalar parameters (types from the Python values); rows as dicts."""
    return rows(warehouse, statement, [bigquery.ScalarQueryParameter(k, param_type(v), v) for k, v in params.items()])


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
