"""The in-graph log-mel image (the ``waveform`` signatures) against the Python feature path.

Usage (from the repository root)::

    .venv/bin/python benchmarks/waveform_signature.py --run RUN --data DATA/emodb/wav
    .venv/bin/python benchmarks/waveform_signature.py --model models/vacnn/1 --data DATA/emodb/wav

``--run`` exports the run's model into a temporary folder first, as ``vacnn export`` writes it
(signatures and assets; without the model card, so an unfinished fine-tuning run or a
pretraining run works too): ``RUN/fold_K/model.keras`` (``--fold``, default the first finished
fold) or ``RUN/pretrain/model.keras``. ``--model`` takes an exported version folder as it is.

Each file is read and resampled to ``features.sample_rate`` as the Python path does
(:func:`vacnn_tf.features.logmel.load_audio`, soxr); then, per batch of files zero-padded to the
longest, the ``waveform_logmel`` signature's images are compared with
:func:`vacnn_tf.features.logmel.logmel_image`'s, and the labels of ``waveform`` (samples in) with those
of ``serving_default`` (the Python image in). A BOVW model gets the Python histogram in both, so
only the image differs. Printed: files, pixel differences (max, mean, share of pixels that
differ, share of images identical), top-1 agreement, the largest probability difference, and the
seconds per file of each path's features. Figures printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export_run(run: Path, fold: int | None, out: Path) -> Path:
    """Write a run's model with :func:`vacnn_tf.serving.export.write_savedmodel` (signatures and assets)."""
    import keras

    from vacnn_tf.config import load_config
    import vacnn_tf.models.layers  # noqa: F401  registers the custom layers
    from vacnn_tf.serving.export import ASSET_VOCABULARY, fold_dirs, write_savedmodel
    from vacnn_tf.storage import read_json

    folds = [f for f in fold_dirs(run) if (f / "DONE").is_file()]
    if fold is not None:
        folds = [f for f in folds if f.name == f"fold_{fold}"]
    model_dir = folds[0] if folds else run / "pretrain"
    if not (model_dir / "model.keras").is_file():
        raise SystemExit(f"{run}: no finished fold (fold_K/model.keras) nor pretrain/model.keras")
    model = keras.models.load_model(model_dir / "model.keras", compile=False, safe_mode=True)
    uses_bovw = "bovw" in [t.name.split(":")[0] for t in model.inputs]
    vocabulary = model_dir / ASSET_VOCABULARY if uses_bovw else None
    classes = [str(c) for c in read_json(run / "labels.json")["classes"]]
    print(f"exporting {model_dir / 'model.keras'} ({'with' if uses_bovw else 'without'} BOVW)", flush=True)
    return write_savedmodel(model, out / "vacnn" / "1", classes, load_config(run / "config.yaml"), vocabulary)


def compare(model_dir: Path, files: list[Path], batch: int) -> dict[str, float]:
    from vacnn_tf.features.logmel import load_audio, logmel_image
    from vacnn_tf.serving.classifier import EmotionClassifier

    classifier = EmotionClassifier.from_savedmodel(model_dir)
    pre = classifier.preprocessor
    rate = pre.features.sample_rate
    diffs, identical, agree, prob_diff, seconds = [], 0, 0, 0.0, {"python": 0.0, "graph": 0.0}
    for start in range(0, len(files), batch):
        waves = [load_audio(f, rate, pre.features.min_duration) for f in files[start:start + batch]]
        t0 = time.perf_counter()
        images = np.stack([logmel_image(w, rate, pre.features) for w in waves]).astype(np.float32)[..., None]
        seconds["python"] += time.perf_counter() - t0
        padded = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
        for i, w in enumerate(waves):
            padded[i, :len(w)] = w
        audio = {"waveform": padded, "length": np.array([len(w) for w in waves], np.int32)}
        t0 = time.perf_counter()
        graph = classifier.run(audio, "waveform_logmel")["logmel"]
        seconds["graph"] += time.perf_counter() - t0
        extra = {"bovw": pre.vocabulary.transform(images[..., 0].astype(np.uint8))} if pre.uses_bovw else {}
        by_python = classifier.run({"logmel": images, **extra})
        by_graph = classifier.run({**audio, **extra}, "waveform")
        diff = np.abs(graph - images)
        diffs.append(diff)
        identical += int((diff.reshape(len(waves), -1).max(axis=1) == 0).sum())
        agree += int((by_python["label"] == by_graph["label"]).sum())
        prob_diff = max(prob_diff, float(np.abs(by_python["probabilities"] - by_graph["probabilities"]).max()))
    every = np.concatenate(diffs)
    n = len(files)
    return {
        "files": n, "bovw": pre.uses_bovw,
        "pixel_max": float(every.max()), "pixel_mean": float(every.mean()),
        "pixels_differing": float((every > 0).mean()), "images_identical": identical / n,
        "top1_agreement": agree / n, "agreeing": agree, "probability_max_diff": prob_diff,
        "python_s_per_file": seconds["python"] / n, "graph_s_per_file": seconds["graph"] / n,
    }


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` or ``--run RUN [--fold K]`` (see :func:`model_from`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="an exported SavedModel version folder")
    source.add_argument("--run", type=Path, help="a fine-tuning or pretraining run directory (exported first)")
    parser.add_argument("--fold", type=int, default=None, help="with --run: the fold (default: the first finished)")


def model_from(args: argparse.Namespace, work: Path) -> Path:
    """The ``--model`` folder, or ``--run``'s model exported into ``work``."""
    return args.model or export_run(args.run, args.fold, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--data", type=Path, required=True, help="folder of audio files (searched recursively)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="first N files only")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))[: args.limit]
    if not files:
        raise SystemExit(f"{args.data}: no audio files")
    with tempfile.TemporaryDirectory(prefix="vacnn-waveform-") as work:
        model_dir = model_from(args, Path(work))
        result = compare(model_dir, files, args.batch)
    print(json.dumps(result))
    print(f"{result['files']} files ({'with' if result['bovw'] else 'without'} BOVW): pixel difference max "
          f"{result['pixel_max']:.0f}, mean {result['pixel_mean']:.2e} ({100 * result['pixels_differing']:.4f}% of "
          f"pixels differ; {100 * result['images_identical']:.1f}% of images identical); top-1 agreement "
          f"{result['agreeing']}/{result['files']} ({100 * result['top1_agreement']:.1f}%), largest probability "
          f"difference {result['probability_max_diff']:.2e}; features {1000 * result['python_s_per_file']:.1f} ms/file "
          f"in Python, {1000 * result['graph_s_per_file']:.1f} ms/file in the graph")


if __name__ == "__main__":
    main()
