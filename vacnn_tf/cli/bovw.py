"""BOVW commands: ``vacnn bovw-silhouette`` (the number-of-visual-words study of section 3.2, eq. 3)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vacnn_tf.cli.errors import CommandFailed

CORPUS_NAMES = ("ravdess", "emodb", "tess", "savee")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,32,64. Received: {text!r}")
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"every k must be at least 2. Received: {text!r}")
    return values


def register(subparsers: Any) -> None:
    """Add the BOVW commands to the ``vacnn`` parser."""
    sil = subparsers.add_parser(
        "bovw-silhouette", help="mean silhouette (eq. 3) of K-means over KAZE descriptors, per k",
        description="Extract KAZE descriptors from every log-mel image of a corpus (cached), fit K-means "
        "for each k on a bounded sample, and score the mean silhouette value on a fixed sample. Writes "
        "silhouette.csv and silhouette.png and prints the table. This is a study of the descriptor "
        "space over the whole corpus (as the paper's); training vocabularies are fitted per fold.",
    )
    sil.add_argument("--corpus", required=True, choices=CORPUS_NAMES)
    sil.add_argument("--root", required=True, metavar="DIR",
                     help="the corpus folder, or a data root holding a folder named after the corpus")
    sil.add_argument("--k", type=_int_list, default=[16, 32, 64, 128, 256], metavar="K,K,...",
                     help="cluster counts (default: 16,32,64,128,256)")
    sil.add_argument("--cache", default=None, metavar="DIR",
                     help="cache root (default: data.cache_dir); images and descriptors go to DIR/features "
                     "and DIR/bovw, where training reads them")
    sil.add_argument("--out", default=None, metavar="DIR", help="default: {out}/bovw-silhouette/{corpus}")
    sil.add_argument("--sample", type=int, default=10000, metavar="N",
                     help="descriptors scored per k; silhouette costs O(N^2) (default 10000: seconds per k)")
    sil.add_argument("--seed", type=int, default=None, metavar="S", help="default: the config seed")
    sil.add_argument("--config", default=None, metavar="YAML")
    sil.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="config override, e.g. bovw.kmeans=minibatch (repeatable)")
    sil.add_argument("--workers", type=int, default=None, metavar="N",
                     help="image processes and KAZE threads (0 = all cores; default: data.workers)")
    sil.set_defaults(func=cmd_bovw_silhouette)


def plot_silhouette(table: Any, path: str | Path, title: str) -> Path:
    """Line plot of mean silhouette against k (log2 axis), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vacnn_tf.storage import atomic_write

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(table["k"], table["silhouette"], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(table["k"]), [str(k) for k in table["k"]])
    ax.set_xlabel("visual words k")
    ax.set_ylabel("mean silhouette (eq. 3)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def cmd_bovw_silhouette(args: argparse.Namespace) -> int:
    from vacnn_tf.cli.options import with_flags
    from vacnn_tf.config import load_config
    from vacnn_tf.corpora.readers import find_corpus_dir, read_corpus
    from vacnn_tf.features.bovw import descriptors_for, silhouette_study
    from vacnn_tf.features.logmel import extract_images
    from vacnn_tf.storage import bovw_cache_dir, features_cache_dir, write_text

    config = load_config(args.config, with_flags(args.set, {"data.cache_dir": ("--cache", args.cache)}))
    seed = config.seed if args.seed is None else args.seed
    workers = config.data.workers if args.workers is None else args.workers
    out = Path(args.out) if args.out is not None else Path(config.out) / "bovw-silhouette" / args.corpus
    root = find_corpus_dir(args.root, args.corpus)
    scan = read_corpus(args.corpus, root)
    if not len(scan):
        raise CommandFailed(f"no {args.corpus} files found under {root}")

    start = time.perf_counter()
    # training's cache folders, so the study and the folds share the image and KAZE work
    batch = extract_images(list(scan.table["path"]), config.features, features_cache_dir(config), workers=workers)
    descriptors = descriptors_for(batch.images, config.bovw, cache_dir=bovw_cache_dir(config), workers=workers)
    n_desc = sum(len(d) for d in descriptors)
    print(f"{args.corpus}: {len(descriptors)} images, {n_desc} KAZE descriptors "
          f"({len(batch.failures)} unreadable files), {time.perf_counter() - start:.1f} s")
    table = silhouette_study(descriptors, args.k, sample_size=args.sample, seed=seed, config=config.bovw)
    table.insert(0, "corpus", args.corpus)
    write_text(out / "silhouette.csv", table.to_csv(index=False))
    title = (f"{args.corpus}: {config.bovw.kmeans} K-means on {int(table['n_fit_descriptors'][0])} KAZE descriptors\n"
             f"silhouette on {int(table['n_descriptors'][0])} descriptors (seed {seed})")
    plot_silhouette(table, out / "silhouette.png", title)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out / 'silhouette.csv'} and {out / 'silhouette.png'}")
    return 0
