"""One recipe over several seeds: the spread over seeds, and the seed ensemble.

``seed`` drives folds, initial weights and sampling at once, so two seeds of one recipe differ
by all three. :func:`seed_report` reads finished fine-tuning runs of one recipe that differ
only in ``seed`` and returns

* per seed, the run's mean accuracy and UAR over its test folds;
* the mean and standard deviation over seeds of those fold means, and the standard deviation
  over all folds of all seeds;
* the **seed ensemble** (ours, not the paper's): each utterance's class probabilities averaged
  over the runs, then scored once with :func:`vacnn_tf.evaluation.metrics.fold_metrics`.

Under cross-validation and leave-one-speaker-out a run tests each utterance once, in the fold
that left it out of training, so the average is an out-of-fold prediction for every utterance
(under the ``paper`` protocol it keeps that protocol's leaks, RAVDESS seen in pretraining). A
run that tests only part of the corpus (``protocol.max_folds``, ``protocol.subsample``, or the
synthetic corpus, which is generated from the seed) leaves the ensemble the utterances every
run tested; the report says how many.

Nothing here writes files except :func:`write_seed_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from vacnn_tf.config import ConfigError, load_config, replace, to_dict
from vacnn_tf.evaluation.metrics import fold_metrics, predictions_frame, sample_std
from vacnn_tf.storage import atomic_write, read_json, write_json
from vacnn_tf.training.run_dirs import is_done, neutral_config, run_key

ENSEMBLE_NOTE = ("Seed ensemble: ours, not the paper's. Each utterance's class probabilities are averaged over "
                 "the runs of every seed (each tested it in the fold that left it out of training) and scored once.")
# What a run's summary.json says about its recipe beyond config.yaml, and what else is read from it.
_SUMMARY_RECIPE = ("target", "variant", "classes")
_SUMMARY_KEYS = _SUMMARY_RECIPE + ("protocol", "architecture", "use_bovw", "folds")


class SeedRunsError(ValueError):
    """A run that cannot join the others: not a finished fine-tuning run, or another recipe."""


@dataclass(frozen=True)
class SeedRun:
    """One seed's run: its fold figures and their means (proportions, as the run reports them)."""

    seed: int
    run_dir: str
    fold_accuracy: tuple[float, ...]
    fold_uar: tuple[float, ...]
    utterances: int  # tested by this run, over all its folds

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.fold_accuracy))

    @property
    def uar(self) -> float:
        return float(np.mean(self.fold_uar))


@dataclass(frozen=True)
class SeedEnsemble:
    """The runs' averaged probabilities, scored once over the utterances every run tested."""

    runs: int
    utterances: int  # tested by every run: what the ensemble scores
    tested_by_any: int  # tested by at least one run
    accuracy: float
    uar: float
    macro_f1: float
    synthetic: bool = False  # runs on the synthetic corpus, which each seed generates anew

    @property
    def complete(self) -> bool:
        return self.utterances == self.tested_by_any

    @property
    def coverage(self) -> str:
        """Empty when every tested utterance is in the ensemble, else how many are and why."""
        if self.complete:
            return ""
        if self.utterances == 0:
            why = "; the synthetic corpus is generated from the seed, so each seed has utterances of its own"
            return (f"no utterance was tested by all {self.runs} runs ({self.tested_by_any} tested by some)"
                    + (why if self.synthetic else ""))
        return f"over {self.utterances} of {self.tested_by_any} utterances, those all {self.runs} runs tested"


@dataclass(frozen=True)
class SeedReport:
    """:func:`seed_report`'s answer. Proportions (0-1); standard deviations are sample ones (ddof=1)."""

    recipe: dict[str, Any]
    runs: tuple[SeedRun, ...]
    ensemble: SeedEnsemble
    predictions: pd.DataFrame = field(repr=False, compare=False)  # the ensemble's, per utterance

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.runs)

    @property
    def accuracy_mean(self) -> float:
        return float(np.mean([r.accuracy for r in self.runs]))

    @property
    def accuracy_std(self) -> float:
        """Over seeds, of each seed's mean over folds."""
        return sample_std([r.accuracy for r in self.runs])

    @property
    def uar_mean(self) -> float:
        return float(np.mean([r.uar for r in self.runs]))

    @property
    def uar_std(self) -> float:
        return sample_std([r.uar for r in self.runs])

    @property
    def accuracy_fold_std(self) -> float:
        """Over all folds of all seeds."""
        return sample_std([a for r in self.runs for a in r.fold_accuracy])

    @property
    def uar_fold_std(self) -> float:
        return sample_std([a for r in self.runs for a in r.fold_uar])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as null): recipe, per seed, over seeds, over folds, ensemble."""
        return _no_nan({
            "recipe": self.recipe,
            "seeds": [{"seed": r.seed, "run_dir": r.run_dir, "accuracy": r.accuracy, "uar": r.uar,
                       "folds": [{"accuracy": a, "uar": u} for a, u in zip(r.fold_accuracy, r.fold_uar)],
                       "utterances": r.utterances} for r in self.runs],
            "over_seeds": {"n": len(self.runs), "accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std,
                           "uar_mean": self.uar_mean, "uar_std": self.uar_std},
            "over_folds": {"n": sum(len(r.fold_accuracy) for r in self.runs),
                           "accuracy_std": self.accuracy_fold_std, "uar_std": self.uar_fold_std},
            "ensemble": {"runs": self.ensemble.runs, "utterances": self.ensemble.utterances,
                         "tested_by_any": self.ensemble.tested_by_any, "accuracy": self.ensemble.accuracy,
                         "uar": self.ensemble.uar, "macro_f1": self.ensemble.macro_f1,
                         "coverage": self.ensemble.coverage or "every utterance tested", "note": ENSEMBLE_NOTE},
        })


def _no_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True)
class _Run:
    """What one run directory holds, read once."""

    path: Path
    seed: int
    recipe: dict[str, Any]  # flattened: the config without its seed, plus target, variant, classes
    key: str  # run_key of the config without its seed
    summary: dict[str, Any]
    predictions: pd.DataFrame  # indexed by path


def _read_run(path: Path) -> _Run:
    if not path.is_dir():
        raise SeedRunsError(f"{path}: no such run directory")
    if not is_done(path) or not (path / "summary.json").is_file():
        raise SeedRunsError(f"{path}: not a finished fine-tuning run (needs DONE and summary.json)")
    try:
        config = load_config(base=yaml.safe_load((path / "config.yaml").read_text()) or {})
    except (OSError, ConfigError) as err:
        raise SeedRunsError(f"{path}: config.yaml does not load: {err}") from err
    summary = read_json(path / "summary.json")
    lacking = [k for k in _SUMMARY_KEYS if k not in summary]
    if lacking:
        raise SeedRunsError(f"{path}: summary.json lacks {lacking}")
    unseeded = neutral_config(replace(config, seed=0))
    recipe = pd.json_normalize(to_dict(unseeded)).iloc[0].to_dict()
    recipe.update({k: summary[k] for k in _SUMMARY_RECIPE})
    frames = []
    for fold in summary["folds"]:
        csv = path / f"fold_{fold['fold']}" / "predictions.csv"
        if not csv.is_file():
            raise SeedRunsError(f"{path}: {csv.relative_to(path)} missing")
        frames.append(pd.read_csv(csv))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["path", "label"])
    repeated = predictions["path"].duplicated()
    if repeated.any():
        raise SeedRunsError(f"{path}: tests {int(repeated.sum())} utterance(s) more than once "
                            f"(e.g. {predictions['path'][repeated].iloc[0]}); an ensemble needs each at most once per run")
    missing = [f"prob_{c}" for c in summary["classes"] if f"prob_{c}" not in predictions.columns]
    if missing:
        raise SeedRunsError(f"{path}: predictions lack the columns {missing}")
    return _Run(path, config.seed, recipe, run_key(unseeded), summary, predictions.set_index("path"))


def _check_same_recipe(runs: Sequence[_Run]) -> None:
    first = runs[0]
    seen = {first.seed: first.path}
    for run in runs[1:]:
        if run.seed in seen:
            raise SeedRunsError(f"{run.path}: seed {run.seed} again (also {seen[run.seed]}); give each seed once")
        seen[run.seed] = run.path
        differ = [k for k in first.recipe if first.recipe[k] != run.recipe.get(k)]
        if differ:
            shown = ", ".join(f"{k}={run.recipe.get(k)!r} (not {first.recipe[k]!r})" for k in differ[:3])
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            raise SeedRunsError(f"{run.path}: another recipe than {first.path}: {shown}{more}; only `seed` may differ")


def _ensemble(runs: Sequence[_Run], classes: list[str]) -> tuple[SeedEnsemble, pd.DataFrame]:
    common = sorted(set.intersection(*(set(r.predictions.index) for r in runs)))
    tested = set.union(*(set(r.predictions.index) for r in runs))
    labels = runs[0].predictions.loc[common, "label"]
    for run in runs[1:]:
        other = run.predictions.loc[common, "label"]
        differ = other != labels
        if differ.any():
            where = labels.index[differ.to_numpy()][0]
            raise SeedRunsError(f"{run.path}: utterance {where} is labelled {other[where]!r} here and "
                                f"{labels[where]!r} in {runs[0].path}")
    columns = [f"prob_{c}" for c in classes]
    probs = np.mean([r.predictions.loc[common, columns].to_numpy(dtype=float) for r in runs], axis=0)
    probs = probs.reshape(len(common), len(classes))
    index = {c: i for i, c in enumerate(classes)}
    y_true = labels.map(index).to_numpy(dtype=int)
    metrics = fold_metrics(y_true, probs.argmax(axis=1), classes)
    table = predictions_frame(common, y_true, probs, classes)
    for run in runs:  # each seed's own call beside the ensemble's, to see where they disagree
        table[f"pred_seed_{run.seed}"] = run.predictions.loc[common, "pred"].to_numpy()
    ensemble = SeedEnsemble(runs=len(runs), utterances=len(common), tested_by_any=len(tested),
                            accuracy=metrics["accuracy"], uar=metrics["uar"], macro_f1=metrics["macro_f1"],
                            synthetic=runs[0].recipe["data.data_root"] is None)
    return ensemble, table


def seed_report(run_dirs: Sequence[str | Path]) -> SeedReport:
    """Read finished fine-tuning runs of one recipe, one per seed, and sum them up.

    Args:
        run_dirs: Run directories (``RUN/`` with ``DONE``, ``summary.json``, ``config.yaml`` and
            ``fold_K/predictions.csv``), in the order the seeds are to be listed.

    Returns:
        The per-seed figures, their spread over seeds and over folds, and the seed ensemble.

    Raises:
        SeedRunsError: no run given; a run that is not a finished fine-tuning run; a seed given
            twice; runs whose config (without ``seed``), target, variant or classes differ; an
            utterance labelled differently by two runs. The message is one line naming the run.
    """
    if not run_dirs:
        raise SeedRunsError("no run directory given")
    runs = [_read_run(Path(p)) for p in run_dirs]
    _check_same_recipe(runs)
    classes = list(runs[0].summary["classes"])
    ensemble, table = _ensemble(runs, classes)
    recipe = {k: runs[0].summary[k] for k in ("target", "variant", "protocol", "architecture", "use_bovw", "classes")}
    recipe["key"] = runs[0].key
    seeds = tuple(SeedRun(seed=r.seed, run_dir=str(r.path),
                          fold_accuracy=tuple(float(f["accuracy"]) for f in r.summary["folds"]),
                          fold_uar=tuple(float(f["uar"]) for f in r.summary["folds"]),
                          utterances=len(r.predictions)) for r in runs)
    return SeedReport(recipe=recipe, runs=seeds, ensemble=ensemble, predictions=table)


def write_seed_report(report: SeedReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``seeds.json`` (:meth:`SeedReport.as_dict`) and ``ensemble_predictions.csv`` under ``out_dir``."""
    out = Path(out_dir)
    json_path = write_json(out / "seeds.json", report.as_dict())
    csv_path = atomic_write(out / "ensemble_predictions.csv", lambda p: report.predictions.to_csv(p, index=False))
    return json_path, csv_path
