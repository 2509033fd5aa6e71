"""The four teaching labs (docs/labs/) as assignments: starter code, an autograder, notebooks.

- ``vacnn_tf/labs/starter/labN/``: the code a student starts from, with TODOs, shipped as
  package data so that ``vacnn lab start N DIR`` works from an installed wheel. Each starter is
  generated from the instructor's solution (:mod:`vacnn_tf.labs.starters`).
- The solutions and the expected answers live outside the package, in the checkout's
  ``instructor/`` folder: a wheel handed to students does not contain them.
- :mod:`vacnn_tf.labs.grading` runs a lab's checks (:mod:`vacnn_tf.labs.checks`) on a folder:
  ``vacnn lab grade N DIR``.
- :mod:`vacnn_tf.labs.notebooks` writes a notebook per lab from its handout and its starter.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable


@dataclass(frozen=True)
class Lab:
    """One lab.

    Attributes:
        number: 1-4.
        handout: The handout's file name in docs/labs/.
        module: The file the student writes, in the starter folder.
        topic: What the student writes, in a few words.
    """

    number: int
    handout: str
    module: str
    topic: str

    @property
    def stem(self) -> str:
        """``lab1-features``: the handout's name without ``.md`` (and the notebook's)."""
        return self.handout.removesuffix(".md")


LABS: dict[int, Lab] = {
    1: Lab(1, "lab1-features.md", "features_lab.py", "the log-mel image and the BOVW histogram"),
    2: Lab(2, "lab2-attention.md", "attention_lab.py", "channel and spatial attention and the VA module as Keras layers"),
    3: Lab(3, "lab3-transfer.md", "folds_lab.py", "speaker-independent folds and the pretraining exclusion"),
    4: Lab(4, "lab4-deployment.md", "serving_lab.py", "a TF Serving client and the signature check"),
}

# The checkout's top-level folder of what students are not handed (solutions, answers).
INSTRUCTOR_DIR = "instructor"


def lab(number: int) -> Lab:
    """The lab numbered ``number``; a ValueError lists the numbers there are."""
    if number not in LABS:
        raise ValueError(f"There is no lab {number}. Expected one of {sorted(LABS)}. Received: lab={number!r}")
    return LABS[number]


def starter_dir(number: int) -> Traversable:
    """Lab ``number``'s starter folder inside the installed package."""
    # one joinpath per level: Python 3.10's Traversable takes one name at a time
    return resources.files("vacnn_tf.labs").joinpath("starter").joinpath(f"lab{lab(number).number}")


def assignment_dir(number: int) -> str:
    """Where the handouts and notebooks put lab ``number``'s assignment: ``labs-out/labN/assignment``."""
    return f"labs-out/lab{lab(number).number}/assignment"


def checkout_root() -> Path:
    """The folder above the package: the repository root when running from a checkout."""
    return Path(__file__).resolve().parents[2]


def solutions_dir(number: int) -> Path:
    """The instructor's solution of lab ``number`` (``instructor/solutions/labN/`` of the checkout).

    Raises:
        FileNotFoundError: not running from a checkout that holds the instructor folder, as
            from an installed wheel, which never contains the solutions.
    """
    path = checkout_root() / INSTRUCTOR_DIR / "solutions" / f"lab{lab(number).number}"
    if not path.is_dir():
        raise FileNotFoundError(
            f"The instructor's solutions are not part of the installed package (looked for {path}): they "
            f"live in {INSTRUCTOR_DIR}/solutions/ of the source checkout. Grade a copy of them with "
            f"`vacnn lab grade {number} DIR`."
        )
    return path


def start(number: int, target: str | Path, force: bool = False) -> list[Path]:
    """Copy lab ``number``'s starter files into ``target`` (created if missing).

    Args:
        number: The lab.
        target: The student's folder.
        force: Overwrite the starter's files in a folder that is not empty (other files stay).

    Returns:
        The files written.

    Raises:
        FileExistsError: ``target`` holds files and ``force`` is not set.
        NotADirectoryError: ``target`` is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file, not a folder for lab {number}'s starter code.")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise FileExistsError(
            f"{target} is not empty; choose an empty folder, or add --force to overwrite lab {number}'s "
            f"starter files there (your own edits to them are lost)."
        )
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in sorted(starter_dir(number).iterdir(), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith("."):
            with resources.as_file(entry) as source:
                shutil.copyfile(source, target / entry.name)
            written.append(target / entry.name)
    return written
