"""Progress across a grid of trainings: one line as each training starts, with the time left.

A *unit* is one training: a pretraining, or one fold of a fine-tuning run (the linear reference's
folds included). A runner plans its units first (:func:`plan_pretrain`, :func:`plan_finetune`),
so that the count is known before anything trains, then hands one :class:`Progress` to
:func:`vacnn_tf.training.pretraining.pretrain` / :func:`vacnn_tf.training.finetuning.finetune`, which report each unit
as it starts and ends::

    run 7/22: fine-tune vacnn + BOVW on savee, fold 1/1 (elapsed 3m12s, about 5m40s left)

Units found finished on disk (a resumed grid) count as done but are left out of the estimate,
which is the time per unit trained in this process times the units left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import pandas as pd

from vacnn_tf.config import RunConfig

log = logging.getLogger(__name__)

PRETRAIN_CORPORA_LABEL = "TESS + RAVDESS"
VERBS = {"finetuned": "fine-tune", "pure": "train pure", "linear": "fit"}


@dataclass(frozen=True)
class Unit:
    """One training of a grid.

    Attributes:
        key: The directory it writes (a pretraining run or a fine-tuning run's ``fold_K``); units
            that share a directory are one unit (a pretraining several runs reuse).
        label: What the progress line calls it.
        done: Finished on disk already.
        pretraining: The unit is a pretraining (workers take those first).
        exclude: A pretraining's held-out speakers, ``((corpus, (speaker, ...)), ...)``.
    """

    key: str
    label: str
    done: bool = False
    pretraining: bool = False
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()


def unit_key(path: str | Path) -> str:
    """The key of the unit that writes ``path``: the plan and the training spell it alike."""
    return str(Path(path))


def model_label(config: RunConfig, variant: str = "finetuned") -> str:
    """``vacnn + BOVW``: the architecture as the config names it (``linear`` for the linear
    reference, which has none), and whether the BOVW histogram is used."""
    name = "linear" if variant == "linear" else config.model.architecture
    return name + (" + BOVW" if config.model.use_bovw else "")


def fold_label(config: RunConfig, target: str, variant: str, index: int, n_folds: int) -> str:
    """``fine-tune vacnn + BOVW on savee, fold 1/1`` (folds counted from 1; ``n_folds`` counts up to
    the run's last fold, so a run of the later folds alone reads ``fold 4/5``, not ``fold 4/2``)."""
    return f"{VERBS.get(variant, variant)} {model_label(config, variant)} on {target}, fold {index + 1}/{n_folds}"


def pretrain_label(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """``pretrain vacnn on TESS + RAVDESS``, naming the speakers held out when there are any."""
    held = "; ".join(f"{name} speakers {', '.join(map(str, speakers))}" for name, speakers in sorted((exclude or {}).items())
                     if speakers)
    return f"pretrain {config.model.architecture} on {PRETRAIN_CORPORA_LABEL}" + (f" without {held}" if held else "")


def duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``1h05m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts a grid's units and reports each one as it starts.

    Args:
        units: The planned units; a key planned twice is one unit, done only if every plan says so.
        emit: Where each line goes (default: this module's logger at INFO); None says nothing.
        clock: Seconds, monotonic (tests pass a fake one).
        finished: Whether a unit's key is finished on disk, asked of the units not yet seen as
            each unit starts; with other workers in the same folder, what they finished counts as
            done (and no part of this process's estimate).
        workers: Processes sharing the units left, this one included: the estimate divides them.
    """

    def __init__(self, units: Iterable[Unit] = (), *, emit: Optional[Callable[[str], None]] = log.info,
                 clock: Callable[[], float] = time.monotonic, finished: Optional[Callable[[str], bool]] = None,
                 workers: int = 1) -> None:
        self._emit = emit
        self._clock = clock
        self._finished = finished
        self._workers = max(1, int(workers))
        self._began = clock()
        self._first_start: Optional[float] = None
        self._planned: dict[str, bool] = {}
        for unit in units:
            self._planned[unit.key] = self._planned.get(unit.key, True) and unit.done
        self._seen = {key for key, done in self._planned.items() if done}  # done before, started or skipped
        self._trained = 0  # units trained to the end in this process

    @classmethod
    def quiet(cls) -> "Progress":
        """A progress that reports nothing (a single run outside a grid)."""
        return cls(emit=None)

    @property
    def total(self) -> int:
        return len(self._planned)

    @property
    def done(self) -> int:
        """Units done before this process, skipped as finished, or started in it."""
        return len(self._seen)

    def skip(self, key: str) -> None:
        """A unit found finished: done, and no part of the estimate."""
        self._planned.setdefault(key, True)
        self._seen.add(key)

    def start(self, key: str, label: str) -> str:
        """Report the unit about to train; an unplanned one joins the total. Returns the line."""
        now = self._clock()
        self._planned.setdefault(key, False)
        if key in self._seen:  # a unit started again after an error: count it once
            self._seen.discard(key)
        if self._finished is not None:
            self._seen.update(k for k in self._planned if k != key and k not in self._seen and self._finished(k))
        left_units = self.total - self.done
        self._seen.add(key)
        if self._first_start is None:
            self._first_start = now
        if self._trained:
            per_unit = (now - self._first_start) / self._trained
            estimate = f"about {duration(per_unit * left_units / self._workers)} left"
        else:
            estimate = "estimate after the first run"
        line = f"run {self.done}/{self.total}: {label} (elapsed {duration(now - self._began)}, {estimate})"
        if self._emit is not None:
            self._emit(line)
        return line

    def finish(self, key: str) -> None:
        """The unit started last trained to the end: it counts towards the estimate."""
        self._seen.add(key)
        self._trained += 1


# --- planning: which units a run will train, before it trains any ---------------------------------

def plan_pretrain(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None, *,
                  force: bool = False) -> list[Unit]:
    """The one unit of :func:`vacnn_tf.training.pretraining.pretrain` with its default run directory."""
    from vacnn_tf.training.run_dirs import is_done
    from vacnn_tf.training.run_dirs import pretrain_dir

    path = pretrain_dir(config, exclude)
    held_out = tuple(sorted((corpus, tuple(speakers)) for corpus, speakers in (exclude or {}).items()))
    return [Unit(unit_key(path), pretrain_label(config, exclude), done=not force and is_done(path), pretraining=True,
                 exclude=held_out)]


def plan_finetune(config: RunConfig, target: str, variant: str = "finetuned", *, force: bool = False,
                  tables: Optional[dict[tuple[object, ...], pd.DataFrame]] = None) -> list[Unit]:
    """The units of :func:`vacnn_tf.training.finetuning.finetune` with its default run directory.

    Its folds (read back from ``folds.json`` when the run exists, else made from the corpus table
    as the run will make them), and for ``finetuned`` the pretraining each unfinished fold needs.

    Args:
        config: The run's configuration.
        target: The target corpus.
        variant: ``finetuned``, ``pure`` or ``linear``.
        force: The run will be redone: nothing of it counts as done.
        tables: Corpus tables already read, shared by the plans of one grid (filled here), so
            that a corpus is scanned, and its unusable files reported, once per grid.
    """
    from vacnn_tf.datasets.folds import folds_from_json, make_folds, pretrain_exclusions
    from vacnn_tf.datasets.loading import read_table
    from vacnn_tf.storage import read_json
    from vacnn_tf.training.run_dirs import finetune_dir
    from vacnn_tf.training.run_dirs import is_done

    run_dir = finetune_dir(config, target, variant)
    tables = {} if tables is None else tables
    which = (target, config.data.data_root, config.data.synth_per_class, config.protocol.subsample, config.seed)
    if which not in tables:
        tables[which] = read_table(config, target)[0]
    table = tables[which]
    folds_path = run_dir / "folds.json"
    if folds_path.is_file() and not force:
        folds = folds_from_json(read_json(folds_path), table)
    else:
        folds = make_folds(table, config.protocol, config.seed, config.train.val_fraction, corpus=target)
    units = []
    for fold in folds:
        fold_dir = run_dir / f"fold_{fold.index}"
        done = not force and is_done(fold_dir)
        if variant == "finetuned" and not done:
            units += plan_pretrain(config, pretrain_exclusions(target, config.protocol.name, fold))
        units.append(Unit(unit_key(fold_dir), fold_label(config, target, variant, fold.index, folds[-1].index + 1), done))
    return units
