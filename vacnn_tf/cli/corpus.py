"""Corpus commands: ``vacnn corpus-stats``, ``vacnn synth``, ``vacnn features``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from vacnn_tf.cli.errors import CommandFailed

CORPUS_NAMES = ("ravdess", "emodb", "tess", "savee")


def register(subparsers: Any) -> None:
    """Add the corpus commands to the ``vacnn`` parser."""
    stats = subparsers.add_parser(
        "corpus-stats", help="count files, classes, speakers and duration of a corpus folder",
        description="Read a corpus folder with its reader and print what it holds, "
        "including every file that does not follow the corpus's naming convention.",
    )
    stats.add_argument("--corpus", required=True, choices=CORPUS_NAMES)
    stats.add_argument("--root", required=True, metavar="DIR",
                       help="the corpus folder, or a data root holding a folder named after the corpus")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    stats.set_defaults(func=cmd_corpus_stats)

    synth = subparsers.add_parser(
        "synth", help="write the small synthetic corpus (all four layouts)",
        description="Write ravdess/, emodb/, tess/ and savee/ synthetic trees in the official layouts.",
    )
    synth.add_argument("--out", required=True, metavar="DIR")
    synth.add_argument("--per-class", type=int, default=None, metavar="N",
                       help="utterances per class and corpus (default: data.synth_per_class)")
    synth.add_argument("--seed", type=int, default=None, metavar="S", help="default: the config seed")
    synth.add_argument("--corpora", nargs="+", choices=CORPUS_NAMES, default=list(CORPUS_NAMES))
    synth.set_defaults(func=cmd_synth)

    feats = subparsers.add_parser(
        "features", help="fill the log-mel image cache for a corpus",
        description="Compute (or read from the cache) the 224x224 log-mel image of every file of a corpus.",
    )
    feats.add_argument("--corpus", required=True, choices=CORPUS_NAMES)
    feats.add_argument("--root", required=True, metavar="DIR",
                       help="the corpus folder, or a data root holding a folder named after the corpus")
    feats.add_argument("--cache", default=None, metavar="DIR",
                       help="cache root (default: data.cache_dir); images go to DIR/features, where training reads them")
    feats.add_argument("--config", default=None, metavar="YAML")
    feats.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, e.g. features.n_mels=64 (repeatable)")
    feats.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes (0 = all cores, 1 = no subprocesses; default: data.workers)")
    feats.set_defaults(func=cmd_features)


def _print_unmatched(unmatched: list[tuple[str, str]], limit: int | None = None) -> None:
    shown = unmatched if limit is None else unmatched[:limit]
    for path, reason in shown:
        print(f"  {path}: {reason}")
    if len(shown) < len(unmatched):
        print(f"  ... and {len(unmatched) - len(shown)} more (use --json for the full list)")


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from vacnn_tf.corpora.readers import CORPUS_TITLES, corpus_stats, find_corpus_dir

    root = find_corpus_dir(args.root, args.corpus)
    stats = corpus_stats(args.corpus, root)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0 if stats["files"] else 1
    print(f"{CORPUS_TITLES[args.corpus]} ({args.corpus}) under {root}")
    minutes = stats["total_seconds"] / 60
    rates = ", ".join(f"{r} Hz ({n})" for r, n in stats["sample_rates"].items()) or "none"
    print(f"files: {stats['files']}   speakers: {len(stats['speakers'])}   "
          f"total: {stats['total_seconds']:.1f} s ({minutes:.1f} min)   sample rates: {rates}")
    width = max([len(c) for c in stats["classes"]] + [len(s) for s in stats["speakers"]] + [5])
    print("classes:")
    for label, count in stats["classes"].items():
        print(f"  {label:<{width}} {count:>6}")
    print("speakers:")
    for speaker, count in stats["speakers"].items():
        print(f"  {speaker:<{width}} {count:>6}")
    unmatched = [(u["path"], u["reason"]) for u in stats["unmatched"]]
    print(f"unmatched: {len(unmatched)}")
    _print_unmatched(unmatched, limit=50)
    if not stats["files"]:
        raise CommandFailed(f"no {CORPUS_TITLES[args.corpus]} files found under {root}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from vacnn_tf.config import RunConfig
    from vacnn_tf.corpora.synth import generate

    defaults = RunConfig()
    per_class = defaults.data.synth_per_class if args.per_class is None else args.per_class
    seed = defaults.seed if args.seed is None else args.seed
    start = time.perf_counter()
    roots = generate(args.out, per_class=per_class, seed=seed, corpora=args.corpora)
    print(f"synthetic corpus (per_class={per_class}, seed={seed}) in {time.perf_counter() - start:.1f} s:")
    for name, folder in roots.items():
        count = sum(1 for _ in folder.rglob("*.wav"))
        print(f"  {name:<8} {count:>5} files  {folder}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from vacnn_tf.cli.options import with_flags
    from vacnn_tf.config import load_config
    from vacnn_tf.corpora.readers import find_corpus_dir, read_corpus
    from vacnn_tf.features.logmel import extract_images
    from vacnn_tf.storage import features_cache_dir

    config = load_config(args.config, with_flags(args.set, {"data.cache_dir": ("--cache", args.cache)}))
    root = find_corpus_dir(args.root, args.corpus)
    scan = read_corpus(args.corpus, root)
    if scan.unmatched:
        print(f"{len(scan.unmatched)} file(s) do not follow the {args.corpus} convention and are skipped:")
        _print_unmatched(scan.unmatched, limit=20)
    if not len(scan):
        raise CommandFailed(f"no {args.corpus} files found under {root}")
    cache = features_cache_dir(config)
    workers = config.data.workers if args.workers is None else args.workers
    start = time.perf_counter()
    batch = extract_images(list(scan.table["path"]), config.features, cache, workers=workers)
    elapsed = time.perf_counter() - start
    done = int(batch.ok.sum())
    print(f"{args.corpus}: {len(batch.ok)} files, {done} images ({batch.cached} from cache, "
          f"{done - batch.cached} computed), {len(batch.failures)} failed, "
          f"{elapsed:.1f} s ({len(batch.ok) / max(elapsed, 1e-9):.1f} files/s); "
          f"cache {cache} (features key {config.features.key()})")
    if batch.failures:
        print("failures:")
        _print_unmatched(batch.failures)
    return 0 if done else 1
