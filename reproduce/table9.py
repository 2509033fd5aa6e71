"""Table 9: row-normalised confusion matrix of the fine-tuned VACNN + BOVW on savee.

    python -m reproduce.table9 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Paper's numbers: reproduce/paper.py (CONFUSION["savee"]).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reproduce.common import Need, Outcome, main_for
from reproduce.render import confusion_table
from vacnn_tf.config import RunConfig

DATASET = "savee"


def needs(config: RunConfig) -> list[Need]:
    return [Need("vacnn_bovw", DATASET, "finetuned")]


def render(config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    return confusion_table(DATASET, config, outcomes, out)


def main(argv: list[str] | None = None) -> int:
    return main_for("table9", __doc__.splitlines()[0], needs, render, argv)


if __name__ == "__main__":
    sys.exit(main())
