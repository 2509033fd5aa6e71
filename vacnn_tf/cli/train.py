"""``vacnn pretrain | finetune | evaluate``: the training stages from the command line.

Examples::

    vacnn pretrain --config configs/paper.yaml --data-root /data/corpora
    vacnn finetune --target emodb --variant pure --data-root /data/corpora --protocol speaker
    vacnn finetune --target savee --config configs/demo.yaml          # synthetic corpus, minutes
    vacnn finetune --target emodb --variant linear --data-root /data/corpora   # linear reference, seconds
    vacnn finetune --target emodb --data-root /data/corpora --jobs 2      # the folds on two workers
    vacnn evaluate --run runs/emodb/paper/finetuned-vacnn-bovw-s42-1a2b3c4d
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
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
    from vacnn_tf.training.pretraining import pretrain

    config = _config(args)
    # Without --resume a pretraining that exists is an error (as for every run); --resume reuses it.
    run_dir = pretrain(config, args.out, resume=args.resume, force=args.force)
    print(f"pretrained model: {Path(run_dir) / 'pretrain' / 'model.keras'}")
    summary = Path(run_dir) / "metrics" / "summary.md"
    if summary.is_file():
        print(summary.read_text())
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from vacnn_tf.config import ConfigError
    from vacnn_tf.training.workers import check_worker_options, jobs_for

    config = _config(args)
    problem = check_worker_options(args)
    if problem:
        raise ConfigError(problem)
    args.jobs = jobs_for(args.jobs, config.train.jobs, sharded=args.shard is not None)
    if args.jobs > 1:
        summary = _finetune_on_workers(args, config)
    else:
        summary = _finetune_here(args, config, resume=args.resume or args.shard is not None, force=args.force)
    if summary is None:  # a shard whose folds left are other workers'
        from vacnn_tf.training.workers import without_shard

        assemble = without_shard(args.argv) + ([] if args.resume else ["--resume"])
        print(f"shard {args.shard}: once every shard has ended, this prints the run: vacnn {shlex.join(assemble)}")
        return 0
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


def _finetune_here(args: argparse.Namespace, config: Any, resume: bool, force: bool) -> Any:
    """This process's part: every fold, or with ``--shard`` those no other worker holds (None when
    the rest is theirs). Folds other workers hold are waited for, except by a shard."""
    from contextlib import nullcontext

    from vacnn_tf.training.claims import Claims
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.workers import until_done

    name = f"shard {args.shard}" if args.shard is not None else ""
    with (nullcontext() if force else Claims(name)) as claims:  # --force runs alone: it claims nothing
        return until_done(lambda: finetune(config, args.target, args.out, variant=args.variant,
                                           pretrained=args.pretrained, resume=resume, force=force, claims=claims),
                          shard=args.shard, note=lambda line: print(line, flush=True))


def _finetune_on_workers(args: argparse.Namespace, config: Any) -> Any:
    """``--jobs N``: --resume / --force applied once, N pinned ``--shard`` workers, then the run's summary."""
    from vacnn_tf.datasets.folds import shares_one_pretraining
    from vacnn_tf.training.caches import cache_needs, fill_caches
    from vacnn_tf.training.progress import plan_pretrain
    from vacnn_tf.training.run_dirs import finetune_dir, finetune_key, prepare_run_dir
    from vacnn_tf.training.workers import (child_argv, pretrain_before_workers, python_command, run_jobs,
                                           worker_placements)

    worker_placements(args.jobs)  # more workers than cores (or GPUs): a usage error before anything starts
    run_dir = Path(args.out) if args.out else finetune_dir(config, args.target, args.variant, args.pretrained)
    _, finished = prepare_run_dir(run_dir, config, resume=args.resume, force=args.force,
                                  key=finetune_key(args.pretrained))
    if not finished:
        fill_caches(cache_needs(config, args.target, args.variant, args.pretrained),
                    note=lambda line: print(line, flush=True))
        if args.variant == "finetuned" and args.pretrained is None:
            # the shared pretraining alone: a fold's own (RAVDESS under `speaker`) stays with the workers, and
            # planning every fold would scan the corpus once more before the workers scan it again
            shared = plan_pretrain(config) if shares_one_pretraining(args.target, config.protocol.name) else []
            pretrain_before_workers([(config, unit) for unit in shared], args.jobs,
                                    note=lambda line: print(line, flush=True))
        codes = run_jobs(lambda shard: python_command("vacnn_tf", child_argv(args.argv, shard, ["--resume"])), args.jobs)
        if any(codes):
            print(f"{sum(1 for c in codes if c)} of {len(codes)} workers ended with an error; what they left undone "
                  "is retried here", file=sys.stderr)
    return _finetune_here(args, config, resume=True, force=False)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vacnn_tf.training.stage import evaluate

    tables = evaluate(args.run)
    print(tables["summary"].astype(object).to_markdown(floatfmt=".4f"))
    print(f"\ntables and figures: {Path(args.run) / 'metrics'}")
    if args.json:
        print(json.dumps(tables["summary"].to_dict(), indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add ``pretrain``, ``finetune`` and ``evaluate`` to the ``vacnn`` command."""
    from vacnn_tf.training.workers import add_worker_options

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
        "RUN/metrics/, and prints accuracy and UAR per fold with their mean and spread. --jobs N trains "
        "the folds on N worker processes of this machine (a pretraining they all share first, on all the "
        "cores); --shard I/N makes this process one of N "
        "workers sharing the run directory (a cluster's job array), each fold trained by one of them.",
    )
    _common(p)
    p.add_argument("--target", required=True, choices=("ravdess", "emodb", "savee"), help="target corpus")
    p.add_argument("--variant", default="finetuned", choices=("finetuned", "pure", "linear"),
                   help="finetuned: from the pretrained VACNN; pure: same architecture, random init, nothing frozen; "
                        "linear (not the paper's): logistic regression on per-mel-band statistics + the BOVW histogram")
    p.add_argument("--pretrained", help="pretraining run dir or .keras file to use for every fold (default: pretrain as needed)")
    add_worker_options(p)
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
