"""Table 10: overall accuracy of Inception v3, MobileNet, ResNet, VACNN and VACNN + BOVW, each
pretrained on TESS + RAVDESS and fine-tuned on RAVDESS, EmoDB and SAVEE; the literature rows
are cited from the paper, not rerun.

    python -m reproduce.table10                       # demo profile on the synthetic corpus (minutes)
    python -m reproduce.table10 --data-root DATA --profile quick

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table10"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import LINEAR, LINEAR_LABEL, METHODS, shim  # noqa: F401  (read by callers of table10)

needs, render, main = shim("table10", __name__)

if __name__ == "__main__":
    sys.exit(main())
