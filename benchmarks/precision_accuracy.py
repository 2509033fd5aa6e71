"""Does ``train.precision=mixed_bfloat16`` change accuracy? Train the VACNN both ways and compare.

Usage (from the repository root)::

    .venv/bin/python benchmarks/precision_accuracy.py --corpus emodb --root DATA/emodb \
        --cache CACHE_DIR --epochs 10 --seeds 0 1
    .venv/bin/python benchmarks/precision_accuracy.py --epochs 3     # synthetic corpus, no data needed

For each seed: one stratified 80/20 split, then the VACNN trained from the same initial
weights (same seed) in each precision for ``--epochs`` epochs with the paper's recipe
(``compile_model``: Adam, step decay, batch 8), and evaluated on the held-out 20 %. Prints
test accuracy, unweighted average recall, the share of test utterances both precisions
label alike, and training samples/s (wall) and CPU ms/sample of each run. Seed-to-seed
spread in float32 is the yardstick a bf16 difference has to be read against. Figures
printed, never asserted; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vacnn_tf.config import FeatureConfig, TrainConfig  # noqa: E402


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 224, 224) and integer labels of a corpus (or the synthetic EmoDB)."""
    from vacnn_tf.corpora.readers import read_corpus
    from vacnn_tf.features.logmel import extract_images

    if args.root:
        corpus, root = args.corpus, Path(args.root)
    else:
        from vacnn_tf.corpora.synth import generate

        corpus = "emodb"
        root = generate(Path(tempfile.mkdtemp(prefix="prec_")), per_class=12, seed=0, corpora=("emodb",))["emodb"]
    table = read_corpus(corpus, root).table
    batch = extract_images(list(table["path"]), FeatureConfig(), args.cache, progress=False)
    names = sorted(set(table["label"]))
    labels = np.array([names.index(v) for v in table["label"][batch.ok]], dtype=np.int32)
    return batch.images, labels


def train_once(images: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
               precision: str, seed: int, epochs: int) -> dict[str, float]:
    """Train one VACNN in ``precision`` and return its test metrics and speed."""
    import keras

    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.models.optimization import compile_model
    from vacnn_tf.models.runtime import configure_runtime, predict

    config = TrainConfig(precision=precision, epochs=epochs)
    configure_runtime(config)
    keras.utils.set_random_seed(seed)
    n_classes = int(labels.max()) + 1
    model = build_vacnn(n_classes)
    ds = make_dataset(images[train], labels[train], batch_size=config.batch_size, shuffle=True, seed=seed)
    compile_model(model, config, steps_per_epoch=int(np.ceil(len(train) / config.batch_size)))
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(ds, epochs=epochs, verbose=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    probs = predict(model, images[test].astype(np.float32)[..., None], batch_size=32)
    pred = probs.argmax(axis=1)
    truth = labels[test]
    recalls = [float(np.mean(pred[truth == c] == c)) for c in range(n_classes) if np.any(truth == c)]
    keras.mixed_precision.set_global_policy("float32")
    return {"accuracy": float(np.mean(pred == truth)), "uar": float(np.mean(recalls)), "pred": pred,
            "samples_per_s": len(train) * epochs / wall, "cpu_ms_per_sample": cpu / (len(train) * epochs) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="emodb")
    parser.add_argument("--root", default=None, help="corpus folder (default: synthetic EmoDB)")
    parser.add_argument("--cache", default=None, help="log-mel image cache folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    args = parser.parse_args()

    from sklearn.model_selection import train_test_split

    images, labels = load(args)
    print(f"{len(images)} utterances, {labels.max() + 1} classes, {args.epochs} epochs")
    print("seed  precision        test acc   UAR    agree  samples/s  CPU ms/sample")
    for seed in args.seeds:
        train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
        runs = {p: train_once(images, labels, train, test, p, seed, args.epochs) for p in args.precisions}
        first = runs[args.precisions[0]]["pred"]
        for precision, r in runs.items():
            agree = float(np.mean(r["pred"] == first))
            print(f"{seed:<5} {precision:<16} {r['accuracy']:8.3f} {r['uar']:6.3f} {agree:7.3f} "
                  f"{r['samples_per_s']:10.1f} {r['cpu_ms_per_sample']:13.1f}", flush=True)


if __name__ == "__main__":
    main()
