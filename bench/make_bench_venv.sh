#!/usr/bin/env bash
# The peer's own virtual environment for bench/bench_datapath.py: dlt with connectorx, kept apart
# from the project's .venv (dlt's dependencies are not ours). Git-ignored; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
if [ ! -x .bench-venv/bin/python ]; then
    "$python" -m venv .bench-venv
fi
.bench-venv/bin/python -m pip install --quiet --upgrade pip
.bench-venv/bin/python -m pip install --quiet "dlt[parquet,sql_database]==1.31.0" "connectorx==0.4.6" psycopg2-binary
.bench-venv/bin/python -c "import dlt, connectorx; print('dlt', dlt.__version__, 'connectorx', connectorx.__version__)"
