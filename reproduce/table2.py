"""Table 2: VACNN pretraining on TESS + RAVDESS, per-class precision/recall/F1 and accuracy.

    python -m reproduce.table2                      # demo profile, synthetic corpus
    python -m reproduce.table2 --data-root DATA     # real corpora (tess/ and ravdess/ needed)

Its runs, its rendering and the paper's numbers it sits beside: SPECS["table2"] in
reproduce/tables.py.
"""

import sys

from reproduce.tables import shim

needs, render, main = shim("table2", __name__)

if __name__ == "__main__":
    sys.exit(main())
