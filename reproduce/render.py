"""Our numbers beside the paper's: long-format frames and side-by-side confusion heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from reproduce import paper
from reproduce.common import Outcome, seeds_in, summary_of
from vacnn_tf.config import RunConfig
from vacnn_tf.training.seeds import SeedReport, seed_report

PRF = ("precision", "recall", "f1")


def per_class(run_dir: Path) -> pd.DataFrame:
    """Per-class precision/recall/F1 pooled over the run's test folds (indexed by class)."""
    return pd.read_csv(run_dir / "metrics" / "per_class_pooled.csv", index_col=0)


def prf_rows(dataset: str, outcome: Outcome, paper_prf: Mapping[str, tuple[float, float, float]],
             config: RunConfig, protocol: Optional[str] = None) -> list[dict[str, object]]:
    """One row per class (+ average) with ours, the paper's and the difference, in percent;
    ``protocol`` names the split when it is not ``config.protocol``'s."""
    ours = per_class(outcome.run_dir) if outcome.ok else None
    rows = []
    for cls, theirs in paper_prf.items():
        row: dict[str, object] = {"dataset": dataset, "class": cls}
        for metric, value in zip(PRF, theirs):
            mine = 100 * _lookup(ours, cls, metric)
            row[metric] = mine
            row[f"paper_{metric}"] = paper_percent(value)
            row[f"delta_{metric}"] = mine - paper_percent(value) if np.isfinite(mine) else np.nan
        row.update(protocol=protocol or config.protocol.name, profile=config.profile, status=outcome.status)
        rows.append(row)
    return rows


def paper_percent(proportion: float) -> float:
    """A proportion the paper prints (0.58) in percent, to its two digits: 58.0, not 57.99999999999999."""
    return round(100 * proportion, 2)


def _lookup(table: pd.DataFrame | None, cls: str, metric: str) -> float:
    if table is None:
        return float("nan")
    key = cls
    if cls == "average":  # the paper's "Average" row is the macro average
        key = next((k for k in ("macro avg", "macro", "average", "mean") if k in table.index), None)
        if key is None:
            return float(table[metric].mean()) if metric in table else float("nan")
    if key not in table.index or metric not in table.columns:
        return float("nan")
    return float(table.loc[key, metric])


def accuracy_rows(dataset: str, method: str, outcome: Outcome, paper_accuracy: float, config: RunConfig,
                  label: str = "") -> list[dict[str, object]]:
    """:func:`accuracy_row`, followed by the seed ensemble's row when ``outcome.ensemble``."""
    report = _seed_report(outcome)
    rows = [_accuracy_row(dataset, method, outcome, paper_accuracy, config, label, report)]
    if outcome.ensemble:
        rows.append(_ensemble_row(dataset, method, outcome, paper_accuracy, config, label, report))
    return rows


def accuracy_row(dataset: str, method: str, outcome: Outcome, paper_accuracy: float, config: RunConfig,
                 label: str = "") -> dict[str, object]:
    """One accuracy row in percent, as the paper prints accuracies.

    One seed: the run's mean and standard deviation over test folds. Several seeds: the mean over
    seeds of each seed's fold mean, ``*_std`` over seeds, ``*_fold_std`` over all folds of all
    seeds, and ``n_seeds``.
    """
    return _accuracy_row(dataset, method, outcome, paper_accuracy, config, label, _seed_report(outcome))


def _seed_report(outcome: Outcome) -> Optional[SeedReport]:
    return seed_report(outcome.seed_runs) if outcome.ok and outcome.several_seeds else None


def _row(dataset: str, method: str, label: str, stats: Mapping[str, float], paper_accuracy: float,
         config: RunConfig, status: str) -> dict[str, object]:
    return {
        "dataset": dataset,
        "method": method,
        "label": label,
        "accuracy": stats["accuracy"],
        "uar": stats["uar"],
        "accuracy_std": stats["accuracy_std"],
        "uar_std": stats["uar_std"],
        "paper_accuracy": paper_accuracy,
        "delta": stats["accuracy"] - paper_accuracy,
        "protocol": config.protocol.name,
        "profile": config.profile,
        "status": status,
    }


def _accuracy_row(dataset: str, method: str, outcome: Outcome, paper_accuracy: float, config: RunConfig,
                  label: str, report: Optional[SeedReport]) -> dict[str, object]:
    stats = {k: np.nan for k in ("accuracy", "accuracy_std", "uar", "uar_std", "accuracy_fold_std", "uar_fold_std")}
    if report is not None:
        stats = {"accuracy": 100 * report.accuracy_mean, "accuracy_std": 100 * report.accuracy_std,
                 "uar": 100 * report.uar_mean, "uar_std": 100 * report.uar_std,
                 "accuracy_fold_std": 100 * report.accuracy_fold_std, "uar_fold_std": 100 * report.uar_fold_std}
    elif outcome.ok:
        stats = summary_of(outcome.run_dir)
    row = _row(dataset, method, label or method, stats, paper_accuracy, config, outcome.status)
    if outcome.several_seeds:
        row.update(accuracy_fold_std=stats["accuracy_fold_std"], uar_fold_std=stats["uar_fold_std"],
                   n_seeds=len(outcome.seeds))
    return row


def _ensemble_row(dataset: str, method: str, outcome: Outcome, paper_accuracy: float, config: RunConfig,
                  label: str, report: Optional[SeedReport]) -> dict[str, object]:
    """The seed ensemble (ours, not the paper's): one prediction per utterance, so no spread."""
    stats = {"accuracy": np.nan, "uar": np.nan, "accuracy_std": np.nan, "uar_std": np.nan}
    status = outcome.status if not outcome.ok else "no seed ensemble: one seed"
    utterances = 0
    if report is not None:
        ens = report.ensemble
        stats.update(accuracy=100 * ens.accuracy, uar=100 * ens.uar)
        status, utterances = ens.coverage or "ok", ens.utterances
    row = _row(dataset, f"{method}_seed_ensemble", f"{label or method} (seed ensemble)", stats, paper_accuracy,
               config, status)
    row.update(n_seeds=len(outcome.seeds), utterances=utterances)
    return row


def accuracy_notes(config: RunConfig, outcomes: Sequence[Outcome]) -> list[str]:
    """What the accuracy columns mean, for one seed or several, and the seed ensemble's rows."""
    seeds = seeds_in(outcomes)
    if len(seeds) < 2:
        return ["Accuracy and UAR in percent, mean over test folds; *_std over folds."]
    notes = [f"Accuracy and UAR in percent over the {len(seeds)} seeds: the mean over "
             "seeds of each seed's mean over test folds; accuracy_std and uar_std are the standard deviation "
             "over seeds of those fold means, *_fold_std over all folds of all seeds; n_seeds counts the seeds."]
    if any(o.ensemble for o in outcomes):
        notes.append("Rows '(seed ensemble)' are ours, not the paper's: each utterance's class probabilities averaged "
                     "over the seeds' runs (each tested it in the fold that left it out of training), scored once; "
                     "utterances counts those every seed's run tested, and the status says when that is not all "
                     "of them (protocol.max_folds, protocol.subsample).")
        if config.data.data_root is None:
            notes.append("The synthetic corpus is generated from the seed: runs of different seeds test different "
                         "utterances, and no seed ensemble can be formed on it.")
    return notes


def first_seed_notes(outcomes: Sequence[Outcome]) -> list[str]:
    """For the tables that show one run: which seed's, when several were run."""
    seeds = seeds_in(outcomes)
    if len(seeds) < 2:
        return []
    return [f"Several seeds were run ({', '.join(map(str, seeds))}); this table shows the first seed's run "
            f"(seed {seeds[0]}) only."]


def confusion_rows(dataset: str, outcome: Outcome, config: RunConfig) -> tuple[list[dict[str, object]], np.ndarray | None]:
    """Row-normalised confusion in the paper's class order, long format, with the paper's beside it."""
    names = paper.CONFUSION_CLASSES[dataset]
    theirs = np.array(paper.CONFUSION[dataset])
    mine = None
    if outcome.ok:
        table = pd.read_csv(outcome.run_dir / "metrics" / "confusion_normalized.csv", index_col=0)
        mine = table.loc[list(names), list(names)].to_numpy(dtype=float)
    rows = []
    for i, true in enumerate(names):
        for j, pred in enumerate(names):
            ours = float(mine[i, j]) if mine is not None else np.nan
            rows.append({
                "dataset": dataset, "true": true, "predicted": pred, "ours": ours,
                "paper": float(theirs[i, j]), "delta": ours - float(theirs[i, j]),
                "protocol": config.protocol.name, "profile": config.profile, "status": outcome.status,
            })
    return rows, mine


def plot_side_by_side(dataset: str, ours: np.ndarray | None, path: Path, subtitle: str) -> Path:
    """Our row-normalised confusion matrix beside the paper's, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vacnn_tf.storage import atomic_write

    names = paper.CONFUSION_CLASSES[dataset]
    theirs = np.array(paper.CONFUSION[dataset])
    n = len(names)
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.3 * n, 1.2 + 0.6 * n), dpi=110)
    for ax, values, title in ((axes[0], ours, f"ours ({subtitle})"), (axes[1], theirs, "paper")):
        if values is None:
            values = np.full((n, n), np.nan)
            ax.text(n / 2 - 0.5, n / 2 - 0.5, "not run", ha="center", va="center", fontsize=14)
        ax.imshow(np.nan_to_num(values), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if values[i, j] > 0.5 else "black")
    fig.suptitle(f"{dataset}: confusion matrix, rows normalised")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"), suffix=".png")
    plt.close(fig)
    return path


def frame(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
