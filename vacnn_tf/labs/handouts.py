"""The lab handouts (docs/labs/labN-*.md) read as data.

A handout's ```` ```bash ```` blocks are its steps, run in order in one shell; its ```` ```sh ````
blocks are optional or one-off commands (starting the assignment, long runs), shown but not
run. The test of the handouts (tests/test_labs.py), the timing benchmark
(benchmarks/labs_wall_time.py) and the notebooks (:mod:`vacnn_tf.labs.notebooks`) all read
them through these functions, so they agree on what a lab runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from vacnn_tf.labs import checkout_root, lab

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def handouts_dir() -> Path:
    """docs/labs/ of the checkout (the handouts are documentation, not package data).

    Raises:
        FileNotFoundError: not running from a checkout.
    """
    path = checkout_root() / "docs" / "labs"
    if not path.is_dir():
        raise FileNotFoundError(f"The lab handouts are in docs/labs/ of the source checkout; {path} does not exist.")
    return path


def handout_path(number: int) -> Path:
    """The handout of lab ``number``."""
    return handouts_dir() / lab(number).handout


def code_blocks(text: str) -> Iterator[tuple[str, str, int]]:
    """``(language, body, line number of the body's first line)`` of every fenced block."""
    for match in FENCE.finditer(text):
        yield match.group(1), match.group(2), text.count("\n", 0, match.start()) + 2


def lab_script(path: Path) -> str:
    """The ```bash blocks of a handout, in order: the lab as one shell script."""
    return "\n".join(body for lang, body, _ in code_blocks(path.read_text()) if lang == "bash")
