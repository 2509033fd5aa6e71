"""Table 2: VACNN pretraining on TESS + RAVDESS, per-class precision/recall/F1 and accuracy.

    python -m reproduce.table2                      # demo profile, synthetic corpus
    python -m reproduce.table2 --data-root DATA     # real corpora (tess/ and ravdess/ needed)

Paper's numbers: reproduce/paper.py (TABLE2_PRF, TABLE2_ACCURACY; 89.03% overall).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reproduce import paper
from reproduce.common import Need, Outcome, main_for, notes_for, summary_of, write_outputs
from reproduce.render import first_seed_notes, frame, prf_rows
from vacnn_tf.config import RunConfig


def needs(config: RunConfig) -> list[Need]:
    return [Need("vacnn", "pretrain", "pretrain")]


def render(config: RunConfig, outcomes: list[Outcome], out: Path) -> list[Path]:
    outcome = outcomes[0]
    rows = prf_rows("tess+ravdess", outcome, paper.TABLE2_PRF, config)
    acc = summary_of(outcome.run_dir)["accuracy"] if outcome.ok else float("nan")
    rows.append({"dataset": "tess+ravdess", "class": "overall accuracy (%)", "precision": acc,
                 "paper_precision": paper.TABLE2_ACCURACY, "delta_precision": acc - paper.TABLE2_ACCURACY,
                 "protocol": config.protocol.name, "profile": config.profile, "status": outcome.status})
    notes = notes_for(config, outcomes) + first_seed_notes(outcomes) + [
        "Pretraining is evaluated on a stratified hold-out of TESS + RAVDESS (1/folds of the data), "
        "never trained on. The last row holds the overall accuracy in percent in the precision columns."]
    return list(write_outputs(out, "table2", frame(rows), "Table 2: pretraining on TESS + RAVDESS (VACNN)", notes))


def main(argv: list[str] | None = None) -> int:
    return main_for("table2", __doc__.splitlines()[0], needs, render, argv)


if __name__ == "__main__":
    sys.exit(main())
