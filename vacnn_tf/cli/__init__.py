"""The ``vacnn`` command line. Each stage's commands live in their own module of this package.

Heavy libraries (TensorFlow, OpenCV) are imported inside the command functions so that
``vacnn --help`` and the corpus commands start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``; every parser sets ``func`` via set_defaults.
COMMAND_MODULES: tuple[str, ...] = (
    "vacnn_tf.cli.corpus",
    "vacnn_tf.cli.model",
    "vacnn_tf.cli.bovw",
    "vacnn_tf.cli.train",
    "vacnn_tf.cli.serve",
    "vacnn_tf.cli.bench",
    "vacnn_tf.cli.figures",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vacnn",
        description="Visual-attention CNN + BOVW speech emotion recognition (Keras 3).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that stage's commands are not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
