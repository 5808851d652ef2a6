"""The minute tick at Glific's real shape: N organizations × every Glific-layout table (33), a
fraction of the tenant-tables dirty, BigQuery behind a latency proxy, each tick a Dagster run of
``sync_job`` in a fresh process (``execute_in_process``, or with ``--executor multiprocess`` as the
schedule runs it: the plan and each shard a step process of their own), on a SQLite or
(``--dagster-storage postgres``, as in production) PostgreSQL instance, so Dagster's own cost of
recording one materialization per pair is in the numbers.

Stack: an embedded PostgreSQL (pgserver) holding Glific's real schema, seeded by
``glific_bq.local.sample_data`` (every table, every organization); the BigQuery emulator and
``bench/latency_proxy.py`` each in a process of their own. A first tick at 0 ms creates every
dataset and table and syncs the seed (not measured). Then, per variant (``--baseline REF``: the
code of a git revision, checked out in a temporary worktree, then this checkout), and the same
work for each: a fraction ``--dirty`` of the tenant-tables gets 1–``--max-rows`` changed rows
(``updated_at`` moved a minute back, past the horizon), and one tick runs; then the next tick
(rows a trigger stamped at commit, within the horizon at the first), then a tick with nothing
dirty.

Printed per variant: the run's seconds (after imports), its CPU seconds (user + system of the
child process over the run, and of its step processes under the multiprocess executor) and CPU ms per dirty pair, pairs synced, rows
sent, round trips at the proxy, and whether every changed row arrived (every pair's result
counted, and nothing left dirty). ``--profile FILE`` writes a cProfile of this checkout's dirty
tick (``python -m pstats FILE``); ``--pg-statements FILE`` logs every PostgreSQL statement of that
tick (``log_min_duration_statement = 0``) and writes where PostgreSQL's time went, statement by
statement (count, total and mean ms, with literals masked), into FILE.

    python bench/bench_tick_scale.py [--organizations 1000] [--dirty 0.1] [--max-rows 20]
        [--delay-ms 50] [--dagster-storage postgres] [--executor multiprocess] [--baseline REF]
        [--profile FILE | --py-spy FILE] [--pg-statements FILE]
    smoke: python bench/bench_tick_scale.py --organizations 3 --dirty 0.5 --max-rows 3 --delay-ms 0

Out of the default test run: this is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_tick_latency import free_port, start  # noqa: E402

LAYOUT = "glific"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def synced_tables(changed: bool = False) -> list[str]:
    """The Glific layout's tenant tables (``changed``: only those whose changed rows are sent
    again, by their ``updated_at`` cursor)."""
    from glific_bq.registry import GLIFIC_TABLES, Scope

    return [spec.name for spec in GLIFIC_TABLES
            if spec.scope is Scope.TENANT and (not changed or spec.mode.value == "upsert")]


def source_table(name: str) -> str:
    from glific_bq.registry import GLIFIC_TABLES

    return next(spec.source for spec in GLIFIC_TABLES if spec.name == name)


def make_dirty(conn, fraction: float, max_rows: int, seed: int) -> dict[str, int]:
    """``fraction`` of the (organization, table) pairs that have rows and are synced by
    ``updated_at`` get
    1-``max_rows`` rows changed, stamped a minute ago. Returns {"organization/table": rows changed}."""
    from glific_bq.local import glific_writes

    rng = random.Random(seed)
    at = glific_writes.utc_now() - __import__("datetime").timedelta(minutes=1)
    organizations = [r[0] for r in conn.execute("SELECT id FROM organizations ORDER BY id")]
    dirty: dict[str, int] = {}
    with conn.transaction():
        for name in synced_tables(changed=True):
            table = source_table(name)
            has_updated_at = conn.execute(
                "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_name = %s AND "
                "column_name = 'updated_at')", (table,)).fetchone()[0]
            if not has_updated_at:
                continue
            exported = _exported_rows(name)
            chosen = [o for o in organizations if rng.random() < fraction]
            if not chosen:
                continue
            wanted = {o: rng.randint(1, max_rows) for o in chosen}
            changed = conn.execute(
                f"WITH picked AS (SELECT id FROM (SELECT id, organization_id, row_number() OVER "
                f"(PARTITION BY organization_id ORDER BY id) AS n FROM {table} t WHERE organization_id = ANY(%s) "
                f"AND {exported}) r "
                f"JOIN unnest(%s::bigint[], %s::int[]) AS w(org, k) ON w.org = r.organization_id WHERE r.n <= w.k) "
                f"UPDATE {table} t SET updated_at = %s FROM picked WHERE t.id = picked.id "
                f"RETURNING t.organization_id",
                (chosen, list(wanted), list(wanted.values()), at),
            ).fetchall()
            for (organization_id,) in changed:
                key = f"{organization_id}/{name}"
                dirty[key] = dirty.get(key, 0) + 1
    return dirty


def _exported_rows(name: str) -> str:
    """The layout's filter of the rows a change re-sends (alias ``t``): flows are their
    published revisions."""
    from glific_bq.layouts.glific import _TABLES

    table = _TABLES.get(name)
    where = table and (table.update_where or table.where)
    return f"({where})".replace("%", "%%") if where else "true"


# ---------------------------------------------------------------------------------------------
# Child: one Dagster run of sync_job in this process
# ---------------------------------------------------------------------------------------------


def sync_job():
    """``sync_job`` as the code location defines it, for ``dagster.reconstructable`` (the
    multiprocess executor's step processes load it again from this file)."""
    from glific_bq.definitions import defs

    return defs.get_job_def("sync_job")


def child(spec: dict) -> dict:
    os.environ.update(spec["env"])
    sys.path.insert(0, str(ROOT / "bench"))
    import dagster as dg
    from dagster import DagsterInstance, execute_job, reconstructable
    from latency_proxy import ProxyControl

    import glific_bq
    from glific_bq.definitions import defs

    control = ProxyControl(spec["control_port"])
    control.command(f"delay {spec['delay_ms']}")
    control.command("reset")
    instance = DagsterInstance.get()
    job = defs.get_job_def("sync_job")
    multiprocess = spec.get("executor") == "multiprocess"
    materializations = []
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    before = cpu_seconds()
    descendants = Descendants() if multiprocess else None
    started = time.monotonic()
    if profiler:
        profiler.enable()
    if multiprocess:  # as the schedule runs it: in one process, or each step in a process of its own
        from glific_bq.defs import jobs
        from glific_bq.defs.resources import resources_from_env

        run_config = None  # a baseline from before the schedule chose: the job's own default
        if hasattr(jobs, "tick_run_config"):
            with dg.build_resources(resources_from_env()) as resources:  # as the schedule gets them
                run_config = jobs.tick_run_config(resources.postgres, resources.bigquery)
        result = execute_job(reconstructable(sync_job), instance, run_config=run_config, raise_on_error=False)
    else:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    if profiler:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    seconds = time.monotonic() - started
    cpu = cpu_seconds() - before + (descendants.stop() if descendants else 0.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            m = event.event_specific_data.materialization
            materializations.append(
                (f"{m.partition}/{m.asset_key.path[-1]}",
                 m.metadata["rows_inserted"].value + m.metadata["rows_updated"].value)
            )
    # The sync ops' own CPU (their log line), without the processes' start-up and Dagster's steps.
    work_cpu = sum(float(m.group(1)) for entry in instance.all_logs(result.run_id)
                   if (m := re.search(r"; ([0-9.]+) CPU s$", entry.user_message or "")))
    # Pairs the run did not sync (busy, missing, not_synced, failed), as the op logs them.
    unsynced = {f"{m.group(1)}/{m.group(2)}": m.group(3) for entry in instance.all_logs(result.run_id)
                if (m := re.match(r"organization (\d+), (\w+): (\w+): ", entry.user_message or ""))}
    stats = control.command("stats")
    control.close()
    return {
        "code": str(Path(glific_bq.__file__).parent.parent),
        "success": result.success,
        "failure": "" if result.success else str([str(e.event_specific_data) for e in result.all_events
                                                   if e.event_type_value == "STEP_FAILURE"])[:3000],
        "seconds": seconds,
        "cpu": cpu,
        "work_cpu": work_cpu,
        "unsynced": unsynced,
        "steps": sum(1 for e in result.all_events if e.event_type_value == "STEP_START"),
        "pairs": len(materializations),
        "rows": sum(r for _, r in materializations),
        "synced": dict(materializations),
        "round_trips": sum(route["round_trips"] for route in stats["routes"].values()),
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Descendants:
    """The CPU of this process's descendants started from now (the multiprocess executor's step
    processes, and the forkserver they are forked from, which is not this process's child to wait
    for): sampled every 0.1 s, each process's last sample kept (what a process spends in its last
    0.1 s is missed)."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._me, self._seen, self._done = psutil.Process(), {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._done.wait(0.1):
            for child in self._me.children(recursive=True):
                try:
                    times = child.cpu_times()
                except psutil.Error:
                    continue
                self._seen[child.pid] = times.user + times.system

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return sum(self._seen.values())


def services_cpu(services: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each service process tree (``{name: pid}``), its reaped children included
    (PostgreSQL's backends of finished connections)."""
    import psutil

    used = {}
    for name, pid in services.items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
        used[name] = total
    return used


def spawn(spec: dict, code: Path, py_spy: str | None = None, services: dict[str, int] | None = None) -> dict:
    """One Dagster run of ``sync_job`` in a fresh process running the code of ``code`` (under
    ``py-spy record`` into ``py_spy``, collapsed stacks of the CPU-busy samples of every thread)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    if py_spy:
        command = ["py-spy", "record", "--gil", "--subprocesses", "--format", "raw", "--rate", "250", "-o", py_spy,
                   "--", *command]
    before = services_cpu(services or {})
    proc = subprocess.run(command, capture_output=True, text=True, cwd=code, env=env)
    after = services_cpu(services or {})
    if proc.returncode:
        raise SystemExit(f"tick failed:\n{proc.stderr[-5000:]}")
    out = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    if Path(out["code"]).resolve() != code.resolve():
        raise SystemExit(f"the child ran {out['code']}, not {code}")
    out["services"] = {name: after[name] - before[name] for name in after}
    return out


def statement_log(server, on: bool) -> int:
    """Log every statement's duration (``on``) or none; returns the server log's size before."""
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET log_min_duration_statement = {0 if on else -1}")
        conn.execute("SELECT pg_reload_conf()")
    return (Path(server.pgdata) / "log").stat().st_size


#: A logged statement's duration line (the extended protocol logs parse, bind and execute apart).
DURATION = re.compile(r"LOG:  duration: ([0-9.]+) ms  (statement|parse|bind|execute)[^:]*: (.*)")


def summarize_statements(log: Path, start: int, out: Path, top: int = 40) -> str:
    """Where PostgreSQL's time went in the log from byte ``start``: per statement, literals and
    numbers masked, count and milliseconds (parse, bind and execute counted apart)."""
    text = log.read_bytes()[start:].decode(errors="replace")
    totals: dict[str, list[float]] = {}
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", text)
    for entry in entries:
        m = DURATION.search(entry)
        if not m:
            continue
        statement = " ".join((m.group(3) + entry[m.end():]).split())
        statement = re.sub(r"'[^']*'", "?", statement)
        statement = re.sub(r"\b\d+(\.\d+)?\b", "N", statement)
        key = f"{m.group(2)}: {statement[:160]}"
        total = totals.setdefault(key, [0, 0.0])
        total[0] += 1
        total[1] += float(m.group(1))
    rows = sorted(totals.items(), key=lambda kv: -kv[1][1])
    all_ms = sum(t for _, t in totals.values())
    lines = [f"{sum(c for c, _ in totals.values())} statements, {all_ms / 1000:.1f} s in PostgreSQL", "",
             f"{'count':>7} {'total ms':>9} {'mean ms':>8} {'share':>6}  statement"]
    lines += [f"{c:>7} {t:>9.0f} {t / c:>8.3f} {t / all_ms:>6.1%}  {k}" for k, (c, t) in rows]
    out.write_text("\n".join(lines) + "\n")
    return "\n".join(lines[: top + 3])


def remaining_dirty(url: str, env: dict[str, str]) -> int:
    """Tenant-tables the plan still finds dirty."""
    import psycopg

    from glific_bq import plan
    from glific_bq.registry import GLIFIC_TABLES, Scope
    from glific_bq.roster import select_tenants
    from glific_bq.warehouse import ENVIRONMENT, WarehouseConfig

    config = WarehouseConfig(**{field: env[var] for field, var in ENVIRONMENT.items() if var in env})
    with psycopg.connect(url, autocommit=True) as conn:
        roster = select_tenants(conn, config)
        tables = tuple(s for s in GLIFIC_TABLES if s.scope is Scope.TENANT)
        return sum(len(orgs) for orgs in plan.dirty(conn, tables, roster.destinations).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--organizations", type=int, default=1000)
    parser.add_argument("--dirty", type=float, default=0.1, help="fraction of tenant-tables changed per tick")
    parser.add_argument("--max-rows", type=int, default=20, help="changed rows per dirty pair: 1 to this")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay (round trip is twice this)")
    parser.add_argument("--messages", type=int, default=20, help="seeded messages per organization")
    parser.add_argument("--contacts", type=int, default=6, help="seeded contacts per organization")
    parser.add_argument("--dagster-storage", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Dagster instance's storage (postgres, as in production, needs glific_bq[prod])")
    parser.add_argument("--executor", choices=("in_process", "multiprocess"), default="in_process",
                        help="in_process: the whole run in one process; multiprocess: as the schedule runs it "
                        "(its run config: one process for a tick of one shard, else the plan and each shard a "
                        "process of its own; GLIFIC_BQ_TICK_SHARDS, default auto)")
    parser.add_argument("--baseline", help="git revision whose code runs the same ticks first")
    parser.add_argument("--profile", help="cProfile this checkout's dirty tick (its main thread) into this file")
    parser.add_argument("--py-spy", help="py-spy record this checkout's dirty tick (all threads) into this file")
    parser.add_argument("--pg-statements", help="log this checkout's dirty tick's PostgreSQL statements and write "
                        "where PostgreSQL's time went into this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    if "XDG_RUNTIME_DIR" not in os.environ:
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="glific_bq_bench_runtime_")
    os.environ["GLIFIC_BQ_LAYOUT"] = LAYOUT
    import pgserver
    import psycopg

    from glific_bq.local import sample_data

    variants = []
    scratch = Path(tempfile.mkdtemp(prefix="bench_tick_scale_"))
    if args.baseline:
        baseline = scratch / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(baseline), args.baseline], cwd=ROOT,
                       check=True)
        variants.append((f"baseline {args.baseline}", baseline))
    variants.append(("this checkout", ROOT))

    rest, grpc, proxy_rest, proxy_grpc, control = (free_port() for _ in range(5))
    helpers = []
    server = pgserver.get_server(str(scratch / "pg"), cleanup_mode="stop")
    try:
        base = server.get_uri()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_scale")
        url = base.replace("/postgres?", "/bench_scale?", 1)
        helpers.append(start([sys.executable, "-m", "glific_bq.local.bigquery_emulator", "--rest-port", str(rest),
                              "--grpc-port", str(grpc)], "BigQuery emulator"))
        helpers.append(start([sys.executable, "bench/latency_proxy.py", "--route", f"{proxy_rest}:127.0.0.1:{rest}",
                              "--route", f"{proxy_grpc}:127.0.0.1:{grpc}", "--delay-ms", "0",
                              "--control-port", str(control)], "latency proxy"))
        started = time.monotonic()
        from glific_bq.local.glific_schema import create_glific_schema

        with psycopg.connect(url, autocommit=True) as conn:
            create_glific_schema(conn)
            sample_data.seed(conn, organizations=args.organizations, messages_per_org=args.messages,
                             contacts_per_org=args.contacts)
        tables = synced_tables()
        print(f"{args.organizations} organizations × {len(tables)} tables seeded in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        dagster_home = scratch / "dagster_home"
        dagster_home.mkdir()
        instance_yaml = "telemetry:\n  enabled: false\n"
        if args.dagster_storage == "postgres":  # as in production (deploy/dagster.prod.yaml), here on pgserver
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench_dagster")
            instance_yaml += ("storage:\n  postgres:\n    postgres_url: "
                              + json.dumps(base.replace("/postgres?", "/bench_dagster?", 1).replace("postgresql://", "postgresql+psycopg2://", 1)) + "\n")
        (dagster_home / "dagster.yaml").write_text(instance_yaml)
        spec = {
            "control_port": control,
            "executor": args.executor,
            "env": {
                "DAGSTER_HOME": str(dagster_home),
                "GLIFIC_DATABASE_URL": url,
                "GLIFIC_BQ_LAYOUT": LAYOUT,
                "GLIFIC_BQ_ORGANIZATIONS": "active",
                "GLIFIC_BQ_PROJECT": "glific-local",
                "GLIFIC_BQ_DATASET_TEMPLATE": f"s{uuid.uuid4().hex[:6]}_{{organization_id}}",
                "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{proxy_rest}",
                "BIGQUERY_STORAGE_EMULATOR_HOST": f"127.0.0.1:{proxy_grpc}",
            },
        }
        started = time.monotonic()
        postmaster = int((scratch / "pg" / "postmaster.pid").read_text().split()[0])
        services = {"PostgreSQL": postmaster, "emulator": helpers[0].pid, "proxy": helpers[1].pid}
        first = spawn({**spec, "delay_ms": 0}, variants[-1][1])
        print(f"first tick (creates datasets and tables, syncs the seed; not measured): {first['seconds']:.1f} s, "
              f"{first['pairs']} pairs, {first['rows']} rows, success={first['success']} {first['failure']}",
              flush=True)
        header = (f"{'variant':<22} {'tick':<6} {'seconds':>8} {'CPU s':>7} {'CPU ms/pair':>11} {'sync ms/pair':>12} "
                  f"{'pairs':>6} "
                  f"{'rows':>7} {'RT':>7} {'steps':>5} {'peak MB':>7} {'all arrived':>11}")
        lines = []
        dirtied = None
        for n, (label, code) in enumerate(variants):
            # Changes are stamped a minute back: a minute after the previous variant's, so that none
            # is stamped behind the update cursor that variant's ticks moved (it would never be sent).
            if dirtied is not None:
                time.sleep(max(0.0, dirtied + 65 - time.monotonic()))
            dirtied = time.monotonic()
            dirty = make_dirty(psycopg.connect(url, autocommit=True), args.dirty, args.max_rows, seed=n)
            logged = args.pg_statements and code == ROOT
            log_start = statement_log(server, True) if logged else 0
            busy = spawn({**spec, "delay_ms": args.delay_ms,
                          "profile": args.profile if code == ROOT else None}, code,
                         py_spy=args.py_spy if code == ROOT else None, services=services)
            if logged:
                statement_log(server, False)
                print(summarize_statements(Path(server.pgdata) / "log", log_start, Path(args.pg_statements)),
                      flush=True)
            idle = spawn({**spec, "delay_ms": args.delay_ms}, code, services=services)
            quiet = spawn({**spec, "delay_ms": args.delay_ms}, code, services=services)
            # Rows a trigger stamped with the commit's own time (contacts, when their groups
            # change) are within the horizon at the dirty tick: the next tick sends them.
            short = {pair: (rows, busy["synced"].get(pair, 0) + idle["synced"].get(pair, 0))
                     for pair, rows in dirty.items()
                     if busy["synced"].get(pair, 0) + idle["synced"].get(pair, 0) < rows}
            left = remaining_dirty(url, spec["env"])
            arrived = busy["success"] and idle["success"] and not short and not left
            for tick, out in (("dirty", busy), ("next", idle), ("idle", quiet)):
                per_pair = f"{out['cpu'] / out['pairs'] * 1000:.1f}" if out["pairs"] else "-"
                work = f"{out['work_cpu'] / out['pairs'] * 1000:.1f}" if out["pairs"] else "-"
                lines.append(f"{label:<22} {tick:<6} {out['seconds']:>8.1f} {out['cpu']:>7.1f} {per_pair:>11} {work:>12} "
                             f"{out['pairs']:>6} {out['rows']:>7} {out['round_trips']:>7} {out['steps']:>5} {out['peak_rss_mb']:>7.0f} "
                             f"{'yes' if arrived else 'NO':>11}")
                lines.append(f"{'':<29} other processes' CPU s: "
                             + ", ".join(f"{name} {used:.1f}" for name, used in out["services"].items()))
            if not arrived:
                statuses = {pair: (busy["unsynced"].get(pair), idle["unsynced"].get(pair)) for pair in list(short)[:8]}
                lines.append(f"   short (changed, sent): {dict(list(short.items())[:8])} of {len(short)}; "
                             f"not synced (dirty, next tick): {statuses}; {left} pairs left dirty; "
                             f"{busy['failure']}{idle['failure']}")
            dirty_pairs, dirty_rows = len(dirty), sum(dirty.values())
            print(f"{label}: {dirty_pairs} dirty pairs, {dirty_rows} rows", flush=True)
        print(f"\n{args.organizations} organizations × {len(tables)} tables, {args.dirty:.0%} dirty with "
              f"1-{args.max_rows} rows each, BigQuery {2 * args.delay_ms:.0f} ms round trip\n")
        print(header)
        print("-" * len(header))
        print("\n".join(lines))
    finally:
        for proc in helpers:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.cleanup()
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(scratch / "baseline")], cwd=ROOT)


if __name__ == "__main__":
    main()
