"""The ``vacnn`` command line. Each stage's commands live in their own module of this package.

Heavy libraries (TensorFlow, OpenCV) are imported inside the command functions so that
``vacnn --help`` and the corpus commands start quickly. Every command follows one convention
for errors, exit codes and logging (:mod:`vacnn_tf.cli.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterator

from vacnn_tf import __version__
from vacnn_tf.cli.errors import OneLineParser, import_tensorflow_quietly, quiet_tensorflow, run_command
from vacnn_tf.config import keras_backend

# Each module defines ``register(subparsers)``; every parser sets ``func`` via set_defaults,
# and ``uses_tensorflow=True`` where the command imports TensorFlow.
COMMAND_MODULES: tuple[str, ...] = (
    "vacnn_tf.cli.corpus",
    "vacnn_tf.cli.model",
    "vacnn_tf.cli.bovw",
    "vacnn_tf.cli.train",
    "vacnn_tf.cli.seeds",
    "vacnn_tf.cli.serve",
    "vacnn_tf.cli.bench",
    "vacnn_tf.cli.figures",
    "vacnn_tf.cli.lab",
)


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--verbose", action="store_true", default=default,
                        help="show TensorFlow's start-up and info logging")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="print the traceback of an error")


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser of a command that runs (no subcommands of its own), in registration order."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
        return
    for child in subs[0].choices.values():
        yield from leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vacnn",
        description="Visual-attention CNN + BOVW speech emotion recognition (Keras 3).",
    )
    parser.add_argument("--version", action="version", version=f"vacnn {__version__}")
    _add_global_options(parser, default=False)
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
    for leaf in leaf_parsers(parser):
        # SUPPRESS: given after the command it counts, and it never resets one given before it
        _add_global_options(leaf, default=argparse.SUPPRESS)
        leaf.set_defaults(command_prog=leaf.prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # a command that starts workers (--jobs) runs them with its own arguments
    quiet_tensorflow(args.verbose)
    # under another Keras backend (KERAS_BACKEND=jax) the training commands never import TensorFlow
    if getattr(args, "uses_tensorflow", False) and not args.verbose and keras_backend() == "tensorflow":
        import_tensorflow_quietly()
    return run_command(args.func, args, prog=args.command_prog, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
