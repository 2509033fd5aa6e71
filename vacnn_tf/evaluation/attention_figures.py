"""The attention figure: what a trained VACNN looks at, drawn over one log-mel image.

:func:`plot_attention` draws the channel (eq. 1) and spatial (eq. 2) attention of each VA (or
CBAM) module of a model and a Grad-CAM class-activation map (Selvaraju et al. 2017) on the
14x14x288 ``head_relu`` map; :mod:`vacnn_tf.evaluation.explain` computes the numbers behind it.
:func:`attention_figure` loads a ``.keras`` checkpoint of a run and a wav file for it
(``vacnn figures attention``). Both are also importable from :mod:`vacnn_tf.evaluation.figures`,
with the other figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vacnn_tf.config import RunConfig
from vacnn_tf.evaluation.explain import AttentionMap, GradCam, attention_maps, grad_cam, input_names
from vacnn_tf.evaluation.plotting import pyplot, save_figure
from vacnn_tf.storage import read_json

__all__ = ["attention_figure", "plot_attention"]


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, title: str, scale: bool = True) -> None:
    import cv2

    size = image.shape[:2]
    heat = np.asarray(heat, dtype=np.float32)
    low, high = float(heat.min()), float(heat.max())
    shown = (heat - low) / (high - low) if scale and high > low else heat
    up = cv2.resize(shown, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto")
    ax.imshow(up, cmap="jet", alpha=0.45, vmin=0, vmax=1, aspect="auto")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_attention(
    model: Any,
    image: np.ndarray,
    out_path: str | Path,
    classes: Optional[Sequence[str]] = None,
    bovw: Optional[np.ndarray] = None,
    class_index: Optional[int] = None,
    title: str = "",
) -> dict[str, Any]:
    """Attention maps of every VA / CBAM module and a Grad-CAM map, over one log-mel image.

    Top row: the image, the Grad-CAM overlay, the class probabilities. Then, per module, the
    spatial attention ``F_s`` upsampled over the image (colours stretched to the map's own
    min-max, printed in the title) and the channel weights ``F_c`` sorted from high to low.

    Args:
        model: A VACNN-family model (see :func:`grad_cam`).
        image: Log-mel image `(224, 224)`, pixel values 0-255.
        out_path: The PNG to write.
        classes: Class names in output order (default ``class 0``, ``class 1``, ...).
        bovw: BOVW histogram `(k,)` for models that take one.
        class_index: Class explained by Grad-CAM; default: the predicted one.
        title: Figure title.

    Returns:
        ``{"path": Path, "predicted": str, "explained": str, "probabilities": {class: p},
        "maps": [AttentionMap, ...], "cam": GradCam}``.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., 0]
    cam = grad_cam(model, image, bovw=bovw, class_index=class_index)
    maps = attention_maps(model, image)
    classes = _class_names(model, classes, len(cam.probabilities))
    predicted = classes[int(np.argmax(cam.probabilities))]

    plt = pyplot()
    cols = max(3, len(maps))
    rows = 1 + (2 if maps else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), dpi=100, squeeze=False)
    _draw_prediction(axes[0], image, cam, classes, predicted)
    _draw_modules(axes[1:], image, maps)
    kinds = sorted({m.kind for m in maps}) or ["no attention modules"]
    fig.suptitle(title or f"{model.name}: {', '.join(kinds)}", fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, out_path)
    return {"path": path, "predicted": predicted, "explained": classes[cam.class_index],
            "probabilities": dict(zip(classes, map(float, cam.probabilities))), "maps": maps, "cam": cam}


def _class_names(model: Any, classes: Optional[Sequence[str]], n: int) -> list[str]:
    """``classes`` as a list, checked against the model's ``n`` outputs (default ``class 0``, ...)."""
    names = list(classes) if classes is not None else [f"class {i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"Model {model.name!r} has {n} outputs but {len(names)} class names were given.")
    return names


def _draw_prediction(row: Any, image: np.ndarray, cam: GradCam, classes: list[str], predicted: str) -> None:
    """The figure's top row: the image, the Grad-CAM overlay and the class probabilities."""
    row[0].imshow(image, cmap="magma", vmin=0, vmax=255, aspect="auto")
    row[0].set_title("log-mel image", fontsize=8)
    row[0].set_xticks([])
    row[0].set_yticks([])
    h, w = cam.cam.shape
    _overlay(row[1], image, cam.cam, f"Grad-CAM on {cam.layer} ({h}x{w}) for '{classes[cam.class_index]}'", scale=False)
    order = np.arange(len(cam.probabilities))
    colours = ["#c0392b" if i == cam.class_index else "#7f8c8d" for i in order]
    row[2].barh(order, cam.probabilities, color=colours)
    row[2].set_yticks(order, classes, fontsize=8)
    row[2].invert_yaxis()
    row[2].set_xlim(0, 1)
    row[2].set_title(f"probabilities (predicted: {predicted})", fontsize=8)
    for ax in row[3:]:
        ax.axis("off")


def _draw_modules(rows: Any, image: np.ndarray, maps: list[AttentionMap]) -> None:
    """One column per attention module: its spatial map over the image above its sorted channel weights."""
    for j, m in enumerate(maps):
        hh, ww = m.spatial.shape
        _overlay(rows[0, j], image, m.spatial,
                 f"{m.layer} spatial F_s ({hh}x{ww}), {m.spatial.min():.2f}-{m.spatial.max():.2f}")
        ranked = np.sort(m.channel)[::-1]
        rows[1, j].bar(np.arange(len(ranked)), ranked, width=1.0, color="#3b6ea8")
        rows[1, j].set_ylim(0, 1)
        rows[1, j].set_title(f"{m.layer} channel F_c ({len(ranked)} channels, sorted), "
                             f"{ranked.min():.2f}-{ranked.max():.2f}", fontsize=8)
        rows[1, j].set_xlabel("channel rank", fontsize=8)
    for row in rows:
        for ax in row[len(maps):]:
            ax.axis("off")


def attention_figure(
    model_path: str | Path,
    wav_path: str | Path,
    out_path: str | Path,
    class_name: Optional[str] = None,
    vocabulary_path: str | Path | None = None,
    config: Optional[RunConfig] = None,
) -> dict[str, Any]:
    """:func:`plot_attention` for a ``.keras`` checkpoint of a run and one audio file.

    The checkpoint's run supplies what the model needs: ``RUN/config.yaml`` (feature settings),
    ``RUN/labels.json`` (class names) and, for BOVW models, the fold's ``vocabulary.npz``
    beside the checkpoint. Both ``RUN/fold_K/model.keras`` (fine-tuned) and
    ``RUN/pretrain/model.keras`` (pretrained VACNN) work.

    Args:
        model_path: The ``.keras`` file.
        wav_path: The utterance.
        out_path: The PNG to write.
        class_name: Class Grad-CAM explains; default: the predicted one.
        vocabulary_path: Vocabulary for BOVW models; default ``<model dir>/vocabulary.npz``.
        config: Settings to use instead of the run's ``config.yaml`` (needed for a bare file).

    Returns:
        As :func:`plot_attention`.
    """
    import keras

    from vacnn_tf.config import load_config
    from vacnn_tf.features.logmel import file_image
    import vacnn_tf.models.layers  # noqa: F401  registers the custom layers for loading

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"No model at {model_path}; expected RUN/fold_K/model.keras or RUN/pretrain/model.keras.")
    run_dir = model_path.parent.parent
    if config is None:
        config = load_config(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else RunConfig()
    model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    classes = None
    if (run_dir / "labels.json").is_file():
        classes = read_json(run_dir / "labels.json")["classes"]
    image = file_image(wav_path, config.features)
    bovw = _bovw_histogram(image, model_path, vocabulary_path) if "bovw" in input_names(model) else None
    class_index = None
    if class_name is not None:
        if classes is None or class_name not in classes:
            raise ValueError(f"Unknown class. Expected one of {classes}. Received: class={class_name!r}")
        class_index = classes.index(class_name)
    return plot_attention(model, image, out_path, classes=classes, bovw=bovw, class_index=class_index,
                          title=f"{model.name} ({model_path.parent.name}) on {Path(wav_path).name}")


def _bovw_histogram(image: np.ndarray, model_path: Path, vocabulary_path: str | Path | None) -> np.ndarray:
    """The BOVW histogram of ``image`` for the model at ``model_path``, with its fold's vocabulary."""
    from vacnn_tf.features.bovw import BovwVocabulary

    vocab_file = Path(vocabulary_path) if vocabulary_path else model_path.parent / "vocabulary.npz"
    if not vocab_file.is_file():
        raise FileNotFoundError(f"{model_path} takes a BOVW histogram but {vocab_file} is missing; pass --vocabulary.")
    return BovwVocabulary.load(vocab_file).transform(image[None])[0]
