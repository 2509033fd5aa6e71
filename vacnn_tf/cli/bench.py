"""``vacnn bench``: throughput and latency of every stage on this machine (see vacnn_tf.bench)."""

from __future__ import annotations

import argparse
import json
import sys

from vacnn_tf.cli.options import add_config_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure log-mel, KAZE, tf.data, training, inference and SavedModel latency on this machine",
        description=(
            "Time every stage after a warm-up on synthetic data and print the figures (docs/performance.md "
            "explains them). Runtime settings come from the config's train section, e.g. "
            "--set train.precision=mixed_bfloat16 or --set train.steps_per_execution=1."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; figures not worth quoting)")
    add_config_options(parser, "YAML run config (features, bovw, model, train sections)",
                       "config override, repeatable, e.g. --set train.intra_op_threads=2")
    parser.set_defaults(func=run, uses_tensorflow=True)


def run(args: argparse.Namespace) -> int:
    from vacnn_tf.bench import format_report, run_bench
    from vacnn_tf.config import load_config

    config = load_config(args.config, args.overrides)

    def progress(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    result = run_bench(quick=args.quick, config=config, progress=progress)  # ValueError: e.g. an unknown train.precision
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
