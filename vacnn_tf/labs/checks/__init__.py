"""The checks of each lab, one module per lab (``lab1`` ... ``lab4``).

Each module defines ``CHECKS`` (the :class:`~vacnn_tf.labs.grading.Check` list, in the order
a student meets the tasks), ``REFERENCES`` (the package code the lab asks the student to
write, refused while the student's code runs) and ``fixtures(tmp)`` (the inputs the checks
share, small enough that grading takes seconds).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Sequence

from vacnn_tf.labs import lab
from vacnn_tf.labs.grading import Check


def lab_checks(number: int) -> tuple[Sequence[Check], Sequence[str], Callable[[Path], Any]]:
    """``(CHECKS, REFERENCES, fixtures)`` of lab ``number``."""
    module = importlib.import_module(f"vacnn_tf.labs.checks.lab{lab(number).number}")
    return module.CHECKS, module.REFERENCES, module.fixtures
