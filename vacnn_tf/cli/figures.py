"""``vacnn figures features | bovw | attention | curves``: the package's teaching figures as PNG files.

Examples::

    vacnn figures features --wav DATA/emodb/wav/03a01Wa.wav --out figs/features.png --set features.n_mels=64
    vacnn figures bovw --corpus emodb --root DATA --out figs/bovw.png --set bovw.k=32
    vacnn figures bovw --run runs/emodb/paper/finetuned-... --fold 0 --out figs/bovw-fold0.png
    vacnn figures attention --model RUN/fold_0/model.keras --wav DATA/emodb/wav/03a01Wa.wav --out figs/att.png
    vacnn figures curves --run RUN --out figs/curves.png

Each command is a thin wrapper over one function of :mod:`vacnn_tf.evaluation.figures`.
"""

from __future__ import annotations

import argparse
from typing import Any

from vacnn_tf.cli.options import add_config_options

CORPUS_NAMES = ("ravdess", "emodb", "tess", "savee")


def _config_args(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, "YAML run config", "config override, repeatable, e.g. --set features.n_mels=64", metavar="YAML")


def register(subparsers: Any) -> None:
    """Add ``vacnn figures`` and its four subcommands to the ``vacnn`` parser."""
    figs = subparsers.add_parser(
        "figures", help="draw teaching figures (features, BOVW, attention, training curves) as PNG",
        description="Draw one figure and write it as a PNG. Run `vacnn figures WHAT --help` for each.",
    )
    what = figs.add_subparsers(dest="figure", metavar="WHAT")
    what.required = True

    p = what.add_parser("features", help="waveform, log-mel image and KAZE keypoints of one audio file",
                        description="Draw a file's waveform, its 224x224 log-mel image and the KAZE keypoints "
                        "found on that image, with the feature and KAZE settings of the config.")
    p.add_argument("--wav", required=True, metavar="FILE", help="audio file")
    p.add_argument("--out", required=True, metavar="PNG", help="the figure to write")
    _config_args(p)
    p.set_defaults(func=cmd_features)

    p = what.add_parser("bovw", help="BOVW histogram of one utterance per class",
                        description="Histograms of visual words for the first utterance (by path) of each class. "
                        "Either --run (a fold's own vocabulary, its test utterances) or --corpus/--root (a "
                        "vocabulary fitted on the whole corpus, an illustration, or --vocabulary FILE).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN", help="fine-tuning run directory with BOVW")
    source.add_argument("--corpus", choices=CORPUS_NAMES, help="corpus name (with --root)")
    p.add_argument("--fold", type=int, default=0, metavar="K", help="with --run: the fold (default 0)")
    p.add_argument("--root", metavar="DIR", help="with --corpus: the corpus folder or a data root holding it")
    p.add_argument("--vocabulary", metavar="NPZ", help="with --corpus: a saved vocabulary instead of fitting one")
    p.add_argument("--out", required=True, metavar="PNG", help="the figure to write")
    _config_args(p)
    p.set_defaults(func=cmd_bovw)

    p = what.add_parser("attention", help="VA/CBAM channel and spatial attention maps and Grad-CAM of a model",
                        description="Load a .keras checkpoint (RUN/fold_K/model.keras or RUN/pretrain/model.keras), "
                        "compute the log-mel image of --wav with the run's settings, and draw each attention "
                        "module's spatial and channel weights and a Grad-CAM map on head_relu.")
    p.add_argument("--model", required=True, metavar="KERAS", help="the .keras checkpoint")
    p.add_argument("--wav", required=True, metavar="FILE", help="audio file")
    p.add_argument("--out", required=True, metavar="PNG", help="the figure to write")
    p.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                   help="class Grad-CAM explains (default: the predicted one)")
    p.add_argument("--vocabulary", metavar="NPZ", help="BOVW vocabulary (default: vocabulary.npz beside the model)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="settings to use instead of the run's config.yaml (for a model outside a run)")
    p.set_defaults(func=cmd_attention, uses_tensorflow=True)

    p = what.add_parser("curves", help="training curves per fold from a run's history.csv files",
                        description="Loss and accuracy per epoch of every fold (and pretraining stage) of a run; "
                        "a dot marks the epoch kept by model selection.")
    p.add_argument("--run", required=True, metavar="RUN", help="run directory")
    p.add_argument("--out", default=None, metavar="PNG", help="default: RUN/figures/training_curves.png")
    p.set_defaults(func=cmd_curves)


def _load(args: argparse.Namespace) -> Any:
    from vacnn_tf.config import load_config

    return load_config(args.config, args.overrides)


def cmd_features(args: argparse.Namespace) -> int:
    from vacnn_tf.evaluation.figures import plot_features

    config = _load(args)
    result = plot_features(args.wav, args.out, config.features, config.bovw)
    print(f"{args.wav}: {result['seconds']:.2f} s, n_mels={config.features.n_mels}, "
          f"{result['keypoints']} KAZE keypoints; wrote {result['path']}")
    return 0


def cmd_bovw(args: argparse.Namespace) -> int:
    from vacnn_tf.evaluation.figures import bovw_figure_from_corpus, bovw_figure_from_run

    if args.run:
        if args.root or args.vocabulary:
            raise ValueError("--root and --vocabulary go with --corpus; --run uses the fold's own vocabulary.")
        result = bovw_figure_from_run(args.run, args.out, fold=args.fold)
    else:
        if not args.root:
            raise ValueError("--corpus needs --root DIR (the corpus folder or a data root holding it).")
        result = bovw_figure_from_corpus(args.corpus, args.root, args.out, _load(args), args.vocabulary)
    print(f"k={result['k']}, one utterance per class: {', '.join(result['classes'])}; wrote {result['path']}")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from vacnn_tf.config import load_config
    from vacnn_tf.evaluation.figures import attention_figure

    config = load_config(args.config) if args.config else None
    result = attention_figure(args.model, args.wav, args.out, class_name=args.class_name,
                              vocabulary_path=args.vocabulary, config=config)
    probs = ", ".join(f"{k} {v:.2f}" for k, v in result["probabilities"].items())
    print(f"predicted {result['predicted']} ({probs}); Grad-CAM explains {result['explained']}")
    for m in result["maps"]:
        print(f"  {m.layer} ({m.kind}): spatial {m.spatial.min():.2f}-{m.spatial.max():.2f}, "
              f"channel {m.channel.min():.2f}-{m.channel.max():.2f} over {len(m.channel)} channels")
    print(f"wrote {result['path']}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from vacnn_tf.evaluation.figures import plot_training_curves

    result = plot_training_curves(args.run, args.out)
    for stage, info in result["stages"].items():
        best = "" if info["best_epoch"] is None else (
            f", selected epoch {info['best_epoch']} (val accuracy {info['best_val_accuracy']:.3f})"
            if info["best_val_accuracy"] is not None else f", kept epoch {info['best_epoch']}")
        print(f"  {stage}: {info['epochs']} epochs{best}")
    print(f"wrote {result['path']}")
    return 0
