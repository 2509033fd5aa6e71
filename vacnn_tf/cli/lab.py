"""``vacnn lab start | grade``: the teaching labs as assignments (:mod:`vacnn_tf.labs`)."""

from __future__ import annotations

import argparse

from vacnn_tf.cli.errors import CommandFailed

LAB_NUMBERS = (1, 2, 3, 4)
# Labs whose checks build Keras layers or a SavedModel; TensorFlow is imported quietly for them.
TENSORFLOW_LABS = (2, 4)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vacnn lab`` and its two subcommands to the ``vacnn`` parser."""
    labs = subparsers.add_parser(
        "lab", help="start a lab assignment or grade one (starter code and autograder)",
        description="The four labs of docs/labs/ as assignments: `vacnn lab start N DIR` copies lab N's starter "
        "code into DIR, `vacnn lab grade N DIR` checks the code written there.",
    )
    what = labs.add_subparsers(dest="lab_command", metavar="WHAT")
    what.required = True

    p = what.add_parser(
        "start", help="copy a lab's starter code into a folder",
        description="Copy lab N's starter code (the functions or layers the lab asks you to write, with TODOs, "
        "docstrings and shapes) into DIR, created if missing. A folder that is not empty is refused unless "
        "--force, which overwrites the starter's files there and leaves other files alone.",
    )
    p.add_argument("lab", type=int, choices=LAB_NUMBERS, metavar="N", help="the lab, 1-4")
    p.add_argument("dir", metavar="DIR", help="the folder to write the starter code into")
    p.add_argument("--force", action="store_true", help="overwrite the starter files in a folder that is not empty")
    p.set_defaults(func=_start)

    p = what.add_parser(
        "grade", help="grade a lab's code: one PASS/FAIL line per check and a score",
        description="Import the lab's module from DIR on its own, run the lab's checks on it (behaviour against "
        "the package's own implementation: shapes, values, leakage; never the code itself) and print one "
        "PASS or FAIL line per check with the reason, then the score. The exit status is 0 when every check "
        "passes and 1 otherwise. --solutions grades the instructor's solutions, which only a source "
        "checkout holds (instructor/solutions/).",
    )
    p.add_argument("lab", type=int, choices=LAB_NUMBERS, metavar="N", help="the lab, 1-4")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("dir", nargs="?", metavar="DIR", help="the folder holding the lab's module")
    source.add_argument("--solutions", action="store_true", help="grade the instructor's solutions instead")
    p.set_defaults(func=_grade)


def _start(args: argparse.Namespace) -> int:
    from vacnn_tf.labs import lab, start

    written = start(args.lab, args.dir, force=args.force)
    for path in written:
        print(f"wrote {path}")
    print(f"Lab {args.lab}: write {lab(args.lab).topic} in {written[0]}, then run: vacnn lab grade {args.lab} {args.dir}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from vacnn_tf.labs import solutions_dir
    from vacnn_tf.labs.grading import grade

    directory = solutions_dir(args.lab) if args.solutions else args.dir
    if args.lab in TENSORFLOW_LABS and not args.verbose:
        from vacnn_tf.cli.errors import import_tensorflow_quietly

        import_tensorflow_quietly()
    result = grade(args.lab, directory)
    print(f"lab {args.lab}: grading {result.path}")
    for line in (r.line() for r in result.results):
        print(line, flush=True)
    print(result.score())
    if not result.complete:
        failed = len(result.results) - result.passed
        raise CommandFailed(f"{failed} of {len(result.results)} checks failed (the FAIL lines say why)")
    return 0
