"""Every benchmark whose numbers README.md or docs/*.md quote runs, at a tiny smoke size, from this
checkout as a new user would run it (``python bench/X.py …``, in a process of its own), and prints
its table. Its numbers are not checked: at these sizes they mean nothing.

The demo-driven ones (``bench_latency``, ``demo_outage``) wait for the minute schedule whatever
their size, minutes each; ``soak`` and ``bench_tick_latency`` take a minute at their smallest (their
stacks, the soak's settling that waits out late commits): they are ``slow`` (``pytest -m slow glific_bq_tests/test_bench_smoke.py``).
``bench/dlt_peer.py`` runs in ``.bench-venv`` (``bash bench/make_bench_venv.sh``: dlt and
connectorx from PyPI, minutes to install), so the smoke runs ``bench_datapath`` without it
(``--no-dlt``), as it runs when that venv is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    """One benchmark at its smoke size: ``args`` (``{tmp}``: a directory of the test's own) and a
    piece of the table it prints (``prints``), one per line of it that must show."""

    script: str
    args: tuple[str, ...]
    prints: tuple[str, ...]

    def __str__(self) -> str:
        return self.script


BENCHES = [
    Bench("bench_datapath.py", ("--rows", "3000", "--repeat", "1", "--no-dlt", "--layout", "glific",
                                "--only", "load-ready", "--data-dir", "{tmp}/pg"),
          ("variant", "ours: load-ready (glific, 20,000)", "ours: load-ready parquet (glific, 20,000)")),
    Bench("bench_decode.py", ("--rows", "3000", "--repeat", "1", "--data-dir", "{tmp}/pg"),
          ("ADBC decoding", "server-side COPY", "writes.PARQUET_OPTIONS")),
    Bench("bench_protorows.py", ("--rows", "2000", "--repeat", "1"),
          ("append_requests, raw layout", "append_requests, glific layout", "after (this checkout)")),
    Bench("bench_protorows.py", ("--small", "--repeat", "1"), ("small path  vectorized",)),
    Bench("bench_roster.py", ("--organizations", "10", "--repeat", "1"), ("organizations  synced",)),
    Bench("bench_layouts.py", ("--messages", "500", "--contacts", "20", "--renamed", "50"),
          ("layout", "rename of a contact with 50 messages")),
    Bench("bench_platform_plan.py", ("--organizations", "10", "--days", "1"), ("platform.work (whole platform plan)",)),
    # The lead's (being rewritten): their existing small-size flags, unedited here.
    Bench("bench_tick.py", ("--tenants", "10", "--repeat", "1"), ("tenants", "queries")),
    # Bench("bench_clean.py", (...), (...)),  # being written in another branch: its smoke size goes here
]

SLOW_BENCHES = [
    # The lead's: a minute at its smallest flags (its stack and latency proxy start for each variant).
    Bench("bench_tick_latency.py", ("--organizations", "2", "--ticks", "1", "--rows", "1", "--workers", "2",
                                    "--skip-baseline", "--delay-ms", "5"), ("concurrency", "on (2 workers)")),
    # A minute at any size: the stack's start, and the settling that waits out late commits and future stamps.
    Bench("soak.py", ("--minutes", "0.1", "--tenants", "1", "--writers", "1", "--seed", "1"),
          ("tenant table", "result: OK")),
    Bench("bench_latency.py", ("--minutes", "0.1", "--every", "3", "--port", "3391", "--bigquery-port", "9391"),
          ("commit → sent (bq_inserted_at)", "commit → visible to a query")),
    Bench("demo_outage.py", ("--minutes", "3", "--outage-at", "1", "--outage-minutes", "1"), ("missing",)),
    # docs/scale.md's: a minute or so each (a Dagster run per tick; an event log grown in SQL).
    Bench("bench_tick_scale.py", ("--organizations", "3", "--dirty", "0.5", "--max-rows", "3", "--delay-ms", "0",
                                  "--dagster-storage", "postgres", "--executor", "multiprocess",
                                  "--pg-statements", "{tmp}/statements.txt"),
          ("sync ms/pair", "other processes' CPU s", "s in PostgreSQL")),
    Bench("bench_event_log.py", ("--synthetic", "20000", "--synthetic-per-run", "330", "--orgs", "100"),
          ("gql asset overview", "retention delete_ms_per_run")),
]


def run(bench: Bench, tmp_path: Path, timeout: float) -> str:
    args = [arg.format(tmp=tmp_path) for arg in bench.args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    Path(env["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / bench.script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{bench.script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    missing = [piece for piece in bench.prints if piece not in done.stdout]
    assert not missing, f"{bench.script} printed no {missing}:\n{done.stdout[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("bench", BENCHES, ids=str)
def test_a_quoted_benchmark_runs_at_its_smoke_size_and_prints_its_table(bench, tmp_path):
    run(bench, tmp_path, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("bench", SLOW_BENCHES, ids=str)
def test_a_demo_driven_benchmark_runs_at_its_smoke_size_and_prints_its_table(bench, tmp_path):
    run(bench, tmp_path, timeout=900)
