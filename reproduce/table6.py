"""Table 6: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on savee.

    python -m reproduce.table6 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table6"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import shim

needs, render, main = shim("table6", __name__)

if __name__ == "__main__":
    sys.exit(main())
