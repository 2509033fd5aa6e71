"""A Jupyter notebook per lab, generated from its handout and its starter code.

    python -m vacnn_tf.labs.notebooks docs/labs     # writes docs/labs/lab1-features.ipynb, ...

What a notebook holds, in the handout's order:

- the handout's prose, with its ```` ```sh ```` blocks (optional commands), as markdown cells;
- each ```` ```bash ```` block as a ``%%bash`` cell. A notebook runs each cell in a shell of its
  own, so a cell starts with the variable assignments (``DATA=...``, ``LAB=...``) of the cells
  before it, which a handout's single shell would still hold;
- after the "Assignment" section: a cell that writes the starter code (``%%writefile``, edit
  it there) into the assignment folder, and a cell that grades it.

The notebooks are written with the json module in nbformat 4.5's layout (no dependency). A
test regenerates them and compares (tests/test_lab_grading.py), so a notebook never drifts
from its handout or its starter: after changing either, rerun the command above.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from vacnn_tf.labs import LABS, assignment_dir, lab, starter_dir
from vacnn_tf.labs.handouts import FENCE, handout_path

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SECTION = re.compile(r"^(?=## )", re.MULTILINE)


def _source(text: str) -> list[str]:
    """Notebook source lines: each keeps its newline but the last."""
    lines = text.strip("\n").splitlines(keepends=True)
    if lines:
        lines[-1] = lines[-1].rstrip("\n")
    return lines


class _Cells:
    """The cells of one notebook, with ids stable across regenerations."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.cells: list[dict[str, Any]] = []

    def _add(self, cell: dict[str, Any]) -> None:
        self.cells.append({**cell, "id": f"lab{self.number}-{len(self.cells):02d}"})

    def markdown(self, text: str) -> None:
        if text.strip():
            self._add({"cell_type": "markdown", "metadata": {}, "source": _source(text)})

    def code(self, text: str) -> None:
        self._add({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": _source(text)})


def _bash_cell(body: str, assignments: list[str]) -> str:
    preamble = "# the variables of the cells above\n" + "\n".join(assignments) + "\n\n" if assignments else ""
    return f"%%bash\n{preamble}{body}"


def _assignment_cells(cells: _Cells, number: int) -> None:
    spec = lab(number)
    folder = assignment_dir(number)
    cells.code(f"# the assignment's folder (what `vacnn lab start` would create)\nimport os\n\n"
               f"os.makedirs({folder!r}, exist_ok=True)")
    cells.markdown(
        f"In this notebook the next cell holds the starter code (what `vacnn lab start {number} {folder}` "
        f"copies). Write your code in it and run it: it saves the cell as `{folder}/{spec.module}`. Then run "
        "the cell after it to grade the file."
    )
    code = starter_dir(number).joinpath(spec.module).read_text()
    cells.code(f"%%writefile {folder}/{spec.module}\n{code}")
    cells.code(f"%%bash\nvacnn lab grade {number} {folder}")


def notebook(number: int, handout: str | None = None) -> dict[str, Any]:
    """Lab ``number``'s notebook as a JSON-ready dict (``handout``: its text; default: the file)."""
    spec = lab(number)
    text = handout if handout is not None else handout_path(number).read_text()
    cells = _Cells(number)
    cells.markdown(
        f"*Generated from the handout `docs/labs/{spec.handout}` and the lab's starter code by "
        "`python -m vacnn_tf.labs.notebooks`: edit those, not this notebook.* Start Jupyter in the "
        "folder the handout runs from (the repository root), with the environment's `vacnn` on the PATH."
    )
    assignments: list[str] = []
    for section in _SECTION.split(text):
        end = 0
        for match in FENCE.finditer(section):
            if match.group(1) != "bash":  # sh and text blocks stay in the markdown, shown but not run
                continue
            cells.markdown(section[end:match.start()])
            body = match.group(2)
            cells.code(_bash_cell(body, assignments))
            assignments += [line for line in body.splitlines() if _ASSIGNMENT.match(line) and line not in assignments]
            end = match.end()
        cells.markdown(section[end:])
        if section.startswith("## Assignment"):
            _assignment_cells(cells, number)
    return {
        "cells": cells.cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_text(number: int, handout: str | None = None) -> str:
    """The ``.ipynb`` file's text, as Jupyter writes it (one-space indent, a final newline)."""
    return json.dumps(notebook(number, handout), indent=1, ensure_ascii=False) + "\n"


def write_notebooks(out: str | Path) -> list[Path]:
    """Write every lab's notebook into ``out`` as ``labN-topic.ipynb``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, spec in LABS.items():
        path = out / f"{spec.stem}.ipynb"
        path.write_text(notebook_text(number))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vacnn_tf.labs.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder to write the notebooks into (docs/labs in the repository)")
    args = parser.parse_args(argv)
    for path in write_notebooks(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
