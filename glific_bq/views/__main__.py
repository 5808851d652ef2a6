"""``python -m glific_bq.views docs/looker-studio.md``: rewrite the generated reference."""

import sys
from pathlib import Path

from glific_bq.views.docs import write_reference

for argument in sys.argv[1:]:
    print(f"{argument}: {'updated' if write_reference(Path(argument)) else 'up to date'}")
