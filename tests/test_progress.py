"""Progress across a grid of trainings: numbering, the estimate, resumed units, and the planning."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.training.progress import Progress, Unit, duration, plan_finetune


def _clock(step: float = 60.0):
    """A clock that moves ``step`` seconds on every reading."""
    ticks = itertools.count(0.0, step)
    return lambda: next(ticks)


def test_lines_number_the_units_and_estimate_from_the_trained_ones():
    lines: list[str] = []
    units = [Unit("a", "A"), Unit("b", "B"), Unit("c", "C")]
    progress = Progress(units, emit=lines.append, clock=_clock())  # reading 0: the start
    progress.start("a", "pretrain A")  # 60
    progress.finish("a")
    progress.start("b", "fine-tune B, fold 1/1")  # 120: one unit in 60 s, two left
    progress.finish("b")
    progress.start("c", "fine-tune C, fold 1/1")  # 180: two units in 120 s, one left
    assert lines == [
        "run 1/3: pretrain A (elapsed 1m00s, estimate after the first run)",
        "run 2/3: fine-tune B, fold 1/1 (elapsed 2m00s, about 2m00s left)",
        "run 3/3: fine-tune C, fold 1/1 (elapsed 3m00s, about 1m00s left)",
    ]


def test_units_done_before_count_as_done_but_not_in_the_estimate():
    lines: list[str] = []
    units = [Unit(f"u{k}", f"U{k}", done=k < 8) for k in range(10)]
    progress = Progress(units, emit=lines.append, clock=_clock(30.0))
    progress.skip("u0")  # found finished while running: nothing changes
    progress.start("u8", "U8")
    progress.finish("u8")
    progress.start("u9", "U9")
    assert lines == ["run 9/10: U8 (elapsed 30s, estimate after the first run)",
                     "run 10/10: U9 (elapsed 1m00s, about 30s left)"]


def test_a_worker_counts_what_other_workers_finished_and_shares_what_is_left():
    """Two workers in one folder: the units the other one finished count as done, and the time
    left is this worker's rate over the units left, shared between the two."""
    lines: list[str] = []
    finished_elsewhere: set[str] = set()
    units = [Unit(f"u{k}", f"U{k}") for k in range(6)]
    progress = Progress(units, emit=lines.append, clock=_clock(), finished=finished_elsewhere.__contains__, workers=2)
    progress.start("u0", "U0")  # 60
    progress.finish("u0")
    finished_elsewhere.update({"u1", "u2"})  # the other worker's
    progress.start("u3", "U3")  # 120: one unit in 60 s; u3, u4 and u5 left to two workers
    assert lines == ["run 1/6: U0 (elapsed 1m00s, estimate after the first run)",
                     "run 4/6: U3 (elapsed 2m00s, about 1m30s left)"]


def test_a_shared_unit_counts_once_and_an_unplanned_one_joins_the_total():
    progress = Progress([Unit("pre", "P"), Unit("f0", "F0"), Unit("pre", "P"), Unit("f1", "F1")], emit=None)
    assert progress.total == 3
    assert progress.start("extra", "X").startswith("run 1/4: X")


def test_a_unit_planned_done_by_one_run_and_undone_by_another_is_to_do():
    progress = Progress([Unit("pre", "P", done=True), Unit("pre", "P", done=False)], emit=None)
    assert (progress.total, progress.done) == (1, 0)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (192, "3m12s"), (3900, "1h05m")])
def test_duration(seconds: float, text: str):
    assert duration(seconds) == text


def _config(out: Path, **changes) -> RunConfig:
    return replace(RunConfig(), **{"out": str(out), "protocol.folds": 2, "model.use_bovw": False,
                                   "train.verbose": 0, **changes})


def test_finetune_reports_each_fold_and_a_resumed_run_only_what_is_left(fake_emodb, tmp_path: Path):
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.run_dirs import finetune_dir

    config = _config(tmp_path)
    lines: list[str] = []
    progress = Progress(plan_finetune(config, "emodb", "linear"), emit=lines.append, clock=_clock())
    finetune(config, "emodb", variant="linear", progress=progress)
    assert lines == ["run 1/2: fit linear on emodb, fold 1/2 (elapsed 1m00s, estimate after the first run)",
                     "run 2/2: fit linear on emodb, fold 2/2 (elapsed 2m00s, about 1m00s left)"]

    run = finetune_dir(config, "emodb", "linear")  # fold 2 and the run undone: a run killed in its last fold
    (run / "DONE").unlink()
    shutil.rmtree(run / "fold_1")
    lines.clear()
    progress = Progress(plan_finetune(config, "emodb", "linear"), emit=lines.append, clock=_clock())
    finetune(config, "emodb", variant="linear", resume=True, progress=progress)
    assert lines == ["run 2/2: fit linear on emodb, fold 2/2 (elapsed 1m00s, estimate after the first run)"]


def test_a_finetuned_run_plans_its_pretraining_first(fake_emodb, tmp_path: Path):
    config = _config(tmp_path, **{"model.use_bovw": True})
    units = plan_finetune(config, "emodb", "finetuned")
    assert [u.label for u in units] == ["pretrain vacnn on TESS + RAVDESS", "fine-tune vacnn + BOVW on emodb, fold 1/2",
                                        "pretrain vacnn on TESS + RAVDESS", "fine-tune vacnn + BOVW on emodb, fold 2/2"]
    assert Progress(units, emit=None).total == 3  # EmoDB's folds share one pretraining
    speaker = plan_finetune(replace(config, **{"protocol.name": "speaker"}), "emodb", "pure")
    assert [u.label for u in speaker] == ["train pure vacnn + BOVW on emodb, fold 1/2",
                                          "train pure vacnn + BOVW on emodb, fold 2/2"]  # one fold per speaker
    later = plan_finetune(replace(config, **{"protocol.first_fold": 1}), "emodb", "pure")
    assert [u.label for u in later] == ["train pure vacnn + BOVW on emodb, fold 2/2"]  # counted to the last fold
