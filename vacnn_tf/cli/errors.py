"""The one error convention of every ``vacnn`` command (and the ``reproduce`` scripts).

- A user error (a bad option, config key, path or input file) prints one line on stderr,
  ``vacnn <command>: error: <what>``, and exits with code 2.
- A runtime failure (a full disk, a failed library call, a command that found nothing to do)
  prints one line the same way and exits with code 1.
- ``--debug`` adds the traceback; without it none is printed.
- TensorFlow's and absl's start-up logging is off unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from typing import Any, Callable, NoReturn

USAGE_ERROR = 2
FAILURE = 1

# Raised by the package's own modules, matched by name so that classifying an error never
# imports a module (vacnn_tf.training.run_dirs would bring in pandas, vacnn_tf.serving.classifier TensorFlow).
_USER_ERRORS_BY_NAME = (("vacnn_tf.training.run_dirs", "RunExistsError"), ("vacnn_tf.serving.classifier", "ServingError"))
_FAILURES_BY_NAME = (("vacnn_tf.storage", "DiskFullError"),)
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


class CommandFailed(Exception):
    """A command that ran but could not do its job; ``code`` is its exit status."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse with the convention's one-line error (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: Any) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text).strip())


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type, ...]:
    return tuple(getattr(sys.modules[module], name) for module, name in names if module in sys.modules)


def exit_code(err: BaseException) -> int:
    """2 for an error in what the user asked for, 1 for a failure while doing it."""
    if isinstance(err, CommandFailed):
        return err.code
    if isinstance(err, _loaded(_FAILURES_BY_NAME)):
        return FAILURE
    if isinstance(err, _USER_ERRORS + _loaded(_USER_ERRORS_BY_NAME)):
        return USAGE_ERROR
    return FAILURE


def _expected(err: BaseException) -> bool:
    return isinstance(err, (CommandFailed, OSError) + _USER_ERRORS + _loaded(_USER_ERRORS_BY_NAME))


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace, prog: str,
                debug: bool = False) -> int:
    """Run one command and turn what it raises into the convention's message and exit code.

    Args:
        func: The command function; it returns an exit code (None: 0) or raises.
        args: Its parsed arguments.
        prog: The command as the user typed it, e.g. ``vacnn finetune``.
        debug: Print the traceback before the message.
    """
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place every command's errors are reported
        if debug:
            traceback.print_exc()
        message = one_line(err)
        if not _expected(err):
            # a bug or a library failure: name it, and say how to see where it came from
            message = f"{type(err).__name__}: {message}" + ("" if debug else " (--debug shows the traceback)")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return exit_code(err)


def quiet_tensorflow(verbose: bool) -> None:
    """Turn TensorFlow's and absl's start-up and info logging off unless ``verbose``.

    Must run before TensorFlow is imported: its C++ side reads the level once, at load.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 sent to the null device.

    TensorFlow 2.2x logs two lines through absl before absl is initialised (the oneDNN notice
    and "All log messages before absl::InitializeLog() ..."), whatever TF_CPP_MIN_LOG_LEVEL
    says; only the import itself is silenced. A failed import still raises here as usual.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
