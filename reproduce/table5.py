"""Table 5: per-class precision/recall/F1 of the fine-tuned VACNN + BOVW on emodb.

    python -m reproduce.table5 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Paper's numbers: reproduce/paper.py (TABLE_PRF["emodb"]).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reproduce.common import Need, Outcome, main_for
from reproduce.render import per_class_table
from vacnn_tf.config import RunConfig

DATASET = "emodb"


def needs(config: RunConfig) -> list[Need]:
    return [Need("vacnn_bovw", DATASET, "finetuned")]


def render(config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    return per_class_table(DATASET, config, outcomes, out)


def main(argv: list[str] | None = None) -> int:
    return main_for("table5", __doc__.splitlines()[0], needs, render, argv)


if __name__ == "__main__":
    sys.exit(main())
