"""``vacnn model-summary``: print a model's Keras summary and its parameter counts."""

from __future__ import annotations

import argparse

from vacnn_tf.cli.options import add_config_options
from vacnn_tf.config import ARCHITECTURES

# The architectures plus "finetuned", from the config module so that `vacnn --help` does not
# import TensorFlow.
MODEL_CHOICES: tuple[str, ...] = (*ARCHITECTURES, "finetuned")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model-summary",
        help="print a model's layers, output shapes and parameter counts",
        description=(
            "Build a model with random weights and print its Keras summary and parameter counts "
            "(total/trainable/non-trainable). 'finetuned' is the fine-tuned model of Figure 3 built "
            "on a fresh VACNN (pretrained on --pretrain-classes classes), frozen as model.freeze_through says."
        ),
    )
    parser.add_argument("--model", choices=MODEL_CHOICES, default="vacnn", help="architecture (default: vacnn)")
    parser.add_argument("--classes", type=int, default=7, help="number of output classes (default: 7)")
    parser.add_argument(
        "--pretrain-classes", type=int, default=7, help="finetuned only: classes of the pretrained VACNN (default: 7)"
    )
    parser.add_argument("--no-bovw", action="store_true", help="finetuned only: without the BOVW branch")
    add_config_options(parser, "YAML run config (its model section is used)",
                       "config override, e.g. --set model.freeze_through=va_block2 (repeatable)")
    parser.set_defaults(func=run_model_summary, uses_tensorflow=True)


def run_model_summary(args: argparse.Namespace) -> int:
    from vacnn_tf.config import load_config
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_model, count_params

    full = load_config(args.config, args.overrides)
    config, size = full.model, full.features.image_size
    if args.model == "finetuned":
        pretrained = build_model("vacnn", args.pretrain_classes, config, size)
        model = build_finetuned(pretrained, args.classes, config, use_bovw=not args.no_bovw)
    else:
        model = build_model(args.model, args.classes, config, size)
    model.summary()  # Keras fits the table to the terminal (80 columns when piped)
    counts = count_params(model)
    print(
        f"{model.name}: total={counts['total']:,} trainable={counts['trainable']:,} "
        f"non_trainable={counts['non_trainable']:,}"
    )
    return 0
