"""``vacnn seeds``: one recipe's runs over several seeds, their spread and the seed ensemble."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vacnn_tf.training.seeds import SeedReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "seeds",
        help="sum up one recipe's runs over several seeds and score their seed ensemble",
        description=(
            "Read finished fine-tuning runs that differ only in `seed` (a run of another recipe is refused) "
            "and print, per seed, the mean accuracy and UAR over its test folds; their mean and standard "
            "deviation over seeds and the standard deviation over all folds; and the seed ensemble (ours, "
            "not the paper's): each utterance's class probabilities averaged over the runs, scored once "
            "over the utterances every run tested. --out writes DIR/seeds.json and "
            "DIR/ensemble_predictions.csv. Nothing is retrained."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, one per seed")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write seeds.json and ensemble_predictions.csv here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vacnn_tf.training.seeds import seed_report, write_seed_report

    report = seed_report(args.runs)  # SeedRunsError (a ValueError): one line, exit 2
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    if args.out:
        for path in write_seed_report(report, args.out):
            print(f"wrote {path}")
    return 0


def format_report(report: "SeedReport") -> str:
    """The table ``vacnn seeds`` prints: a line per seed, the spread, the ensemble."""
    recipe = report.recipe
    folds = sum(len(r.fold_accuracy) for r in report.runs)
    lines = [f"{recipe['target']} {recipe['variant']} {recipe['architecture']}"
             f"{' + BOVW' if recipe['use_bovw'] else ''}, protocol {recipe['protocol']}, {len(recipe['classes'])} classes",
             f"{'seed':>6}  {'folds':>5}  {'accuracy':>8}  {'UAR':>6}  run"]
    for r in report.runs:
        lines.append(f"{r.seed:>6}  {len(r.fold_accuracy):>5}  {r.accuracy:>8.4f}  {r.uar:>6.4f}  {r.run_dir}")
    lines.append(f"mean +- sd over {len(report.runs)} seeds: accuracy {report.accuracy_mean:.4f} +- "
                 f"{report.accuracy_std:.4f}, UAR {report.uar_mean:.4f} +- {report.uar_std:.4f} "
                 f"(sd over all {folds} folds: accuracy {report.accuracy_fold_std:.4f}, UAR {report.uar_fold_std:.4f})")
    ens = report.ensemble
    lines.append(f"seed ensemble ({ens.runs} runs, {ens.utterances} utterances): accuracy {ens.accuracy:.4f}, "
                 f"UAR {ens.uar:.4f}, macro-F1 {ens.macro_f1:.4f}" + (f"; {ens.coverage}" if ens.coverage else ""))
    lines.append("NOTE: the seed ensemble is ours, not the paper's.")
    if recipe["protocol"] == "paper":
        from vacnn_tf.datasets.folds import LEAKAGE_CAVEAT

        lines.append(f"NOTE: {LEAKAGE_CAVEAT}")
    return "\n".join(lines)
