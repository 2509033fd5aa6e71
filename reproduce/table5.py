"""Table 5: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on emodb.

    python -m reproduce.table5 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table5"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import shim

needs, render, main = shim("table5", __name__)

if __name__ == "__main__":
    sys.exit(main())
