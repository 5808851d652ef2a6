"""What reading rows costs, per value, on bench/bench_datapath.py's table (2M Glific messages of
one organization, generated there): the figures behind the extract's design.

* ADBC's decoding of the binary COPY (``glific_bq.source.ExtractConnection``, batches dropped),
  our process's CPU per million rows: ``SELECT *``, the same with 16 constant NULL text columns
  and with 8 more int8 columns (why the extract reads no NULLs and no column twice), ``SELECT id``;
* the source's CPU for a server-side ``COPY … TO '/dev/null'`` of ``SELECT *`` in binary, CSV
  and text format (why the extract does not read text COPY through Arrow's CSV reader);
* writing the backfill's Parquet file: 200,000 rows prepared as the sync prepares them (Glific
  layout), written with each codec and option, CPU and size per million rows (why
  ``writes.PARQUET_OPTIONS``).

Run: ``.venv/bin/python bench/bench_decode.py [--repeat 2]`` (it generates bench_datapath.py's table
when missing: ``--rows``, default 2M). Smoke size: ``--rows 3000 --repeat 1 --data-dir DIR``.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_datapath import _PLAIN, DATA_DIR, backend_cpu_seconds, ensure_data, start_server  # noqa: E402


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant; the least CPU is reported")
    parser.add_argument("--rows", type=int, default=2_000_000, help="messages of organization 1 (bench_datapath's)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="PostgreSQL's data directory (bench_datapath's)")
    args = parser.parse_args()
    import psycopg

    from glific_bq.source import Source

    nulls = ", ".join(f"NULL::text AS n{i}" for i in range(16))
    ints = ", ".join(f"t.contact_id AS k{i}" for i in range(8))
    decodes = {
        "SELECT *": _PLAIN,
        "SELECT *, 16 NULL text columns": _PLAIN.replace("SELECT *", f"SELECT *, {nulls}"),
        "SELECT *, 8 more int8 columns": _PLAIN.replace("SELECT *", f"SELECT *, {ints}"),
        "SELECT id": _PLAIN.replace("SELECT *", "SELECT t.id"),
    }
    server, url = start_server(args.data_dir)
    try:
        ensure_data(url, args.rows)
        with Source(url) as source:
            reader = source.reader
            print("ADBC decoding (our CPU s per M rows):")
            for name, query in decodes.items():
                best = None
                for _ in range(args.repeat):
                    before, rows = own_cpu(), 0
                    with reader.cursor() as cur:
                        cur.execute(query)
                        for batch in cur.fetch_record_batch():
                            rows += batch.num_rows
                    reader.commit()
                    spent = (own_cpu() - before) / rows * 1e6
                    best = spent if best is None else min(best, spent)
                print(f"  {name:<34}{best:6.2f}")
        with psycopg.connect(url) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            print("server-side COPY SELECT * TO '/dev/null' (source CPU s per M rows):")
            for fmt in ("binary", "csv", "text"):
                best = None
                for _ in range(args.repeat):
                    before = backend_cpu_seconds(pid)
                    rows = conn.execute(f"COPY ({_PLAIN}) TO '/dev/null' (FORMAT {fmt})").rowcount
                    spent = (backend_cpu_seconds(pid) - before) / rows * 1e6
                    best = spent if best is None else min(best, spent)
                print(f"  {fmt:<34}{best:6.2f}")
        parquet(url, args.repeat, min(200_000, args.rows))
    finally:
        server.cleanup()


def parquet(url: str, repeat: int, rows: int) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.bench_datapath import ORGANIZATION, TIMEZONE, _shape
    from glific_bq import extract
    from glific_bq.layouts.rows import prepare
    from glific_bq.source import Source
    from glific_bq.warehouse import writes

    with Source(url) as source:
        shape = _shape(source.control, "glific")
        query = extract.build_query(shape, extract.Pass.INSERT)
        tables = []
        for page in extract.pages(source.reader, query, extract.Pass.INSERT, organization_id=ORGANIZATION,
                                  timezone=TIMEZONE, id_bound=0, page_rows=20_000, max_rows=rows,
                                  export_snapshot=True):
            rows, _ = prepare(page.rows, shape, TIMEZONE, source.joiner, page.snapshot, ORGANIZATION)
            tables.append(pa.Table.from_batches(writes.arrow_batches(rows, shape.schema)))
        source.reader.commit()
    count = sum(t.num_rows for t in tables)
    variants = {
        "snappy (Arrow's default)": {"compression": "snappy"},
        "zstd": {"compression": "zstd"},
        "zstd, no dictionary, no statistics": {"compression": "zstd", "use_dictionary": False,
                                               "write_statistics": False},
        "writes.PARQUET_OPTIONS": writes.PARQUET_OPTIONS,
    }
    print(f"Parquet, {count:,} prepared Glific messages (CPU s and MB per M rows):")
    for name, options in variants.items():
        best = None
        for _ in range(repeat):
            buffer, before = io.BytesIO(), own_cpu()
            with pq.ParquetWriter(buffer, tables[0].schema, **options) as writer:
                for table in tables:
                    writer.write_table(table)
            spent = (own_cpu() - before) / count * 1e6
            best = spent if best is None else min(best, spent)
        print(f"  {name:<34}{best:6.2f} s {buffer.tell() / count * 1e6 / 2**20:6.1f} MB")


if __name__ == "__main__":
    main()
