"""Table 3: overall accuracy of pure, fine-tuned and fine-tuned (CBAM) VACNN + BOVW on RAVDESS,
EmoDB and SAVEE.

    python -m reproduce.table3 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table3"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import VARIANTS, shim  # noqa: F401  (VARIANTS: read by callers of table3)

needs, render, main = shim("table3", __name__)

if __name__ == "__main__":
    sys.exit(main())
