"""Table 10: overall accuracy of Inception v3, MobileNet, ResNet, VACNN and VACNN + BOVW, each
pretrained on TESS + RAVDESS and fine-tuned on RAVDESS, EmoDB and SAVEE; the literature rows
are cited from the paper, not rerun.

    python -m reproduce.table10                       # demo profile on the synthetic corpus (minutes)
    python -m reproduce.table10 --data-root DATA --profile quick

Paper's numbers: reproduce/paper.py (TABLE10_ACCURACY, TABLE10_LITERATURE).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from reproduce import paper
from reproduce.common import Need, Outcome, main_for, notes_for, write_outputs
from reproduce.render import accuracy_notes, accuracy_rows, frame
from vacnn_tf.config import RunConfig

METHODS = {
    "inception": {"model.architecture": "inception", "model.use_bovw": False},
    "mobilenet": {"model.architecture": "mobilenet", "model.use_bovw": False},
    "resnet": {"model.architecture": "resnet", "model.use_bovw": False},
    "vacnn": {"model.architecture": "vacnn", "model.use_bovw": False},
    "vacnn_bovw": {},
}


# Ours, not the paper's: logistic regression on per-mel-band statistics plus the BOVW histogram,
# on the same folds (vacnn_tf.models.linear). It says how hard a corpus is and what a network must beat.
LINEAR = "linear"
LINEAR_LABEL = "linear reference (ours: band statistics + BOVW)"


def needs(config: RunConfig) -> list[Need]:
    return [Need(LINEAR, target, "linear", {}) for target in paper.TARGETS] + [
        Need(method, target, "finetuned", overrides) for target in paper.TARGETS for method, overrides in METHODS.items()]


def render(config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    rows = []
    for target in paper.TARGETS:
        for cited, features, acc in paper.TABLE10_LITERATURE[target]:
            rows.append({"dataset": target, "method": cited, "label": f"{cited} ({features})",
                         "accuracy": np.nan, "uar": np.nan, "accuracy_std": np.nan, "uar_std": np.nan,
                         "paper_accuracy": acc, "delta": np.nan, "protocol": "their own",
                         "profile": "", "status": "cited from the paper, not rerun"})
        for o in outcomes:
            if o.need.target == target:
                if o.need.key == LINEAR:
                    rows += accuracy_rows(target, LINEAR, o, np.nan, config, LINEAR_LABEL)
                else:
                    rows += accuracy_rows(target, o.need.key, o, paper.TABLE10_ACCURACY[target][o.need.key],
                                          config, paper.TABLE10_METHODS[o.need.key])
    notes = notes_for(config, outcomes) + accuracy_notes(config, outcomes) + [
        "Literature rows are cited from the paper (other authors, other protocols) and were not rerun."]
    return list(write_outputs(out, "table10", frame(rows), "Table 10: methods compared", notes))


def main(argv: list[str] | None = None) -> int:
    return main_for("table10", __doc__.splitlines()[0], needs, render, argv)


if __name__ == "__main__":
    sys.exit(main())
