"""A short run of the soak test (bench/soak.py): traffic, crashing syncs and dedup, then a row-by-row
comparison. Slow (about 40 s: the run waits for its rows stamped up to 40 s ahead), so not in
the default run: ``pytest -m slow glific_bq_tests/test_soak.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


@pytest.mark.slow
def test_a_short_soak_loses_nothing_invents_nothing_and_leaves_one_version_per_row():
    run = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.3", "--tenants", "2", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert "result: OK" in run.stdout
