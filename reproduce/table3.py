"""Table 3: overall accuracy of pure VACNN + BOVW, fine-tuned VACNN + BOVW and fine-tuned
VACNN (CBAM) + BOVW on RAVDESS, EmoDB and SAVEE.

    python -m reproduce.table3 [--data-root DATA] [--profile paper|quick|demo] [--protocol paper|speaker]

Paper's numbers: reproduce/paper.py (TABLE3_ACCURACY).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reproduce import paper
from reproduce.common import Need, Outcome, main_for, notes_for, write_outputs
from reproduce.render import accuracy_notes, accuracy_rows, frame
from vacnn_tf.config import RunConfig

VARIANTS = {
    "pure": ("pure", {}),
    "finetuned": ("finetuned", {}),
    "cbam": ("finetuned", {"model.architecture": "vacnn-cbam"}),
}


def needs(config: RunConfig) -> list[Need]:
    return [Need(key, target, variant, overrides)
            for target in paper.TARGETS for key, (variant, overrides) in VARIANTS.items()]


def render(config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    rows = [row for o in outcomes
            for row in accuracy_rows(o.need.target, o.need.key, o, 100 * paper.TABLE3_ACCURACY[o.need.target][o.need.key],
                                     config, paper.TABLE3_VARIANTS[o.need.key])]
    notes = notes_for(config, outcomes) + accuracy_notes(config, outcomes)
    return list(write_outputs(out, "table3", frame(rows), "Table 3: VACNN + BOVW variants", notes))


def main(argv: list[str] | None = None) -> int:
    return main_for("table3", __doc__.splitlines()[0], needs, render, argv)


if __name__ == "__main__":
    sys.exit(main())
