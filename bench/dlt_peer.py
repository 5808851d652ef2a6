"""The peer for bench/bench_datapath.py: dlt's best configuration for a PostgreSQL table, run
by ``.bench-venv/bin/python`` (``bash bench/make_bench_venv.sh``), never by the project's venv.

``sql_table`` with the connectorx backend and ``return_type="arrow_stream"`` (record batches
streamed instead of one Arrow table), one organization's rows, to Parquet files on a local
filesystem destination: extract + normalize + load, as ``pipeline.run`` does them. Prints one
JSON line: rows, seconds, peak RSS.

Argument: a JSON object with ``url`` (libpq URL; a unix-socket ``host=`` is turned into the
form connectorx reads), ``organization_id``, ``chunk_size`` and ``workdir``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from urllib.parse import parse_qs, urlsplit


def connectorx_url(url: str) -> str:
    """``postgresql://user:@/db?host=/socket/dir`` as connectorx takes it (host in the netloc,
    percent-encoded)."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    user = parts.username or "postgres"
    from urllib.parse import quote

    return f"postgresql://{user}@{quote(host, safe='')}:{parts.port or 5432}{parts.path}"


def main() -> None:
    spec = json.loads(sys.argv[1])
    os.environ["DLT_DATA_DIR"] = os.path.join(spec["workdir"], "dlt_data")
    os.environ["DLT_PROJECT_DIR"] = spec["workdir"]
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["NORMALIZE__WORKERS"] = "1"
    import dlt
    from dlt.sources.sql_database import sql_table

    organization_id = int(spec["organization_id"])

    def one_organization(query, table):
        return query.where(table.c.organization_id == organization_id)

    started, cpu = time.perf_counter(), worker_cpu_seconds()
    resource_ = sql_table(
        credentials=spec["url"].replace("postgresql://", "postgresql+psycopg2://", 1),
        table="messages",
        backend="connectorx",
        backend_kwargs={"return_type": "arrow_stream", "conn": connectorx_url(spec["url"])},
        chunk_size=spec["chunk_size"],
        query_adapter_callback=one_organization,
        reflection_level="full",
    )
    pipeline = dlt.pipeline(
        pipeline_name="glific_bq_peer",
        destination=dlt.destinations.filesystem(bucket_url=os.path.join(spec["workdir"], "lake")),
        dataset_name="glific",
        pipelines_dir=os.path.join(spec["workdir"], "pipelines"),
    )
    info = pipeline.run(resource_, loader_file_format="parquet")
    seconds = time.perf_counter() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("messages", 0)
    info.raise_on_failed_jobs()
    print(json.dumps({"rows": rows, "seconds": seconds, "worker_cpu": worker_cpu_seconds() - cpu,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def worker_cpu_seconds() -> float:
    """User + system CPU of this process and its children."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


if __name__ == "__main__":
    main()
