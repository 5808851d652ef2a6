"""A short run of the soak test (bench/soak.py): traffic, crashing syncs and dedup, then a row-by-row
comparison. About a minute (the run waits for its rows stamped up to 40 s ahead), in the default
run so that CI's strongest proof of "nothing lost" can fail (the raw layout; the Glific layout's
run, compared with a from-scratch sync, is ``-m slow``); longer soaks: ``python bench/soak.py
--minutes 10 [--layout glific]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


@pytest.mark.parametrize("layout", ["raw", pytest.param("glific", marks=pytest.mark.slow)])
def test_a_short_soak_loses_nothing_invents_nothing_and_leaves_one_version_per_row(layout):
    run = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.3", "--tenants", "2", "--seed", "1", "--layout", layout],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    assert "result: OK" in run.stdout
