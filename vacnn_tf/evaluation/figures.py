"""Figures a person would rather look at than read: every stage of the pipeline as a PNG.

One public function per figure, each also a ``vacnn figures`` subcommand (:mod:`vacnn_tf.cli.figures`):

* :func:`plot_features` -- a waveform, its log-mel image (section 3.1) and the image with the
  KAZE keypoints the bag of visual words is built from (section 3.2).
* :func:`plot_bovw_histograms` -- the visual-word histogram of one utterance per class;
  :func:`bovw_figure_from_corpus` and :func:`bovw_figure_from_run` pick the utterances and
  the vocabulary.
* :func:`plot_attention` -- the channel (eq. 1) and spatial (eq. 2) attention of each VA (or
  CBAM) module of a model over one log-mel image, and a Grad-CAM class-activation map
  (Selvaraju et al. 2017) on the 14x14x288 ``head_relu`` map; :mod:`vacnn_tf.evaluation.explain`
  computes the numbers behind it. :func:`attention_figure` loads a ``.keras`` checkpoint of a
  run and a wav file. Both live in :mod:`vacnn_tf.evaluation.attention_figures`.
* :func:`plot_training_curves` -- loss and accuracy per epoch for every fold of a run, read
  from ``fold_K/history.csv`` (one row an epoch in Keras CSVLogger's layout, written by :mod:`vacnn_tf.training.fitting`).

Every figure is drawn with matplotlib's Agg backend (no display needed) and written
atomically (:func:`vacnn_tf.evaluation.plotting.save_figure`), so an interrupted command never leaves a
torn PNG behind. TensorFlow, OpenCV and matplotlib are imported inside the functions, as in
the rest of the package, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from vacnn_tf.config import BovwConfig, FeatureConfig, RunConfig
# The attention figure and the numbers behind it; re-exported so one import serves a notebook.
from vacnn_tf.evaluation.attention_figures import attention_figure, plot_attention
from vacnn_tf.evaluation.explain import AttentionMap, GradCam, attention_maps, grad_cam, input_names
from vacnn_tf.evaluation.plotting import pyplot, save_figure
from vacnn_tf.storage import bovw_cache_dir, features_cache_dir, read_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AttentionMap", "GradCam", "attention_figure", "attention_maps", "bovw_figure_from_corpus",
    "bovw_figure_from_run", "grad_cam", "kaze_keypoints", "one_per_class", "plot_attention",
    "plot_bovw_histograms", "plot_features", "plot_training_curves", "read_history", "save_figure",
]

# --- 1. waveform, log-mel image, KAZE keypoints ----------------------------------------------

def kaze_keypoints(image: np.ndarray, config: BovwConfig = BovwConfig()) -> list[Any]:
    """The KAZE keypoints whose descriptors go into the bag of visual words.

    ``detectAndCompute`` (not ``detect``) is used because computing descriptors drops
    keypoints too close to the border: these are exactly the ones that become visual words.

    Args:
        image: uint8 log-mel image, shape `(224, 224)`.
        config: KAZE settings (``bovw.kaze_*``).

    Returns:
        ``cv2.KeyPoint`` objects (``pt`` = (x, y), ``size``, ``angle``).
    """
    from vacnn_tf.features.kaze import kaze_detector

    keypoints, _ = kaze_detector(config).detectAndCompute(np.ascontiguousarray(image, dtype=np.uint8), None)
    return list(keypoints)


def _draw_keypoints(ax: Any, keypoints: Sequence[Any]) -> None:
    from matplotlib.patches import Circle

    for kp in keypoints:
        x, y = kp.pt
        radius = max(kp.size / 2.0, 1.0)
        ax.add_patch(Circle((x, y), radius, fill=False, color="#00e5ff", linewidth=0.6))
        if kp.angle >= 0:  # the orientation KAZE assigned (absent with kaze_upright)
            theta = np.deg2rad(kp.angle)
            ax.plot([x, x + radius * np.cos(theta)], [y, y + radius * np.sin(theta)], color="#00e5ff", linewidth=0.6)


def plot_features(
    wav_path: str | Path,
    out_path: str | Path,
    features: FeatureConfig = FeatureConfig(),
    bovw: BovwConfig = BovwConfig(),
    title: Optional[str] = None,
) -> dict[str, Any]:
    """Waveform, log-mel image and KAZE keypoints of one audio file, side by side.

    Args:
        wav_path: Any file libsndfile reads.
        out_path: The PNG to write.
        features: Log-mel settings (``features.*``: n_mels, fmax, top_db, orientation, ...).
        bovw: KAZE settings (``bovw.kaze_*``).
        title: Figure title; default: the file name and the main settings.

    Returns:
        ``{"path": Path, "seconds": float, "keypoints": int, "image": uint8 (224, 224)}``.

    Raises:
        vacnn_tf.features.logmel.AudioError: the file cannot become an image (the message names it).
    """
    from vacnn_tf.features.logmel import file_image, load_audio

    wave = load_audio(wav_path, features.sample_rate, min_duration=features.min_duration)
    image = file_image(wav_path, features)  # the exact image training uses (trimming included)
    keypoints = kaze_keypoints(image, bovw)
    seconds = len(wave) / features.sample_rate

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110, gridspec_kw={"width_ratios": [1.3, 1, 1]})
    t = np.arange(len(wave)) / features.sample_rate
    axes[0].plot(t, wave, linewidth=0.4, color="#333333")
    axes[0].set(xlabel="time (s)", ylabel="amplitude", title=f"waveform, {seconds:.2f} s at {features.sample_rate} Hz")
    axes[0].set_xlim(0, seconds)
    low = "bottom" if features.low_freq_at_bottom else "top"
    im = axes[1].imshow(image, cmap="magma", vmin=0, vmax=255, aspect="auto")
    axes[1].set(title=f"log-mel image ({features.n_mels} mels -> {image.shape[0]}x{image.shape[1]})",
                xlabel="time (whole utterance resized to the width)", ylabel=f"mel band (low at the {low})")
    cbar = fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
    cbar.set_label(f"pixel: -{features.top_db:g} dB -> 0, max -> 255", fontsize=8)
    axes[2].imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto")
    _draw_keypoints(axes[2], keypoints)
    axes[2].set(title=f"{len(keypoints)} KAZE keypoints (circle: scale)", xlabel="time", ylabel="")
    axes[2].set_xlim(-0.5, image.shape[1] - 0.5)
    axes[2].set_ylim(image.shape[0] - 0.5, -0.5)
    for ax in axes[1:]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{Path(wav_path).name}: n_mels={features.n_mels}, fmax={features.fmax or features.sample_rate / 2:g} Hz, "
                 f"KAZE threshold={bovw.kaze_threshold:g}", fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, out_path)
    return {"path": path, "seconds": seconds, "keypoints": len(keypoints), "image": image}


# --- 2. BOVW histograms, one utterance per class ---------------------------------------------

def one_per_class(table: "pd.DataFrame", classes: Sequence[str]) -> "pd.DataFrame":
    """The first utterance (by path) of each class present in ``table``, in ``classes`` order.

    First by path rather than at random: in EmoDB and the synthetic corpus this is the same
    speaker and text for every class, so the histograms differ by emotion, not by voice.
    """
    rows = [table[table["label"] == c].sort_values("path").iloc[0] for c in classes if (table["label"] == c).any()]
    if not rows:
        raise ValueError(f"No utterance of the classes {list(classes)} in the table.")
    import pandas as pd

    return pd.DataFrame(rows).reset_index(drop=True)


def plot_bovw_histograms(
    histograms: Mapping[str, np.ndarray],
    out_path: str | Path,
    sources: Optional[Mapping[str, str]] = None,
    title: str = "",
) -> Path:
    """One bar chart of visual-word frequencies per class, stacked, on a shared scale.

    Args:
        histograms: class name -> histogram `(k,)` (as ``BovwVocabulary.histograms`` returns).
        out_path: The PNG to write.
        sources: class name -> the utterance it came from (shown beside the bars).
        title: Figure title.

    Returns:
        The PNG path.
    """
    if not histograms:
        raise ValueError("No histogram to plot.")
    plt = pyplot()
    names = list(histograms)
    k = len(next(iter(histograms.values())))
    top = max(float(np.max(h)) for h in histograms.values()) or 1.0
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 0.9 + 1.05 * len(names)), dpi=110, sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        h = np.asarray(histograms[name], dtype=float)
        ax.bar(np.arange(k), h, width=0.9, color="#3b6ea8")
        ax.set_ylim(0, top * 1.1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        used = int((h > 0).sum())
        note = f"{used}/{k} words used"
        if sources and name in sources:
            note = f"{Path(sources[name]).name}: {note}"
        ax.text(0.995, 0.9, note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    axes[-1, 0].set_xlabel("visual word (K-means centre index)")
    fig.suptitle(title or "BOVW histograms, one utterance per class", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_path)


def _images(paths: Sequence[str], config: RunConfig) -> np.ndarray:
    from vacnn_tf.features.logmel import extract_images

    batch = extract_images(list(paths), config.features, cache_dir=features_cache_dir(config),
                           workers=config.data.workers, progress=False)
    if batch.failures:
        path, reason = batch.failures[0]
        raise ValueError(f"{len(batch.failures)} file(s) could not be read, e.g. {path}: {reason}")
    return batch.images


def bovw_figure_from_corpus(
    corpus: str,
    root: str | Path,
    out_path: str | Path,
    config: RunConfig = RunConfig(),
    vocabulary_path: str | Path | None = None,
) -> dict[str, Any]:
    """BOVW histograms of one utterance per class of a corpus folder.

    Without ``vocabulary_path`` a vocabulary of ``config.bovw.k`` words is fitted on the KAZE
    descriptors of the whole corpus (seed ``config.seed``). That is an illustration of what
    visual words are, not what training does: training fits one vocabulary per fold on its
    training utterances only (:func:`vacnn_tf.features.bovw.fit_fold_vocabulary`).

    Args:
        corpus: ``ravdess``, ``emodb``, ``tess`` or ``savee``.
        root: The corpus folder, or a data root holding it.
        out_path: The PNG to write.
        config: ``features``, ``bovw``, ``seed``, ``data.cache_dir`` and ``data.workers`` are used.
        vocabulary_path: A saved vocabulary (e.g. a run's ``fold_K/vocabulary.npz``) to use instead.

    Returns:
        ``{"path": Path, "k": int, "classes": [...], "files": [...], "fitted_on": int}``
        (``fitted_on``: utterances the vocabulary was fitted on here, 0 when loaded).
    """
    from vacnn_tf.corpora.labels import classes_for
    from vacnn_tf.corpora.readers import find_corpus_dir, read_corpus
    from vacnn_tf.features.bovw import BovwVocabulary, descriptors_for

    scan = read_corpus(corpus, find_corpus_dir(root, corpus))
    if not len(scan):
        raise ValueError(f"No {corpus} files found under {root}.")
    chosen = one_per_class(scan.table, classes_for(corpus))
    fitted_on = 0
    if vocabulary_path is not None:
        vocab = BovwVocabulary.load(vocabulary_path)
        note = f"vocabulary {vocabulary_path}"
    else:
        images = _images(scan.table["path"].tolist(), config)
        descriptors = descriptors_for(images, config.bovw, cache_dir=bovw_cache_dir(config),
                                      progress=False, workers=config.data.workers)
        vocab = BovwVocabulary.fit(descriptors, config.bovw, seed=config.seed)
        fitted_on = len(images)
        note = f"vocabulary fitted on all {fitted_on} utterances (illustration; training fits one per fold)"
    hists = vocab.transform(_images(chosen["path"].tolist(), config))
    labels = chosen["label"].tolist()
    path = plot_bovw_histograms(
        dict(zip(labels, hists)), out_path, dict(zip(labels, chosen["path"])),
        title=f"{corpus}: k={vocab.k}, {vocab.config.normalization} normalisation; {note}",
    )
    return {"path": path, "k": vocab.k, "classes": labels, "files": chosen["path"].tolist(), "fitted_on": fitted_on}


def bovw_figure_from_run(run_dir: str | Path, out_path: str | Path, fold: int = 0) -> dict[str, Any]:
    """BOVW histograms of one *test* utterance per class of a run's fold, with that fold's vocabulary.

    The vocabulary (``RUN/fold_K/vocabulary.npz``) never saw these utterances: this is what the
    network's BOVW branch received at test time. Utterances come from ``fold_K/predictions.csv``.

    Args:
        run_dir: A fine-tuning run directory with BOVW (``model.use_bovw``).
        out_path: The PNG to write.
        fold: Fold number.

    Returns:
        As :func:`bovw_figure_from_corpus` (``fitted_on`` is 0).
    """
    import pandas as pd

    from vacnn_tf.config import load_config
    from vacnn_tf.features.bovw import BovwVocabulary

    run_dir = Path(run_dir)
    fold_dir = run_dir / f"fold_{fold}"
    vocab_path = fold_dir / "vocabulary.npz"
    if not vocab_path.is_file():
        raise FileNotFoundError(f"{vocab_path} not found: is {run_dir} a BOVW run with a fold {fold}?")
    predictions = fold_dir / "predictions.csv"
    if not predictions.is_file():
        raise FileNotFoundError(f"{predictions} not found: fold {fold} of {run_dir} has not finished.")
    config = load_config(run_dir / "config.yaml")
    classes = read_json(run_dir / "labels.json")["classes"]
    chosen = one_per_class(pd.read_csv(predictions), classes)
    vocab = BovwVocabulary.load(vocab_path, expected=config.bovw)
    hists = vocab.transform(_images(chosen["path"].tolist(), config))
    labels = chosen["label"].tolist()
    path = plot_bovw_histograms(
        dict(zip(labels, hists)), out_path, dict(zip(labels, chosen["path"])),
        title=f"{run_dir.name} fold {fold}: test utterances, the fold's vocabulary (k={vocab.k}, "
              f"fitted on {vocab.n_fit_descriptors} training descriptors)",
    )
    return {"path": path, "k": vocab.k, "classes": labels, "files": chosen["path"].tolist(), "fitted_on": 0}


# --- 3. training curves ----------------------------------------------------------------------

def read_history(path: str | Path) -> "pd.DataFrame":
    """One fit's ``history.csv`` (``epoch`` plus one column per metric, as Keras CSVLogger lays it out).

    A resumed fit appends to the same file, so an epoch that was redone after a crash appears
    twice; the last record of each epoch is the one that counted.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # the fit was killed before its first epoch ended
        return pd.DataFrame(columns=["epoch"])
    if "epoch" not in frame:
        raise ValueError(f"{path} has no 'epoch' column; is it a training history (fold_K/history.csv)?")
    return frame.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def _stages(run_dir: Path) -> list[Path]:
    folds = sorted((p for p in run_dir.glob("fold_*") if (p / "history.csv").is_file()),
                   key=lambda p: int(p.name.split("_", 1)[1]))
    pretrain = run_dir / "pretrain"
    return ([pretrain] if (pretrain / "history.csv").is_file() else []) + folds


def plot_training_curves(run_dir: str | Path, out_path: str | Path | None = None) -> dict[str, Any]:
    """Loss and accuracy per epoch for every fold (and the pretraining stage) of a run.

    Solid lines: training; dashed: validation; a dot marks the epoch model selection kept
    (``selection.json``, best validation accuracy), the weights saved in ``model.keras``.

    Args:
        run_dir: A run directory (``fold_K/history.csv`` or ``pretrain/history.csv``).
        out_path: The PNG; default ``RUN/figures/training_curves.png``.

    Returns:
        ``{"path": Path, "stages": {stage name: {"epochs": int, "best_epoch": int|None,
        "best_val_accuracy": float|None}}}`` (epochs 1-based, as plotted).
    """
    run_dir = Path(run_dir)
    stages = _stages(run_dir)
    if not stages:
        raise FileNotFoundError(f"{run_dir} has no fold_K/history.csv or pretrain/history.csv yet.")
    out_path = Path(out_path) if out_path is not None else run_dir / "figures" / "training_curves.png"
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    summary: dict[str, Any] = {}
    for i, stage in enumerate(stages):
        history = read_history(stage / "history.csv")
        colour = colours[i % len(colours)]
        epochs = history["epoch"].to_numpy() + 1  # Keras counts epochs from 0; people count from 1
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            if key in history:
                ax.plot(epochs, history[key], color=colour, label=f"{stage.name} train")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], color=colour, linestyle="--", label=f"{stage.name} val")
        best = None
        selection = stage / "selection.json"
        if selection.is_file():
            best = (read_json(selection).get("best") or {})
        best_epoch = best.get("epoch") if best else None
        best_acc = best.get("acc") if best else None
        if best_epoch is not None and best_acc is not None:
            ax_acc.plot([best_epoch + 1], [best_acc], marker="o", color=colour, markersize=7)
        summary[stage.name] = {"epochs": int(len(history)),
                               "best_epoch": None if best_epoch is None else int(best_epoch) + 1,
                               "best_val_accuracy": best_acc}
    ax_loss.set(xlabel="epoch", ylabel="loss (cross-entropy + L2)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (dot: selected epoch)", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
    ax_acc.legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle(str(run_dir), fontsize=9)
    fig.tight_layout()
    return {"path": save_figure(fig, out_path), "stages": summary}
