"""``vacnn pretrain | finetune | evaluate``: the training stages from the command line.

Examples::

    vacnn pretrain --config configs/default.yaml --data-root /data/corpora
    vacnn finetune --target emodb --variant pure --data-root /data/corpora --protocol speaker
    vacnn finetune --target savee --config configs/demo.yaml          # synthetic corpus, minutes
    vacnn finetune --target emodb --variant linear --data-root /data/corpora   # linear reference, seconds
    vacnn evaluate --run runs/emodb/paper/finetuned-vacnn-bovw-s42-1a2b3c4d
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (only what differs from the defaults)")
    parser.add_argument("--data-root", help="folder with ravdess/ emodb/ tess/ savee/ (default: synthetic corpus)")
    parser.add_argument("--out", help="run directory (default: derived from config and seed under the config's `out`)")
    parser.add_argument("--protocol", choices=("paper", "speaker"),
                        help="fold protocol (config key protocol.name; default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable, e.g. --set train.epochs=5; --set and the flags above both "
                             "beat --config, and must agree where they name one key")
    parser.add_argument("--resume", action="store_true",
                        help="continue an unfinished run (finished folds are kept) or reuse a finished one")
    parser.add_argument("--force", action="store_true", help="delete an existing run directory and start over")


def _config(args: argparse.Namespace) -> Any:
    from vacnn_tf.cli.options import with_flags
    from vacnn_tf.config import load_config

    overrides = with_flags(args.overrides, {"data.data_root": ("--data-root", args.data_root),
                                            "protocol.name": ("--protocol", args.protocol)})
    return load_config(args.config, overrides)


def _logged(func: Any) -> Any:
    """Show the stages' progress log (fold starts, cache hits) on stderr while ``func`` runs.

    Errors are reported by vacnn_tf.cli.errors, as for every command.
    """

    def wrapped(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return func(args)

    return wrapped


def cmd_pretrain(args: argparse.Namespace) -> int:
    from vacnn_tf.training import pretrain

    config = _config(args)
    # Without --resume a pretraining that exists is an error (as for every run); --resume reuses it.
    run_dir = pretrain(config, args.out, resume=args.resume, force=args.force)
    print(f"pretrained model: {Path(run_dir) / 'pretrain' / 'model.keras'}")
    summary = Path(run_dir) / "metrics" / "summary.md"
    if summary.is_file():
        print(summary.read_text())
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from vacnn_tf.training import finetune

    config = _config(args)
    summary = finetune(config, args.target, args.out, variant=args.variant, pretrained=args.pretrained,
                       resume=args.resume, force=args.force)
    print(f"run: {summary.run_dir}")
    for fold in summary.folds:
        print(f"  fold {fold['fold']}: accuracy {fold['accuracy']:.4f}  UAR {fold['uar']:.4f}  (n={fold['test']})")
    print(f"mean accuracy {summary.accuracy_mean:.4f} +- {summary.accuracy_std:.4f}; "
          f"mean UAR {summary.uar_mean:.4f} +- {summary.uar_std:.4f}")
    if summary.audit:
        print(f"leak audit: {summary.audit['best_test_accuracy_mean']:.4f} +- {summary.audit['best_test_accuracy_std']:.4f}. "
              f"{summary.audit['note']}")
    if summary.caveat:
        print(f"NOTE: {summary.caveat}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vacnn_tf.training import evaluate

    tables = evaluate(args.run)
    print(tables["summary"].astype(object).to_markdown(floatfmt=".4f"))
    print(f"\ntables and figures: {Path(args.run) / 'metrics'}")
    if args.json:
        print(json.dumps(tables["summary"].to_dict(), indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add ``pretrain``, ``finetune`` and ``evaluate`` to the ``vacnn`` command."""
    p = subparsers.add_parser(
        "pretrain", help="pretrain on TESS + RAVDESS (7 labels, section 4.2)",
        description="Train the network model.architecture names (the VACNN by default) on TESS and "
        "RAVDESS with the 7 pretraining labels, the paper's source model (section 4.2); a stratified "
        "hold-out of 1/protocol.folds of the data is kept out of training and scored (Table 2). Writes "
        "RUN/pretrain/model.keras, its history and metrics; a pretraining that exists is an error "
        "unless --resume (reuse or continue it) or --force (start over).",
    )
    _common(p)
    p.set_defaults(func=_logged(cmd_pretrain), uses_tensorflow=True)

    p = subparsers.add_parser(
        "finetune", help="cross-validate on a target corpus (fine-tuned or pure)",
        description="Cross-validate on RAVDESS, EmoDB or SAVEE with the folds of --protocol: per fold, "
        "fit the BOVW vocabulary on the training part, fine-tune the pretrained VACNN (pretraining "
        "first when none is given), pick the epoch on validation accuracy and score the test part. "
        "Writes RUN/fold_K/ (model, predictions, metrics, TensorBoard logs), folds.json and "
        "RUN/metrics/, and prints accuracy and UAR per fold with their mean and spread.",
    )
    _common(p)
    p.add_argument("--target", required=True, choices=("ravdess", "emodb", "savee"), help="target corpus")
    p.add_argument("--variant", default="finetuned", choices=("finetuned", "pure", "linear"),
                   help="finetuned: from the pretrained VACNN; pure: same architecture, random init, nothing frozen; "
                        "linear (not the paper's): logistic regression on per-mel-band statistics + the BOVW histogram")
    p.add_argument("--pretrained", help="pretraining run dir or .keras file to use for every fold (default: pretrain as needed)")
    p.set_defaults(func=_logged(cmd_finetune), uses_tensorflow=True)

    p = subparsers.add_parser(
        "evaluate", help="rebuild a run's tables and figures from its predictions",
        description="Read the predictions.csv of the finished folds (or the pretraining hold-out) of a run "
        "and rewrite RUN/metrics/: the summary (accuracy, UAR and macro-F1 per fold, their mean and "
        "standard deviation), per-class precision/recall/F1 and the confusion matrices (CSV, Markdown, "
        "PNG). Nothing is retrained.",
    )
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.set_defaults(func=_logged(cmd_evaluate))
