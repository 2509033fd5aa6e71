"""The demo profile demonstrates: on the synthetic corpus the method learns, visibly.

The CI test runs a shrunken demo (one target, VACNN + BOVW only, a smaller corpus and fewer
epochs); the full demo's thresholds, Table 10 as ``python -m reproduce.table10`` builds it, are
the slow test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vacnn_tf.config import RunConfig, load_config, packaged_config, replace
from vacnn_tf.corpora.labels import CORPUS_CLASSES


def demo_config(tmp_path: Path, **changes) -> RunConfig:
    """The shipped demo profile, writing under ``tmp_path``, with ``changes`` on top."""
    config = load_config(packaged_config("demo.yaml"))
    return replace(config, **{
        "out": str(tmp_path / "runs"), "data.cache_dir": str(tmp_path / "cache"), "data.workers": 1,
        "train.verbose": 0, **changes,
    })


# The shrunken demo: 12 utterances per class (an 84-file SAVEE, 21 of them tested), fewer epochs.
SHRUNKEN = {"data.synth_per_class": 12, "train.pretrain_epochs": 12, "train.epochs": 12, "train.patience": 12}
MIN_SHRUNKEN_ACCURACY = 4 / 7  # four times chance


def test_shrunken_demo_vacnn_bovw_learns_well_above_chance(tmp_path: Path):
    """Pretrain on synthetic TESS + RAVDESS, fine-tune VACNN + BOVW on synthetic SAVEE (one fold).

    The demo profile's recipe on a smaller corpus with fewer epochs; chance is 1/7.
    """
    from vacnn_tf.training.finetuning import finetune

    config = demo_config(tmp_path, **SHRUNKEN)
    summary = finetune(config, "savee")
    assert len(summary.folds) == 1 and summary.use_bovw and summary.variant == "finetuned"
    assert summary.accuracy_mean >= MIN_SHRUNKEN_ACCURACY, summary


# Table 10's rows run in the demo (reproduce/table10.py METHODS) and the accuracy each must reach.
VACNN_ROWS = ("vacnn_bovw", "vacnn")
BASELINE_ROWS = ("resnet", "inception", "mobilenet")
MIN_VACNN_ACCURACY = 80.0  # percent


@pytest.mark.slow
def test_full_demo_meets_its_thresholds(tmp_path: Path):
    """``python -m reproduce.table10`` with no data: both VACNN rows at least 80% on every synthetic
    target, every other row at least twice chance (minutes on 2 cores)."""
    from reproduce import table10

    assert table10.main(["--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "table10.csv")
    ours = table[table["method"].isin(VACNN_ROWS + BASELINE_ROWS)].set_index(["dataset", "method"])["accuracy"]
    assert len(ours) == 15 and ours.notna().all(), ours
    short = []
    for target in ("ravdess", "emodb", "savee"):
        twice_chance = 200.0 / len(CORPUS_CLASSES[target])
        for method in VACNN_ROWS + BASELINE_ROWS:
            floor = MIN_VACNN_ACCURACY if method in VACNN_ROWS else twice_chance
            if ours[(target, method)] < floor:
                short.append(f"{method} on {target}: {ours[(target, method)]:.1f}% < {floor:.1f}%")
    assert not short, short
