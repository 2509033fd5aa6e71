"""Our numbers beside the paper's: long-format frames and side-by-side confusion heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from reproduce import paper
from reproduce.common import Outcome, summary_of
from vacnn_tf.config import RunConfig

PRF = ("precision", "recall", "f1")


def per_class(run_dir: Path) -> pd.DataFrame:
    """Per-class precision/recall/F1 pooled over the run's test folds (indexed by class)."""
    return pd.read_csv(run_dir / "metrics" / "per_class_pooled.csv", index_col=0)


def prf_rows(dataset: str, outcome: Outcome, paper_prf: Mapping[str, tuple[float, float, float]],
             config: RunConfig) -> list[dict[str, object]]:
    """One row per class (+ average) with ours, the paper's and the difference (proportions)."""
    ours = per_class(outcome.run_dir) if outcome.ok else None
    rows = []
    for cls, theirs in paper_prf.items():
        row: dict[str, object] = {"dataset": dataset, "class": cls}
        for metric, value in zip(PRF, theirs):
            mine = _lookup(ours, cls, metric)
            row[metric] = mine
            row[f"paper_{metric}"] = value
            row[f"delta_{metric}"] = mine - value if np.isfinite(mine) else np.nan
        row.update(protocol=config.protocol.name, profile=config.profile, status=outcome.status)
        rows.append(row)
    return rows


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


def accuracy_row(dataset: str, method: str, outcome: Outcome, paper_accuracy: float, config: RunConfig,
                 label: str = "") -> dict[str, object]:
    """One accuracy row in percent, as the paper prints accuracies."""
    stats = summary_of(outcome.run_dir) if outcome.ok else {k: np.nan for k in ("accuracy", "accuracy_std", "uar", "uar_std")}
    return {
        "dataset": dataset,
        "method": method,
        "label": label or method,
        "accuracy": stats["accuracy"],
        "uar": stats["uar"],
        "accuracy_std": stats["accuracy_std"],
        "uar_std": stats["uar_std"],
        "paper_accuracy": paper_accuracy,
        "delta": stats["accuracy"] - paper_accuracy,
        "protocol": config.protocol.name,
        "profile": config.profile,
        "status": outcome.status,
    }


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


def per_class_table(dataset: str, config: RunConfig, outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    """Tables 4-6: the fine-tuned VACNN + BOVW's per-class P/R/F1 on one target."""
    from reproduce.common import notes_for, write_outputs

    number = paper.TABLE_PRF_NUMBER[dataset]
    rows = prf_rows(dataset, outcomes[0], paper.TABLE_PRF[dataset], config)
    notes = notes_for(config, outcomes) + [
        "Per-class precision, recall and F1 pooled over the test folds; 'average' is the macro average."]
    return list(write_outputs(out, f"table{number}", frame(rows),
                              f"Table {number}: fine-tuned VACNN + BOVW on {dataset}, per class", notes))


def confusion_table(dataset: str, config: RunConfig, outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    """Tables 7-9: the fine-tuned VACNN + BOVW's row-normalised confusion matrix on one target."""
    from reproduce.common import notes_for, write_outputs

    number = paper.CONFUSION_TABLE_NUMBER[dataset]
    rows, mine = confusion_rows(dataset, outcomes[0], config)
    notes = notes_for(config, outcomes) + [
        "Rows: true class; columns: predicted; pooled over the test folds and normalised per row."]
    files = list(write_outputs(out, f"table{number}", frame(rows),
                               f"Table {number}: confusion matrix on {dataset}", notes))
    files.append(plot_side_by_side(dataset, mine, out / f"table{number}.png", f"{config.profile} profile"))
    return files
