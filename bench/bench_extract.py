"""Rows/s and peak memory of glific_bq's extract path against binary COPY, on a large Glific-like
``messages`` table in an embedded PostgreSQL (pgserver).

Scenarios (``--layout``), ``--tenants`` organizations (20 by default):

* ``heavy`` (default): one tenant-heavy backlog. Organization 1 owns ``--rows`` messages
  (2,000,000 by default); the other organizations own another 5% between them, their ids
  interleaved with organization 1's (one row in 21). Every variant reads ALL of organization
  1's rows: its insert pass from ``id > 0``, one backlog of ``--rows`` rows.
* ``interleaved``: ``--rows`` messages spread round-robin over the organizations, so each
  tenant's rows are scattered over the whole heap and each tenant's scan touches every heap
  page. Every variant reads ALL rows: the insert pass of every organization, one after the
  other, in one process.

Variants, each in its own fresh subprocess so that its peak RSS (``ru_maxrss``) is its own:

* ``copy (ceiling)``: ``COPY (<the insert-pass SELECT, same columns and casts, no LIMIT>) TO
  STDOUT (FORMAT binary)`` through psycopg, raw blocks counted and dropped;
* ``extract``: ``extract.pages`` over the ADBC reader of ``source.Source``, with the query of
  ``extract.build_query`` and the catalog columns, in rounds of ``SyncOptions().round_rows``
  as ``sync`` runs them, rows dropped;
* ``extract+serialize``: the same, and per page what ``sync``/``Warehouse.append`` do before
  the network: drop the cursor column, the tenant check, ``warehouse.stamp``, and
  ``protorows.serialize`` of every record batch (the page's serialized rows are held until the
  page is done, as ``Warehouse._storage_write`` holds them);
* ``+requests`` (default page size only): also builds the ``AppendRowsRequest`` objects
  ``Warehouse._storage_write`` builds (8 MB chunks), still without sending.

``--what-if`` adds bench-only alternatives behind the findings (``WI`` rows): the same pages
with the values inlined as literals, so that ADBC streams them through COPY instead of a
prepared statement; requests built on the raw protobuf classes; a one-page prefetch thread.
They change nothing in ``glific_bq``.

The timings are wall-clock on whatever else the machine runs: each variant is run
``--repeat`` times (2 by default) in alternating rounds and the fastest run is reported.

The data directory is ``.local/bench_pg`` (git-ignored); the table is reused when it already
holds the requested rows, tenants and layout.

Run: ``.venv/bin/python bench/bench_extract.py [--rows 2000000] [--tenants 20] [--layout heavy]
[--page-rows 10000 50000 100000] [--repeat 2] [--what-if] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".local" / "bench_pg"
DATABASE = "glific_bench"
CONTACTS_PER_ORG = 200
FLOWS_PER_ORG = 5
MEDIA_PER_ORG = 100
DATA_VERSION = 1  # bump when the generated data changes, to regenerate


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_split_mb() -> dict:
    """Current anonymous and file-backed (shared libraries) resident memory, from /proc."""
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            status[key] = int(value.split()[0]) / 1024
    return status


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _bodies() -> tuple[list[str], list[str], list[str]]:
    """Message bodies of varied length and script: Glific's short replies, templates, long texts."""
    from glific_bq.local import sample_data as sd

    short = [t for lang in sd._TEXT.values() for t in lang["inbound"]]
    templates = [t for lang in sd._TEXT.values() for t in lang["outbound"]]
    edge = list(sd._EDGE_TEXTS)
    hsm = [
        "Dear parent, your child's weekly report is ready 📊. Attendance: 4/5 days, quiz score 8/10. "
        "Reply 1 to see details, 2 to talk to a teacher, STOP to unsubscribe.",
        "नमस्ते! आपका प्रमाणपत्र तैयार है ✅। कृपया नीचे दिए गए लिंक से डाउनलोड करें और अपने दोस्तों के साथ साझा करें। "
        "किसी भी सहायता के लिए 'मदद' लिखें।",
        "Habari! Kliniki ya watoto itafunguliwa Jumamosi saa 2 asubuhi hadi saa 10 jioni 🏥. Tafadhali "
        "leta kadi ya chanjo ya mtoto wako. Jibu NDIYO kuthibitisha.",
        "Olá! Sua próxima aula é amanhã às 10h ☀️. Não se esqueça de revisar o capítulo 3 — "
        "frações e porcentagens. Responda 1 para confirmar presença ou 2 para remarcar.",
    ]
    long = [(hsm[0] + " ") * 6, (hsm[1] + " ") * 5, (templates[0] + " लंबा संदेश 📚 ") * 40]
    huge = [("Bulk notice / सूचना / Taarifa 📢 " * 180)[:5000]]
    # weights: ~55% short replies, 25% templates, 10% edge texts, 8% HSM, 1.8% long, 0.2% huge
    weighted = short * 11 + templates * 10 + edge * 5 + hsm * 15
    return weighted, long, huge


def ensure_data(url: str, rows: int, tenants: int, layout: str) -> tuple[bool, float]:
    """Create the Glific schema and the messages of ``layout`` unless the database already holds
    exactly that. Returns (generated, seconds)."""
    import psycopg

    from glific_bq import watermarks
    from glific_bq.local.sample_data import _TIMEZONES, create_schema

    wanted = {"rows": rows, "tenants": tenants, "layout": layout, "version": DATA_VERSION}
    if layout == "heavy" and tenants > 1:  # one row in 21 belongs to organizations 2..tenants
        total = rows + rows // 20
        org_expr = f"CASE WHEN i %% 21 = 0 THEN 2 + (i / 21) %% {tenants - 1} ELSE 1 END"
    else:
        total = rows
        org_expr = f"1 + (i - 1) %% {tenants}"
    with psycopg.connect(url, autocommit=True) as conn:
        create_schema(conn)
        watermarks.ensure_table(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (meta jsonb NOT NULL)")
        have = conn.execute("SELECT meta FROM bench_meta").fetchone()
        if have and have[0] == wanted:
            return False, 0.0
        started = time.perf_counter()
        print(f"generating {total:,} messages over {tenants} organizations ({layout}) ...", flush=True)
        weighted, long, huge = _bodies()
        with conn.transaction():
            conn.execute("TRUNCATE organizations, bench_meta CASCADE")
            # Bulk load: no FK triggers (the data is generated consistent) and no secondary
            # indexes while inserting; create_schema re-creates the indexes afterwards.
            conn.execute("SET LOCAL session_replication_role = replica")
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'messages' AND indexname <> 'messages_pkey'"
            ).fetchall():
                conn.execute(f'DROP INDEX "{name}"')
            conn.execute(
                """INSERT INTO organizations (id, name, shortcode, email, timezone, inserted_at, updated_at)
                   SELECT o, 'Org ' || o, 'org' || o, 'org' || o || '@example.org',
                          (%(tz)s::text[])[1 + (o - 1) %% cardinality(%(tz)s::text[])],
                          '2024-01-01', '2024-01-01'
                   FROM generate_series(1, %(t)s) o""",
                {"tz": list(_TIMEZONES), "t": tenants},
            )
            conn.execute(
                """INSERT INTO contacts (id, name, phone, organization_id, inserted_at, updated_at, fields)
                   SELECT (o - 1) * %(c)s + k, 'Contact ' || k || ' 😀', (919800000000 + k)::text, o,
                          '2024-01-01', '2024-01-01',
                          jsonb_build_object('district', jsonb_build_object('value', 'Pune', 'label', 'District'))
                   FROM generate_series(1, %(t)s) o, generate_series(1, %(c)s) k""",
                {"t": tenants, "c": CONTACTS_PER_ORG},
            )
            conn.execute(
                """INSERT INTO flows (id, name, uuid, keywords, organization_id, inserted_at, updated_at)
                   SELECT (o - 1) * %(f)s + k, 'Flow ' || k, gen_random_uuid(), ARRAY['start', 'जुड़ें'], o,
                          '2024-01-01', '2024-01-01'
                   FROM generate_series(1, %(t)s) o, generate_series(1, %(f)s) k""",
                {"t": tenants, "f": FLOWS_PER_ORG},
            )
            conn.execute(
                """INSERT INTO messages_media (id, url, source_url, caption, content_type, flow, organization_id,
                                               inserted_at, updated_at)
                   SELECT (o - 1) * %(m)s + k, 'https://filemanager.gupshup.io/wa/' || md5(k::text),
                          'https://storage.googleapis.com/org' || o || '/' || k || '.jpg', 'Photo 📷 ' || k,
                          'image/jpeg', 'inbound', o, '2024-01-01', '2024-01-01'
                   FROM generate_series(1, %(t)s) o, generate_series(1, %(m)s) k""",
                {"t": tenants, "m": MEDIA_PER_ORG},
            )
            conn.execute("SELECT setseed(0.42)")
            conn.execute(_MESSAGES_INSERT.replace("{org}", org_expr), {
                "n": total, "t": tenants, "c": CONTACTS_PER_ORG, "f": FLOWS_PER_ORG, "m": MEDIA_PER_ORG,
                "bodies": weighted, "long": long, "huge": huge,
            })
            for table in ("organizations", "contacts", "flows", "messages_media", "messages"):
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            conn.execute("INSERT INTO bench_meta VALUES (%s)", (psycopg.types.json.Jsonb(wanted),))
        create_schema(conn)  # the secondary indexes, as Glific has them
        conn.execute("VACUUM (ANALYZE, FREEZE) messages")  # hint bits and visibility map set once, now
        conn.execute("CHECKPOINT")
        return True, time.perf_counter() - started


# One INSERT ... SELECT over generate_series. r1..r8 are independent uniforms per row.
_MESSAGES_INSERT = """
WITH src AS (
  SELECT i, {org} AS org, (i - 1) / %(t)s AS n,
         random() AS r1, random() AS r2, random() AS r3, random() AS r4,
         random() AS r5, random() AS r6, random() AS r7, random() AS r8
  FROM generate_series(1, %(n)s) i
), typed AS (
  SELECT *,
    (CASE WHEN r1 < 0.76 THEN 'text' WHEN r1 < 0.83 THEN 'image' WHEN r1 < 0.87 THEN 'audio'
          WHEN r1 < 0.90 THEN 'video' WHEN r1 < 0.93 THEN 'document' WHEN r1 < 0.95 THEN 'location'
          WHEN r1 < 0.98 THEN 'quick_reply' WHEN r1 < 0.99 THEN 'list' ELSE 'sticker' END)::message_type_enum AS mtype,
    (CASE WHEN r2 < 0.45 THEN 'inbound' ELSE 'outbound' END)::message_flow_enum AS mflow,
    timestamp '2024-01-01' + (i * 2.6) * interval '1 second' AS at
  FROM src
)
INSERT INTO messages (id, uuid, body, type, flow, status, bsp_message_id, bsp_status, errors, message_number,
  sender_id, receiver_id, contact_id, user_id, flow_id, media_id, is_hsm, template_id, interactive_template_id,
  interactive_content, send_at, sent_at, context_id, context_message_id, group_id, flow_label, is_read,
  organization_id, inserted_at, updated_at)
SELECT
  i,
  CASE WHEN r8 < 0.97 THEN gen_random_uuid() END,
  CASE
    WHEN mtype IN ('image', 'audio', 'video', 'document', 'sticker') THEN
      CASE WHEN r3 < 0.4 THEN NULL WHEN r3 < 0.5 THEN '' ELSE 'Photo 📷 caption ' || i END
    WHEN mtype = 'location' THEN '{"latitude": 18.52, "longitude": 73.85}'
    WHEN r3 < 0.002 THEN (%(huge)s::text[])[1]
    WHEN r3 < 0.02 THEN (%(long)s::text[])[1 + floor(r4 * cardinality(%(long)s::text[]))::int]
    ELSE (%(bodies)s::text[])[1 + floor(r4 * cardinality(%(bodies)s::text[]))::int]
  END,
  mtype,
  mflow,
  (CASE WHEN mflow = 'inbound' THEN 'received'
        ELSE (ARRAY['sent', 'delivered', 'read', 'read', 'read', 'error', 'enqueued'])[1 + floor(r5 * 7)::int] END
  )::message_status_enum,
  CASE WHEN r6 < 0.9 THEN 'wamid.HBgM' || upper(substr(md5(i::text), 1, 24)) END,
  CASE WHEN r6 < 0.9 THEN (ARRAY['sent', 'delivered', 'read', 'received', 'enqueued'])[1 + floor(r5 * 5)::int]::message_status_enum END,
  CASE
    WHEN r7 < 0.05 THEN jsonb_build_object(
      'message', (ARRAY['Message failed to send because more than 24 hours have passed since the customer last replied to this number.',
                        'Re-engagement message', 'नंबर अमान्य है', 'Rate limit hit'])[1 + floor(r8 * 4)::int],
      'code', (ARRAY[131047, 470, 1006, 130429])[1 + floor(r8 * 4)::int],
      'payload', jsonb_build_object('id', i, 'retries', floor(r6 * 3)::int, 'at', to_char(timestamp '2024-01-01' + i * interval '2.6 second', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
    WHEN r7 < 0.06 THEN NULL
    ELSE '{}'::jsonb
  END,
  n,
  CASE WHEN mflow = 'inbound' THEN (org - 1) * %(c)s + 2 + floor(r4 * (%(c)s - 1))::int ELSE (org - 1) * %(c)s + 1 END,
  CASE WHEN mflow = 'inbound' THEN (org - 1) * %(c)s + 1 ELSE (org - 1) * %(c)s + 2 + floor(r4 * (%(c)s - 1))::int END,
  (org - 1) * %(c)s + 2 + floor(r4 * (%(c)s - 1))::int,
  CASE WHEN mflow = 'outbound' AND r6 < 0.2 THEN 1 + floor(r7 * 50)::int END,
  CASE WHEN r2 > 0.6 THEN (org - 1) * %(f)s + 1 + floor(r8 * %(f)s)::int END,
  CASE WHEN mtype IN ('image', 'audio', 'video', 'document', 'sticker') THEN (org - 1) * %(m)s + 1 + floor(r6 * %(m)s)::int END,
  mflow = 'outbound' AND r5 < 0.15,
  CASE WHEN mflow = 'outbound' AND r5 < 0.15 THEN 1 + floor(r7 * 30)::int END,
  CASE WHEN mtype IN ('quick_reply', 'list') THEN 1 + floor(r7 * 20)::int END,
  CASE
    WHEN mtype = 'quick_reply' THEN jsonb_build_object('type', 'quick_reply',
      'content', jsonb_build_object('type', 'text', 'text', 'Choose an option / विकल्प चुनें 👇', 'header', NULL),
      'options', jsonb_build_array(jsonb_build_object('type', 'text', 'title', 'Yes ✅'),
                                   jsonb_build_object('type', 'text', 'title', 'No / ❌')))
    WHEN mtype = 'list' THEN jsonb_build_object('type', 'list', 'title', 'Menu 📋', 'body', 'Choose a topic',
      'items', jsonb_build_array(jsonb_build_object('title', 'Section "A"', 'options',
        jsonb_build_array(jsonb_build_object('title', 'Pune', 'description', 'Pune \\ info')))))
    ELSE '{}'::jsonb
  END,
  CASE WHEN mflow = 'outbound' AND r8 < 0.05 THEN date_trunc('second', at + interval '1 hour') END,
  CASE WHEN mflow = 'outbound' THEN date_trunc('second', at + interval '2 second') END,
  CASE WHEN mflow = 'inbound' AND r6 < 0.1 THEN 'wamid.HBgM' || upper(substr(md5((i - 1)::text), 1, 24)) END,
  CASE WHEN mflow = 'inbound' AND r6 < 0.1 AND i > %(t)s THEN i - %(t)s END,
  CASE WHEN r7 > 0.97 THEN 1 + floor(r5 * 8)::int END,
  CASE WHEN r2 > 0.6 THEN (ARRAY['registration', 'quiz', 'feedback', 'help, other'])[1 + floor(r3 * 4)::int] END,
  r5 < 0.7,
  org,
  date_trunc('second', at),
  date_trunc('second', at + floor(r7 * 600) * interval '1 second')
FROM typed
"""


# ---------------------------------------------------------------------------------------------
# Variants (each runs in a child process)
# ---------------------------------------------------------------------------------------------


def _organizations(url: str, ids: list[int]) -> list[tuple[int, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, timezone FROM organizations WHERE id = ANY(%s) ORDER BY id", (ids,)).fetchall()


def _columns(conn):
    from glific_bq.schema import reflect_columns, syncable_columns

    columns, _ = syncable_columns(reflect_columns(conn, "messages"), "messages")
    return columns


def run_copy(url: str, orgs: list[int], plain: bool = False) -> dict:
    """The ceiling: binary COPY of the insert-pass SELECT (same columns and casts, no LIMIT).

    ``plain`` (what-if): the same columns without any cast or timezone conversion, i.e. the
    server's cost of reading the rows alone."""
    import psycopg

    from glific_bq import extract, registry

    with psycopg.connect(url, autocommit=True) as conn:
        columns = _columns(conn)
        query = extract.build_query(registry.table("messages"), columns, extract.Pass.INSERT)
        if plain:
            query = ("SELECT " + ", ".join(f'"{c.name}"' for c in columns) + f', "updated_at" AS "{extract.CURSOR_COLUMN}"'
                     " FROM messages WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3::bigint")
        base_rss = peak_rss_mb()
        base_split = rss_split_mb()
        rows = nbytes = 0
        started = time.perf_counter()
        for org, tz in _organizations(url, orgs):
            statement = query.replace("$1", str(int(org))).replace("$2", "0").replace(" LIMIT $3::bigint", "")
            with conn.transaction(), conn.cursor() as cur:
                # the same values the project binds (extract.bind), set the same way
                cur.execute(
                    "SELECT set_config('glific_bq.organization_id', %s, true), set_config('glific_bq.id_bound', '0', true), "
                    "set_config('glific_bq.limit', %s, true), set_config('glific_bq.timezone', %s, true)",
                    (str(int(org)), str(2**62), tz),
                )
                with cur.copy(f"COPY ({statement}) TO STDOUT (FORMAT binary)") as copy:
                    for block in copy:
                        nbytes += len(block)
                rows += cur.rowcount
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "base_rss_mb": base_rss, "base_split": base_split, "bytes": nbytes}


def literal_pages(reader, query: str, *, organization_id: int, timezone: str, id_bound: int, page_rows: int,
                  max_rows: int | None = None):
    """What-if: ``extract.pages`` (insert pass) with the values inlined as literals instead of bound.

    Without bound parameters the ADBC PostgreSQL driver runs the query as ``COPY ... TO STDOUT
    (FORMAT binary)`` and converts to Arrow while rows arrive; with parameters it executes a
    prepared statement, buffers the whole result in libpq, then converts. The values are an
    int, an int, an int and a timezone quoted by psycopg: nothing is spliced unquoted. The page
    is released before the next query (``extract.pages`` holds it through the next fetch).
    """
    from psycopg import sql

    from glific_bq.extract import CURSOR_COLUMN, Page

    tz = sql.Literal(timezone).as_string(None)
    read = 0
    while max_rows is None or read < max_rows:
        limit = page_rows if max_rows is None else min(page_rows, max_rows - read)
        statement = (query.replace("$1", str(int(organization_id))).replace("$2", str(int(id_bound)))
                     .replace("$3", str(int(limit))).replace("$4", tz))
        with reader.cursor() as cur:
            cur.execute(statement)
            rows = cur.fetch_arrow_table()
        n = rows.num_rows
        if n == 0:
            return
        id_bound = rows.column("id")[-1].as_py()
        last_ts = rows.column(CURSOR_COLUMN)[-1].as_py()
        read += n
        page = Page(rows, id_bound, (last_ts, id_bound) if last_ts is not None else None)
        del rows
        yield page
        del page
        if n < limit:
            return


def _prefetched(pages, timings: dict):
    """Run ``pages`` one page ahead in a thread, so that the database and the client work at once."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=1)
    done = object()

    def produce():
        try:
            for page in pages:
                q.put(page)
            q.put(done)
        except BaseException as error:  # hand it to the consumer
            q.put(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while True:
        mark = time.perf_counter()
        item = q.get()
        timings["fetch"] += time.perf_counter() - mark
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
        del item
    thread.join()


def run_pages(url: str, orgs: list[int], page_rows: int, work: str, *, literal: bool = False,
              prefetch: bool = False) -> dict:
    """glific_bq's extract, and ``work`` on each page: ``none``; ``serialize`` (drop the cursor,
    tenant check, stamp, protorows.serialize); ``requests`` (also the AppendRowsRequests as
    Warehouse._storage_write builds them); ``requests_pb`` (what-if: the same requests built
    on the raw protobuf classes). ``literal``/``prefetch``: what-if extract variants."""
    from glific_bq import extract, protorows, registry
    from glific_bq.extract import CURSOR_COLUMN, Pass
    from glific_bq.schema import bigquery_schema
    from glific_bq.source import Source
    from glific_bq.sync import SyncOptions, _check_tenant
    from glific_bq.warehouse.writes import _chunks, _proto_request, stamp

    if work in ("requests", "requests_pb"):
        from google.cloud.bigquery_storage_v1 import types

    stream = "projects/p/datasets/glific_1/tables/messages/streams/_default"
    options = SyncOptions(page_rows=page_rows)
    spec = registry.table("messages")
    timings = {"fetch": 0.0, "stamp": 0.0, "serialize": 0.0, "requests": 0.0}
    rows = nbytes = pages_read = 0
    with Source(url) as source:
        reader = source.reader
        columns = _columns(source.control)
        schema = bigquery_schema(columns)
        query = extract.build_query(spec, columns, Pass.INSERT)
        if work in ("requests", "requests_pb"):
            writer_schema = types.ProtoSchema(proto_descriptor=protorows.descriptor_for(schema))
            writer_schema_pb = types.ProtoSchema.pb(writer_schema)
            descriptor = protorows.descriptor_for(schema)
        organizations = _organizations(url, orgs)
        base_rss = peak_rss_mb()
        base_split = rss_split_mb()
        started = time.perf_counter()
        for org, tz in organizations:
            id_bound = 0
            while True:  # rounds, as sync._sync_table runs the insert pass
                reader.commit()
                read = 0
                if literal:
                    source_pages = literal_pages(reader, query, organization_id=org, timezone=tz, id_bound=id_bound,
                                                 page_rows=options.page_rows, max_rows=options.round_rows)
                else:
                    source_pages = extract.pages(reader, query, Pass.INSERT, organization_id=org, timezone=tz,
                                                 id_bound=id_bound, page_rows=options.page_rows,
                                                 max_rows=options.round_rows)
                if prefetch:
                    source_pages = _prefetched(source_pages, timings)
                mark = time.perf_counter()
                for page in source_pages:
                    now = time.perf_counter()
                    if not prefetch:
                        timings["fetch"] += now - mark
                    n = page.rows.num_rows
                    read += n
                    pages_read += 1
                    id_bound = page.last_id
                    if work != "none":
                        table = page.rows.drop_columns([CURSOR_COLUMN])
                        _check_tenant(table, org, spec.name)
                        table = stamp(table)
                        t1 = time.perf_counter()
                        serialized = [protorows.serialize(batch, schema) for batch in table.to_batches()]
                        t2 = time.perf_counter()
                        if work == "requests":  # exactly as Warehouse._storage_write
                            built = [_proto_request(stream, descriptor, chunk) for batch in serialized for chunk in _chunks(batch)]
                            del built
                        elif work == "requests_pb":  # what-if: raw protobuf, rows added by one extend
                            built = []
                            for batch in serialized:
                                for chunk in _chunks(batch):
                                    request = types.AppendRowsRequest.pb()(write_stream=stream)
                                    request.proto_rows.writer_schema.CopyFrom(writer_schema_pb)
                                    request.proto_rows.rows.serialized_rows.extend(chunk)
                                    built.append(types.AppendRowsRequest.wrap(request))
                            del built
                        t3 = time.perf_counter()
                        timings["stamp"] += t1 - now
                        timings["serialize"] += t2 - t1
                        timings["requests"] += t3 - t2
                        if not nbytes:  # mean serialized row size, from the first page only
                            nbytes = sum(len(r) for r in serialized[0]) / max(1, len(serialized[0]))
                        del table, serialized
                    del page
                    mark = time.perf_counter()
                if not prefetch:
                    timings["fetch"] += time.perf_counter() - mark  # the last, empty or short query
                rows += read
                reader.commit()
                if read < options.round_rows:
                    break
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "base_rss_mb": base_rss, "base_split": base_split,
            "row_bytes": nbytes, "pages": pages_read, "timings": timings}


def run_child(spec: dict) -> dict:
    if spec.get("profile"):
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(run_child, {**spec, "profile": False})
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(25)
        result["profile"] = out.getvalue()
        return result
    if spec["kind"] == "copy":
        result = run_copy(spec["url"], spec["orgs"], plain=spec.get("plain", False))
    else:
        result = run_pages(spec["url"], spec["orgs"], spec["page_rows"], spec["kind"],
                           literal=spec.get("literal", False), prefetch=spec.get("prefetch", False))
    result["peak_rss_mb"] = peak_rss_mb()
    result["end_split"] = rss_split_mb()
    return result


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------


def start_server():
    if "XDG_RUNTIME_DIR" not in os.environ:  # pgserver and platformdirs want a private runtime dir
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="glific_bq_bench_runtime_")  # mode 0700
    import pgserver
    import psycopg

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(DATA_DIR), cleanup_mode="stop")
    base = server.get_uri()
    with psycopg.connect(base, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return server, base.replace("/postgres?", f"/{DATABASE}?", 1)


def spawn(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode:
        raise SystemExit(f"variant {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions(url: str) -> str:
    import importlib.metadata as md

    import psycopg

    with psycopg.connect(url) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        shared = conn.execute("SHOW shared_buffers").fetchone()[0]
        size = conn.execute("SELECT pg_size_pretty(pg_table_size('messages'))").fetchone()[0]
    packages = ", ".join(
        f"{name} {md.version(name)}"
        for name in ("pyarrow", "adbc-driver-postgresql", "psycopg", "numpy", "protobuf", "pgserver")
    )
    return (f"PostgreSQL {server} (shared_buffers {shared}; messages table {size}), "
            f"Python {platform.python_version()}, {packages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rows", type=int, default=2_000_000, help="messages to read (see --layout)")
    parser.add_argument("--tenants", type=int, default=20, help="organizations in the table")
    parser.add_argument("--layout", choices=("heavy", "interleaved"), default="heavy",
                        help="heavy: organization 1 owns --rows rows (read them all); interleaved: --rows "
                             "rows round-robin over the organizations (read every organization's)")
    parser.add_argument("--page-rows", type=int, nargs="+", default=None,
                        help="page sizes to measure (default: 10000, SyncOptions().page_rows, 100000)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per variant, in alternating rounds; the fastest is reported (default 2)")
    parser.add_argument("--what-if", action="store_true",
                        help="also measure bench-only alternatives (literal values / ADBC COPY path, prefetch "
                             "thread, raw-protobuf requests) that the findings suggest")
    parser.add_argument("--profile", action="store_true",
                        help="also run extract+serialize at the default page size under cProfile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    from glific_bq.sync import SyncOptions

    default_page = SyncOptions().page_rows
    page_sizes = args.page_rows or sorted({10_000, default_page, 100_000})
    server, url = start_server()
    try:
        generated, seconds = ensure_data(url, args.rows, args.tenants, args.layout)
        orgs = [1] if args.layout == "heavy" else list(range(1, args.tenants + 1))
        print(("generated" if generated else "reused") + f" the table{f' in {seconds:.0f} s' if generated else ''}")
        print(f"machine: nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} CPUs), "
              f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB RAM, {platform.platform()}")
        print(versions(url))
        if args.layout == "heavy":
            print(f"scenario: tenant-heavy backlog: all {args.rows:,} rows of organization 1 (the table also holds "
                  f"{args.rows // 20:,} rows of {args.tenants - 1} other organizations, ids interleaved 1 in 21), "
                  f"its insert pass from id 0")
        else:
            print(f"scenario: all {args.rows:,} rows, {args.tenants} organizations with ids interleaved round-robin, "
                  f"every organization's insert pass from id 0, one after the other")
        print(f"each variant in a fresh process, best of {args.repeat}; round_rows {SyncOptions().round_rows:,}")

        plan = [("copy binary (ceiling)", {"kind": "copy"})]
        plan += [(f"extract, page {p:,}", {"kind": "none", "page_rows": p}) for p in page_sizes]
        plan += [(f"extract+serialize, page {p:,}", {"kind": "serialize", "page_rows": p}) for p in page_sizes]
        plan += [(f"  +requests, page {default_page:,}", {"kind": "requests", "page_rows": default_page})]
        if args.what_if:
            plan += [
                ("WI copy, no casts/tz (server)", {"kind": "copy", "plain": True}),
                (f"WI literal: extract, {default_page:,}", {"kind": "none", "page_rows": default_page, "literal": True}),
                (f"WI literal: +ser+pb req, {default_page:,}",
                 {"kind": "requests_pb", "page_rows": default_page, "literal": True}),
                (f"WI lit+prefetch+pb req, {default_page:,}",
                 {"kind": "requests_pb", "page_rows": default_page, "literal": True, "prefetch": True}),
                ("WI lit+prefetch+pb req, 10,000",
                 {"kind": "requests_pb", "page_rows": 10_000, "literal": True, "prefetch": True}),
            ]
        spawn({"kind": "copy", "url": url, "orgs": orgs})  # warm the OS cache and shared buffers; not reported
        best: dict[str, dict] = {}
        for round_ in range(args.repeat):
            for name, spec in plan:
                result = spawn({**spec, "url": url, "orgs": orgs})
                print(f"  round {round_ + 1}: {name.strip()}: {result['seconds']:.1f} s, "
                      f"{result['peak_rss_mb']:.0f} MB", flush=True)
                kept = best.get(name)
                if kept is None or result["seconds"] < kept["seconds"]:
                    result["peak_rss_mb"] = max(result["peak_rss_mb"], kept["peak_rss_mb"] if kept else 0)
                    best[name] = result
                else:
                    kept["peak_rss_mb"] = max(kept["peak_rss_mb"], result["peak_rss_mb"])

        results = [(name, best[name]) for name, _ in plan]
        ceiling = results[0][1]["rows"] / results[0][1]["seconds"]
        print()
        print(f"{'variant':<34}{'rows':>10}{'seconds':>8}{'rows/s':>9}{'peak RSS MB':>12}{'base':>6}{'data':>6}"
              f"{'vs copy':>8}  fetch/stamp/serialize/requests s")
        for name, r in results:
            rate = r["rows"] / r["seconds"]
            t = r.get("timings")
            split = "" if not t else "  " + " / ".join(f"{t[k]:.1f}" for k in ("fetch", "stamp", "serialize", "requests"))
            print(f"{name:<34}{r['rows']:>10,}{r['seconds']:>8.2f}{rate:>9,.0f}{r['peak_rss_mb']:>12.0f}"
                  f"{r['base_rss_mb']:>6.0f}{r['peak_rss_mb'] - r['base_rss_mb']:>6.0f}{rate / ceiling:>7.2f}x{split}")
        print("peak RSS: ru_maxrss of the variant's process (max over runs); base: peak RSS after imports and "
              "connecting, before the first row; data = peak - base.")
        for name, r in (results[0], results[len(page_sizes) * 2 + 1]):
            b, e = r["base_split"], r["end_split"]
            print(f"  {name.strip()}: base = {b['RssAnon']:.0f} MB anonymous + {b['RssFile']:.0f} MB file-backed "
                  f"(shared libraries); at exit {e['RssAnon']:.0f} + {e['RssFile']:.0f} MB")
        copy_r = results[0][1]
        serialized = next((r["row_bytes"] for _, r in results if r.get("row_bytes")), 0)
        print(f"binary COPY: {copy_r['bytes'] / copy_r['rows']:.0f} bytes/row; protobuf row as serialized: "
              f"{serialized:.0f} bytes/row")
        print("fetch: time in extract.pages (query + ADBC fetch; with prefetch, time waiting for the next page)")
        print("targets: >= 500,000 rows/s and peak RSS < 250 MB whatever the backlog")

        if args.profile:
            result = spawn({"kind": "serialize", "page_rows": default_page, "url": url, "orgs": orgs, "profile": True})
            print(f"\ncProfile of extract+serialize, page {default_page:,} "
                  f"({result['rows'] / result['seconds']:,.0f} rows/s under the profiler):")
            print(result["profile"])
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
