"""Export a trained fold as a TF Serving-ready SavedModel, with everything a client needs inside.

Layout written (TF Serving looks for numbered version folders under a model folder)::

    OUT/<model_name>/<version>/saved_model.pb
    OUT/<model_name>/<version>/variables/...
    OUT/<model_name>/<version>/assets/labels.json          {"classes": [...]}
    OUT/<model_name>/<version>/assets/feature_config.json  features + BOVW/KAZE settings
    OUT/<model_name>/<version>/assets/vocabulary.npz       BOVW visual words (models with BOVW)
    OUT/<model_name>/<version>/assets/MODEL_CARD.md        data, protocol, metrics, intended use, limits

Signatures:

* ``serving_default``: inputs ``logmel`` float32 [batch, 224, 224, 1] (pixel values 0-255, as
  the training images) and, for models with BOVW, ``bovw`` float32 [batch, k] (k = ``bovw.k``,
  128 by default); outputs ``probabilities`` float32 [batch, classes] and ``label`` string [batch].
* ``waveform``: inputs ``waveform`` float32 [batch, samples] (mono audio at
  ``features.sample_rate``, zero-padded) and ``length`` int32 [batch] (each example's samples),
  plus ``bovw`` for models with BOVW (KAZE has no TensorFlow equivalent); the log-mel image is
  computed in the graph (:mod:`vacnn_tf.features.logmel_graph`); the same outputs.
* ``waveform_logmel``: ``waveform`` and ``length`` in, the ``logmel`` image out (what a client of
  a BOVW model runs KAZE on).

The two waveform signatures are left out, and ``feature_config.json`` says why, for feature
settings the graph does not reproduce (:func:`vacnn_tf.features.logmel_graph.waveform_support`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vacnn_tf.config import RunConfig, load_config
from vacnn_tf.evaluation.model_card import model_card as card_markdown
from vacnn_tf.features.logmel_graph import WaveformFeatures, waveform_support
from vacnn_tf.models.runtime import quiet_dict_inputs
from vacnn_tf.storage import read_json

ASSET_LABELS = "labels.json"
ASSET_FEATURES = "feature_config.json"
ASSET_VOCABULARY = "vocabulary.npz"
ASSET_MODEL_CARD = "MODEL_CARD.md"


class ExportError(ValueError):
    """A run directory that cannot be exported, with the reason."""


_FOLD_DIR = re.compile(r"^fold_(\d+)$")


def _fold_index(path: Path) -> int:
    return int(_FOLD_DIR.match(path.name).group(1))  # type: ignore[union-attr]


def fold_dirs(run_dir: Path) -> list[Path]:
    """Finished fold directories of a run (``fold_K`` only: a copy such as ``fold_0_old`` is not one), in fold order."""
    folds = [p for p in run_dir.glob("fold_*")
             if _FOLD_DIR.match(p.name) and p.is_dir() and (p / "model.keras").is_file()]
    return sorted(folds, key=_fold_index)


def choose_fold(run_dir: Path, fold: int | None) -> Path:
    """The fold to export: the one asked for, else the best by *validation* accuracy.

    Choosing by test accuracy would leak the test folds into model selection.
    """
    folds = fold_dirs(run_dir)
    if not folds:
        raise ExportError(f"{run_dir}: no fold_K/model.keras found; is this a finished fine-tuning run?")
    if fold is not None:
        for path in folds:
            if _fold_index(path) == fold:
                return path
        raise ExportError(
            f"{run_dir}: fold {fold} has no model. Available folds: "
            f"{[_fold_index(p) for p in folds]}. Received: fold={fold}"
        )

    def val_score(path: Path) -> float:
        metrics = path / "metrics.json"
        if metrics.is_file():
            value = read_json(metrics).get("best_val_accuracy")
            return float(value) if value is not None else float("-inf")
        return float("-inf")

    return max(folds, key=val_score)


SIGNATURE_WAVEFORM = "waveform"
SIGNATURE_WAVEFORM_LOGMEL = "waveform_logmel"


def _feature_assets(config: RunConfig, classes: list[str], uses_bovw: bool, waveform_note: str | None) -> dict[str, Any]:
    size = config.features.image_size
    contract = {
        "logmel": f"float32 [batch, {size}, {size}, 1], pixel values 0-255 (vacnn_tf.features.logmel.logmel_image)",
        "waveform": f"float32 [batch, samples], mono at {config.features.sample_rate} Hz, zero-padded "
                    "(signatures waveform and waveform_logmel)",
        "length": "int32 [batch], samples of each waveform before its padding",
    }
    if uses_bovw:
        contract["bovw"] = f"float32 [batch, {config.bovw.k}] (vacnn_tf.features.bovw vocabulary histograms)"
    return {
        "features": dataclasses.asdict(config.features),
        "bovw": dataclasses.asdict(config.bovw),
        "classes": classes,
        "input_contract": contract,
        "signatures": ["serving_default"] + ([] if waveform_note else [SIGNATURE_WAVEFORM, SIGNATURE_WAVEFORM_LOGMEL]),
        "waveform_signature": waveform_note or "present",
    }


def export_savedmodel(
    run_dir: str | Path,
    out_dir: str | Path,
    fold: int | None = None,
    model_name: str = "vacnn",
    version: int | None = None,
) -> Path:
    """Write one fold of a fine-tuning run as ``out_dir/model_name/version``.

    Args:
        run_dir: A run directory written by ``vacnn finetune`` (config.yaml, labels.json, fold_K/).
        out_dir: The TF Serving model base folder.
        fold: The fold to export; default: the best by validation accuracy.
        model_name: Folder name under ``out_dir`` (TF Serving's ``--model_name``).
        version: Version number; default: one more than the highest present.

    Returns:
        The version directory written.
    """
    run_dir = Path(run_dir)
    config, classes = _run_settings(run_dir)
    fold_dir = choose_fold(run_dir, fold)
    model, uses_bovw = _fold_model(fold_dir, config, classes)
    target, version = _version_dir(Path(out_dir) / model_name, version)
    try:
        card = card_markdown(run_dir, fold_dir, config, classes, model_name, version, chosen_by_user=fold is not None)
    except FileNotFoundError as err:
        raise ExportError(str(err)) from None
    vocabulary = fold_dir / ASSET_VOCABULARY if uses_bovw else None
    return write_savedmodel(model, target, classes, config, vocabulary, model_card=card)


def _run_settings(run_dir: Path) -> tuple[RunConfig, list[str]]:
    """The run's configuration and class names (``config.yaml``, ``labels.json``)."""
    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir}: config.yaml missing; not a vacnn run directory.")
    config = load_config(run_dir / "config.yaml")
    labels_path = run_dir / "labels.json"
    if not labels_path.is_file():
        raise ExportError(f"{run_dir}: labels.json missing; cannot name the classes.")
    return config, [str(c) for c in read_json(labels_path)["classes"]]


def _fold_model(fold_dir: Path, config: RunConfig, classes: list[str]) -> tuple[Any, bool]:
    """A fold's ``model.keras``, checked against the run's image size, classes and vocabulary; and whether it takes BOVW."""
    import keras

    import vacnn_tf.models.layers  # noqa: F401  registers the custom layers for loading
    from vacnn_tf.models.networks import check_image_size

    # compile=False: serving needs no loss or optimizer, and the training loss is a custom class
    # (vacnn_tf.models.optimization.LabelCrossentropy) that a fresh `vacnn export` process has not imported
    model = keras.models.load_model(fold_dir / "model.keras", compile=False, safe_mode=True)
    try:
        check_image_size(model, config, fold_dir / "model.keras")
    except ValueError as error:
        raise ExportError(str(error)) from None
    input_names = [t.name.split(":")[0] for t in model.inputs]
    uses_bovw = "bovw" in input_names
    if uses_bovw and not (fold_dir / ASSET_VOCABULARY).is_file():
        raise ExportError(f"{fold_dir}: the model takes BOVW input but {ASSET_VOCABULARY} is missing.")
    if model.outputs[0].shape[-1] != len(classes):
        raise ExportError(
            f"{fold_dir}: the model has {model.outputs[0].shape[-1]} outputs but labels.json names "
            f"{len(classes)} classes."
        )
    return model, uses_bovw


def _version_dir(base: Path, version: int | None) -> tuple[Path, int]:
    """``base/version``, which must not exist yet, and the version (default: one more than the highest present)."""
    if version is None:
        present = [int(p.name) for p in base.glob("*") if p.name.isdigit()] if base.is_dir() else []
        version = max(present, default=0) + 1
    target = base / str(version)
    if target.exists():
        raise ExportError(f"{target} exists; choose another --version or remove it.")
    return target, version


def serving_model(model: Any) -> Any:
    """A copy of ``model`` for the serving graph: the same weights and outputs, faster on CPUs.

    Every ``keras.layers.GroupNormalization`` becomes a
    :class:`~vacnn_tf.models.normalization.ChannelStatsGroupNormalization` (same config and weights, the
    statistics summed in another order: outputs agree to rounding). Training and the saved
    ``.keras`` checkpoints keep Keras's own layer; only the exported graph changes.
    """
    import keras

    from vacnn_tf.models.normalization import ChannelStatsGroupNormalization

    def clone(layer: Any) -> Any:
        if type(layer) is keras.layers.GroupNormalization:
            return ChannelStatsGroupNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def write_savedmodel(model: Any, target: str | Path, classes: list[str], config: RunConfig,
                     vocabulary: str | Path | None = None, serving_graph: bool = True,
                     model_card: str | None = None, waveform: bool = True) -> Path:
    """Write a Keras model as a SavedModel at ``target`` with the serving signature and assets.

    Args:
        model: A VACNN-family Keras model taking ``logmel`` (and ``bovw`` when ``vocabulary`` is given).
        target: The version directory to create (it must not exist).
        classes: Class names, in output order.
        config: The run's configuration (its feature and BOVW settings become assets).
        vocabulary: The fold's ``vocabulary.npz`` for models with BOVW input.
        serving_graph: Export :func:`serving_model`'s copy (the faster GroupNormalization);
            False exports ``model`` as it is (benchmarks/serving_latency.py compares the two).
        model_card: Markdown written as ``assets/MODEL_CARD.md`` (:func:`vacnn_tf.evaluation.model_card.model_card`).
        waveform: Add the ``waveform`` and ``waveform_logmel`` signatures (where the feature
            settings allow them).

    Returns:
        ``target``.
    """
    target = Path(target)
    if serving_graph:
        model = serving_model(model)
    uses_bovw = vocabulary is not None
    waveform_note = waveform_support(config.features) if waveform else "not asked for (waveform=False)"
    staging = Path(tempfile.mkdtemp(prefix="vacnn-export-"))
    try:
        assets = _stage_assets(staging, classes, config, vocabulary, model_card, waveform_note)
        specs = _signature_functions(model, config, classes, uses_bovw, waveform_note)
        _save_version(specs, {name: staging / name for name in assets}, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _stage_assets(staging: Path, classes: list[str], config: RunConfig, vocabulary: str | Path | None,
                  model_card: str | None, waveform_note: str | None) -> list[str]:
    """Write the asset files into ``staging``; returns their names, in the order the SavedModel lists them."""
    (staging / ASSET_LABELS).write_text(json.dumps({"classes": classes}, indent=2))
    assets = _feature_assets(config, classes, vocabulary is not None, waveform_note)
    (staging / ASSET_FEATURES).write_text(json.dumps(assets, indent=2))
    asset_files = [ASSET_LABELS, ASSET_FEATURES]
    if vocabulary is not None:
        shutil.copyfile(vocabulary, staging / ASSET_VOCABULARY)
        asset_files.append(ASSET_VOCABULARY)
    if model_card is not None:
        (staging / ASSET_MODEL_CARD).write_text(model_card)
        asset_files.append(ASSET_MODEL_CARD)
    return asset_files


def _save_version(specs: dict[str, Any], assets: dict[str, Path], target: Path) -> None:
    """Save the signature functions and asset files as the SavedModel ``target``, all or nothing."""
    import tensorflow as tf

    with quiet_dict_inputs():
        endpoints = {name: fn.get_concrete_function() for name, fn in specs.items()}
    # A plain tf.Module is the root rather than keras.export.ExportArchive, which offers no
    # public way to attach files: what hangs off the root is what tf.saved_model writes, so
    # the assets land in assets/ and in the object graph (tf.saved_model.load sees them), and
    # the variables the graph reads are saved with it.
    root = tf.Module()
    root.serving_variables = list(endpoints["serving_default"].variables)
    root.signature_functions = dict(specs)
    root.assets = {name: tf.saved_model.Asset(str(path)) for name, path in assets.items()}
    # Write beside the target then rename, so a killed export leaves no half version
    # that TF Serving would try to load.
    partial = target.parent / f".{target.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    with quiet_dict_inputs():  # saving traces the functions again
        tf.saved_model.save(root, str(partial), signatures=endpoints)
    partial.rename(target)


def _signature_functions(model: Any, config: RunConfig, classes: list[str], uses_bovw: bool,
                         waveform_note: str | None) -> dict[str, Any]:
    """The tf.functions behind each exported signature, by signature name."""
    import tensorflow as tf

    label_table = tf.constant(classes)
    size = config.features.image_size
    logmel = tf.TensorSpec([None, size, size, 1], tf.float32, name="logmel")
    bovw = [tf.TensorSpec([None, config.bovw.k], tf.float32, name="bovw")] if uses_bovw else []
    audio = [tf.TensorSpec([None, None], tf.float32, name="waveform"), tf.TensorSpec([None], tf.int32, name="length")]

    def classify(image: tf.Tensor, *histogram: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = {"logmel": image, **({"bovw": histogram[0]} if histogram else {})}
        probs = model(inputs, training=False)
        return {"probabilities": probs, "label": tf.gather(label_table, tf.argmax(probs, -1))}

    def function(fn: Any, signature: list[Any]) -> Any:
        return tf.function(fn, input_signature=signature, autograph=False)

    functions = {"serving_default": function(classify, [logmel, *bovw])}
    if waveform_note is None:
        features = WaveformFeatures(config.features)

        def from_waveform(waveform: tf.Tensor, length: tf.Tensor, *histogram: tf.Tensor) -> dict[str, tf.Tensor]:
            return classify(features(waveform, length), *histogram)

        def waveform_logmel(waveform: tf.Tensor, length: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"logmel": features(waveform, length)}

        functions[SIGNATURE_WAVEFORM] = function(from_waveform, [*audio, *bovw])
        functions[SIGNATURE_WAVEFORM_LOGMEL] = function(waveform_logmel, audio)
    return functions
