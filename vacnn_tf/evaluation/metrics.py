"""Metrics and tables: accuracy, UAR, per-class P/R/F1, confusion matrices, mean/std over folds.

"Overall accuracy" is the paper's metric (section 4.3); unweighted average recall (UAR, the mean
of per-class recalls, i.e. balanced accuracy) is reported beside it because the corpora are
imbalanced. Everything returns pandas tables; :func:`write_table` writes CSV + Markdown and
:func:`plot_confusion` a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from vacnn_tf.storage import atomic_write, write_text


def _check(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length. Received: {t.shape} and {p.shape}")
    n = len(classes)
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
        raise ValueError(f"Class ids must lie in [0, {n}). Received ids up to {max(t.max(), p.max())}")
    return t, p


def confusion_counts(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """Confusion matrix of counts: rows are true classes, columns predicted classes."""
    t, p = _check(y_true, y_pred, classes)
    n = len(classes)
    counts = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    return pd.DataFrame(counts, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="pred"))


def normalize_rows(confusion: pd.DataFrame) -> pd.DataFrame:
    """Row-normalised confusion matrix (each true class sums to 1; empty rows stay 0)."""
    values = confusion.to_numpy(dtype=float)
    sums = values.sum(axis=1, keepdims=True)
    return pd.DataFrame(
        np.divide(values, sums, out=np.zeros_like(values), where=sums > 0),
        index=confusion.index,
        columns=confusion.columns,
    )


def per_class_table(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support (zero where undefined, as sklearn's zero_division=0)."""
    cm = confusion_counts(y_true, y_pred, classes).to_numpy(dtype=float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)},
        index=pd.Index(classes, name="class"),
    )


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Overall accuracy: correct predictions over all predictions."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if len(t) else float("nan")


def uar(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> float:
    """Unweighted average recall over the classes present in ``y_true`` (sklearn's balanced accuracy)."""
    table = per_class_table(y_true, y_pred, classes)
    present = table["support"] > 0
    return float(table.loc[present, "recall"].mean()) if present.any() else float("nan")


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1) of fold or seed figures; 0 for a single value, as in every report."""
    a = np.asarray(values, dtype=float)
    return float(a.std(ddof=1)) if len(a) > 1 else 0.0


def fold_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """All metrics of one fold as a JSON-ready dict (accuracy, uar, per_class, confusion)."""
    table = per_class_table(y_true, y_pred, classes)
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "uar": uar(y_true, y_pred, classes),
        "macro_f1": float(table.loc[table["support"] > 0, "f1"].mean()) if len(y_true) else float("nan"),
        "classes": list(classes),
        "per_class": {c: {k: float(v) for k, v in row.items()} for c, row in table.iterrows()},
        "confusion": confusion_counts(y_true, y_pred, classes).to_numpy().tolist(),
    }


def summarize_folds(per_fold: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("accuracy", "uar", "macro_f1"),
                    names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per fold plus ``mean`` and ``std`` rows (sample std, ddof=1; 0 for a single fold).

    ``names`` label the fold rows (default ``fold_0`` ...): a run of the later folds alone
    (``protocol.first_fold``) keeps each fold's own index.
    """
    names = list(names) if names is not None else [f"fold_{i}" for i in range(len(per_fold))]
    rows = {name: {k: float(m[k]) for k in keys} | {"n": int(m.get("n", 0))} for name, m in zip(names, per_fold)}
    df = pd.DataFrame.from_dict(rows, orient="index")
    values = df[list(keys)]
    df.loc["mean"] = values.mean().tolist() + [int(df["n"].sum())]
    df.loc["std"] = values.std(ddof=1).fillna(0.0).tolist() + [0]
    df["n"] = df["n"].astype(int)
    df.index.name = "fold"
    return df


def mean_per_class(per_fold: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-class precision/recall/F1 averaged over folds (columns ``*_mean`` and ``*_std``).

    A fold whose test part has no utterance of a class (EmoDB's speaker 08 recorded no disgust)
    says nothing about that class and is left out of its mean and std, not counted as a zero.
    """
    frames = [pd.DataFrame(m["per_class"]).T for m in per_fold]
    stacked = pd.concat(frames, keys=range(len(frames)))
    absent = stacked["support"] <= 0
    stacked.loc[absent, ["precision", "recall", "f1"]] = np.nan
    grouped = stacked.groupby(level=1, sort=False)[["precision", "recall", "f1"]]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std"))
    out = out[[c for k in ("precision", "recall", "f1") for c in (f"{k}_mean", f"{k}_std")]]
    out.index.name = "class"
    return out.reindex(per_fold[0]["classes"])


def write_table(df: pd.DataFrame, stem: str | Path, floatfmt: str = ".4f") -> tuple[Path, Path]:
    """Write ``stem.csv`` and ``stem.md`` (Markdown via ``DataFrame.to_markdown``), atomically."""
    stem = Path(stem)
    csv_path = atomic_write(stem.with_suffix(".csv"), lambda p: df.to_csv(p))
    # object dtype keeps integer columns (support, n) integer in the Markdown rendering
    md_path = write_text(stem.with_suffix(".md"), df.astype(object).to_markdown(floatfmt=floatfmt) + "\n")
    return csv_path, md_path


def plot_confusion(confusion: pd.DataFrame, path: str | Path, title: str = "", normalized: bool = False) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) to a PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    values = confusion.to_numpy(dtype=float)
    n = len(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.65 * n), dpi=120)
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(values.max(), 1))
    ax.set_xticks(range(n), confusion.columns, rotation=45, ha="right")
    ax.set_yticks(range(n), confusion.index)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    threshold = (1 if normalized else values.max()) / 2
    for i in range(n):
        for j in range(n):
            text = f"{values[i, j]:.2f}" if normalized else f"{int(values[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"), suffix=".png")
    plt.close(fig)
    return out


def predictions_frame(paths: Sequence[str], y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """The predictions.csv table: path, label, pred (class names) and prob_<class> columns."""
    probs = np.asarray(probs, dtype=float)
    df = pd.DataFrame({
        "path": list(paths),
        "label": [classes[i] for i in y_true],
        "pred": [classes[i] for i in probs.argmax(axis=1)],
    })
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j]
    return df


def evaluate_predictions(fold_frames: Sequence[pd.DataFrame], classes: Sequence[str], out_dir: str | Path,
                         title: str = "", caveat: str = "", names: Optional[Sequence[str]] = None) -> dict[str, pd.DataFrame]:
    """Tables of a run from its per-fold predictions, written under ``out_dir`` (RUN/metrics).

    Writes ``summary`` (per fold + mean/std of accuracy, UAR, macro-F1), ``per_class`` (mean and std
    over folds), ``per_class_pooled`` and ``confusion`` / ``confusion_normalized`` (pooled over
    folds, as the paper's Tables 4-9), each as CSV + Markdown, and both confusion PNGs.
    """
    out_dir = Path(out_dir)
    index = {c: i for i, c in enumerate(classes)}
    per_fold, all_t, all_p = [], [], []
    for frame in fold_frames:
        t = frame["label"].map(index).to_numpy()
        p = frame["pred"].map(index).to_numpy()
        per_fold.append(fold_metrics(t, p, classes))
        all_t.append(t)
        all_p.append(p)
    t, p = np.concatenate(all_t), np.concatenate(all_p)
    confusion = confusion_counts(t, p, classes)
    tables = {
        "summary": summarize_folds(per_fold, names=names),
        "per_class": mean_per_class(per_fold),
        "per_class_pooled": per_class_table(t, p, classes),
        "confusion": confusion,
        "confusion_normalized": normalize_rows(confusion),
    }
    for name, df in tables.items():
        write_table(df, out_dir / name)
    plot_confusion(confusion, out_dir / "confusion.png", title=title)
    plot_confusion(tables["confusion_normalized"], out_dir / "confusion_normalized.png", title=title, normalized=True)
    if caveat:
        write_text(out_dir / "CAVEAT.md", caveat + "\n")
    return tables
