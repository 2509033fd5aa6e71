"""Table 4: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on ravdess.

    python -m reproduce.table4 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table4"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import shim

needs, render, main = shim("table4", __name__)

if __name__ == "__main__":
    sys.exit(main())
