"""BOVW throughput: KAZE + histogram utterances/s, and K-means fit time (figures printed, not asserted).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bovw_throughput.py --corpus emodb --root DATA/emodb \
        --image-cache CACHE_DIR
    .venv/bin/python benchmarks/bovw_throughput.py            # synthetic corpus, no data needed
    .venv/bin/python benchmarks/bovw_throughput.py --images imgs.npz   # an npz with "images" (N,224,224) uint8

KAZE runs uncached (fresh extraction) with 1 worker thread (OpenCV's own threading left on) and
with one per core; the histogram step uses a vocabulary fitted on the same descriptors.
``--compare-kmeans`` also times MiniBatchKMeans and Lloyd KMeans on the same sample and prints
inertia per descriptor, silhouette and (for a corpus) a BOVW-only linear-probe accuracy, the
numbers quoted in vacnn_tf/features/bovw.py's docstring. Timings depend on what else runs on the cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vacnn_tf.config import BovwConfig, FeatureConfig, replace  # noqa: E402


def load_images(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """Log-mel images (and labels, None for an npz) from an npz, a real corpus, or the synthetic corpus."""
    if args.images:
        with np.load(args.images, allow_pickle=False) as data:
            return data["images"][: args.n], None
    from vacnn_tf.corpora.readers import read_corpus
    from vacnn_tf.features.logmel import extract_images

    if args.corpus:
        root = Path(args.root)
    else:
        from vacnn_tf.corpora.synth import generate

        tmp = Path(tempfile.mkdtemp(prefix="bovw_bench_"))
        args.corpus = "emodb"
        root = generate(tmp, per_class=4, seed=0, corpora=("emodb",))["emodb"]
    table = read_corpus(args.corpus, root).table.iloc[: args.n]
    batch = extract_images(list(table["path"]), FeatureConfig(), args.image_cache, progress=False)
    return batch.images, table["label"].to_numpy()[batch.ok]


def compare_kmeans(descriptors: list[np.ndarray], config: BovwConfig, seed: int, labels: np.ndarray | None) -> None:
    """Fit time, inertia and silhouette of both estimators; with labels, a BOVW-only linear probe.

    The probe (logistic regression on the histograms, stratified 5-fold CV, one vocabulary per
    fold fitted on its training part) is a cheap stand-in for what the network gets from BOVW.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold

    from vacnn_tf.features.bovw import BovwVocabulary, _nearest, _sample_rows, _stack, fit_fold_vocabulary

    rows = _sample_rows(_stack(descriptors, 64), config.max_fit_descriptors, seed)
    scored = _sample_rows(rows, 10000, seed + 1)
    print(f"\nK-means on {len(rows)} descriptors, k={config.k} (silhouette on {len(scored)}):")
    for kind in ("minibatch", "full"):
        cfg = replace(config, kmeans=kind)
        start = time.perf_counter()
        vocab = BovwVocabulary.fit([rows], cfg, seed)
        seconds = time.perf_counter() - start
        words = _nearest(rows, vocab.centres)
        inertia = float(((rows - vocab.centres[words]) ** 2).sum() / len(rows))
        sil = silhouette_score(scored, _nearest(scored, vocab.centres))
        line = f"  {kind:9s}  fit {seconds:6.2f} s   inertia/descriptor {inertia:.4f}   silhouette {sil:.4f}"
        if labels is not None:
            correct = 0
            folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(labels, labels)
            for fold, (train, test) in enumerate(folds):
                hist = fit_fold_vocabulary(descriptors, train, cfg, seed + fold).histograms(descriptors) * 100
                clf = LogisticRegression(max_iter=3000).fit(hist[train], labels[train])
                correct += int((clf.predict(hist[test]) == labels[test]).sum())
            line += f"   BOVW-only 5-fold accuracy {correct / len(labels):.3f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="corpus name (with --root); default: synthetic EmoDB-like corpus")
    parser.add_argument("--root", help="corpus folder")
    parser.add_argument("--images", help="npz file with an 'images' array instead of a corpus")
    parser.add_argument("--image-cache", default=None, help="log-mel image cache folder (reused if present)")
    parser.add_argument("-n", type=int, default=None, help="use the first N utterances")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compare-kmeans", action="store_true", help="also time MiniBatchKMeans vs KMeans")
    args = parser.parse_args(argv)

    from vacnn_tf.features.bovw import BovwVocabulary, descriptors_for

    config = BovwConfig()
    images, labels = load_images(args)
    print(f"{len(images)} log-mel images {images.shape[1:]}, {os.cpu_count()} cores")
    descriptors: list[np.ndarray] = []
    for workers in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        descriptors = descriptors_for(images, config, cache_dir=None, progress=False, workers=workers)
        seconds = time.perf_counter() - start
        print(f"KAZE, {workers} worker thread(s): {len(images) / seconds:7.1f} utterances/s ({seconds:.2f} s)")
    counts = np.array([len(d) for d in descriptors])
    print(f"keypoints per image: mean {counts.mean():.0f}, min {counts.min()}, max {counts.max()}")

    start = time.perf_counter()
    vocab = BovwVocabulary.fit(descriptors, config, args.seed)
    fit_s = time.perf_counter() - start
    print(f"K-means ({config.kmeans}, k={config.k}) fit on {vocab.n_fit_descriptors} descriptors: {fit_s:.2f} s")
    start = time.perf_counter()
    vocab.histograms(descriptors)
    hist_s = time.perf_counter() - start
    print(f"histograms: {len(images) / hist_s:.0f} utterances/s")

    start = time.perf_counter()
    vocab.transform(images, workers=0)
    total = time.perf_counter() - start
    print(f"KAZE + histogram (all cores, uncached): {len(images) / total:.1f} utterances/s")
    if args.compare_kmeans:
        compare_kmeans(descriptors, config, args.seed, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
