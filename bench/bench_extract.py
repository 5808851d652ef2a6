"""Superseded by ``bench/bench_datapath.py`` (the extract path beside the server-side COPY limit,
a plain client COPY, dlt's best configuration and the source database's CPU per million rows, on
Glific's real schema); kept so that older notes' command still runs it.

Run: ``.venv/bin/python bench/bench_extract.py [bench_datapath options]``
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).with_name("bench_datapath.py"))
    runpy.run_path(sys.argv[0], run_name="__main__")
