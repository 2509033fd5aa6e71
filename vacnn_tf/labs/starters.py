"""Generate each lab's starter code from the instructor's solution, so the two cannot drift.

    python -m vacnn_tf.labs.starters          # rewrite vacnn_tf/labs/starter/ from instructor/solutions/
    python -m vacnn_tf.labs.starters --check  # exit 1 if a starter differs from what would be written

Markers in a solution file (comments, so the solution runs as it is):

- ``### BEGIN SOLUTION`` ... ``### END SOLUTION``: the part the student writes. In the
  starter the lines between the markers become ``raise NotImplementedError``, indented as the
  ``BEGIN`` marker is, which the grader reports as "not implemented".
- ``### INSTRUCTOR: ...``: a note for instructors only; left out of the starter.
- any other ``### ...`` comment (the TODO list of a task): kept, as ``# ...``.

A test (tests/test_lab_grading.py) fails when a starter is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vacnn_tf.labs import INSTRUCTOR_DIR, LABS, checkout_root

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
INSTRUCTOR_NOTE = "### INSTRUCTOR:"


def starter_source(solution: str, name: str = "solution") -> str:
    """The starter text of one solution file (``name`` only names the file in errors).

    Raises:
        ValueError: unbalanced or nested markers.
    """
    out: list[str] = []
    inside = after_note = False
    for number, line in enumerate(solution.splitlines(keepends=True), start=1):
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if after_note and not stripped and out and not out[-1].strip():
            continue  # a dropped note leaves one blank line, not two
        after_note = False
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{name}, line {number}: {BEGIN} inside another solution block")
            inside = True
            out.append(f"{indent}raise NotImplementedError\n")
        elif stripped == END:
            if not inside:
                raise ValueError(f"{name}, line {number}: {END} without {BEGIN}")
            inside = False
        elif inside:
            continue
        elif stripped.startswith(INSTRUCTOR_NOTE):
            after_note = True
        elif stripped.startswith("###"):
            out.append(indent + "#" + stripped[3:] + "\n")
        else:
            out.append(line)
    if inside:
        raise ValueError(f"{name}: {BEGIN} without {END}")
    return "".join(out)


def solutions_root() -> Path:
    return checkout_root() / INSTRUCTOR_DIR / "solutions"


def starter_root() -> Path:
    return Path(__file__).resolve().parent / "starter"


def expected_starters() -> dict[Path, str]:
    """Every starter file as it should be, from the solutions: ``{starter path: text}``."""
    expected = {}
    for number, spec in LABS.items():
        solution = solutions_root() / f"lab{number}" / spec.module
        expected[starter_root() / f"lab{number}" / spec.module] = starter_source(solution.read_text(), str(solution))
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vacnn_tf.labs.starters", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a starter is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_starters().items():
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(checkout_root())}")
    if args.check and stale:
        print("stale: " + ", ".join(str(p.relative_to(checkout_root())) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
