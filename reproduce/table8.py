"""Table 8: row-normalised confusion matrix of the fine-tuned VACNN + BOVW on emodb.

    python -m reproduce.table8 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table8"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import shim

needs, render, main = shim("table8", __name__)

if __name__ == "__main__":
    sys.exit(main())
