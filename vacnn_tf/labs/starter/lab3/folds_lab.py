"""Lab 3 assignment: speaker-independent folds and the pretraining exclusion
(docs/labs/lab3-transfer.md).

The paper's protocol (random folds) lets every test speaker speak in training as well, and
its pretraining on all of TESS + RAVDESS has already seen every RAVDESS test utterance.
Write the three functions below that close both leaks. The grader runs them on small corpus
tables and checks the leakage properties and the package's own folds
(``vacnn_tf.datasets.folds.make_folds`` with ``protocol.name=speaker``,
``vacnn_tf.datasets.folds.pretrain_exclusions``, ``vacnn_tf.datasets.folds.pretrain_table``), so calling those
does not count.

A corpus table is a pandas DataFrame with one row per utterance and at least the columns
``path``, ``corpus``, ``speaker`` (a string such as "03") and ``label``. A *position* is a row
number 0..N-1 of the table (``table.iloc[position]``), whatever the table's index holds.

Grade your work from any folder with

    vacnn lab grade 3 DIR

where DIR is the folder holding this file. Each check prints PASS or FAIL and the reason.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

# The corpora the paper pretrains on.
PRETRAIN_CORPORA = ("tess", "ravdess")


def speaker_folds(table: pd.DataFrame, n_val_speakers: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """Leave-one-speaker-out folds with a validation part of whole speakers.

    Fold i tests the i-th speaker in sorted order; of the remaining speakers, ``n_val_speakers``
    chosen at random (seeded) are held out whole for validation (early stopping and model
    selection) and the rest train.

    Args:
        table: A corpus table with a ``speaker`` column.
        n_val_speakers: Whole speakers per validation part (0: no validation part).
        seed: Drives the choice of validation speakers; the same seed gives the same folds.

    Returns:
        One dict per speaker, in sorted speaker order, with the keys ``test_speaker`` (str),
        ``train``, ``val`` and ``test``: sorted int numpy arrays of positions that together
        cover every row of the table exactly once.

    Raises:
        ValueError: fewer than ``n_val_speakers + 2`` speakers (one to test, at least one to train).
    """
    # TODO 1: the sorted distinct speakers; raise ValueError when there are too few.
    # TODO 2: per test speaker: test = its positions; choose the validation speakers among the
    #         others with np.random.default_rng(seed); train = the positions of everyone else.
    # TODO 3: positions, not index labels: np.flatnonzero(mask) over table["speaker"].to_numpy().
    raise NotImplementedError


def pretrain_exclusions(target: str, protocol: str, test_speakers: Sequence[str]) -> dict[str, list[str]]:
    """The speakers a fold's pretraining must not hear.

    Under ``protocol="speaker"``, a target corpus that is part of the pretraining set (TESS or
    RAVDESS) must not have its fold's test speakers in pretraining: otherwise the pretrained
    model has already seen those test utterances, with their labels. Under ``"paper"`` nothing
    is excluded (the paper's sample leak, reproduced on purpose). EmoDB and SAVEE are not
    pretrained on, so they need no exclusion.

    Args:
        target: The corpus fine-tuned and tested on ("ravdess", "emodb", "tess", "savee").
        protocol: "paper" or "speaker".
        test_speakers: The fold's test speakers.

    Returns:
        ``{corpus: sorted speakers to exclude}``; empty when nothing is excluded.
    """
    # TODO 1: when is anything excluded? Only under the speaker protocol, for a pretraining corpus.
    # TODO 2: return {target: the sorted test speakers} then, {} otherwise.
    raise NotImplementedError


def pretraining_table(tables: Mapping[str, pd.DataFrame], exclude: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """The utterances pretraining may use: TESS and RAVDESS without the excluded speakers.

    Args:
        tables: Corpus tables by corpus name; "tess" and "ravdess" are used, others ignored.
        exclude: ``{corpus: speakers}`` as :func:`pretrain_exclusions` returns it.

    Returns:
        The rows of the TESS and RAVDESS tables whose speaker is not excluded for that
        corpus, with their columns, sorted by ``path``, with a fresh 0..n-1 index.

    Raises:
        ValueError: ``tables`` lacks "tess" or "ravdess".
    """
    # TODO 1: refuse tables without both pretraining corpora.
    # TODO 2: per corpus, drop the excluded speakers (compare as strings); concatenate; sort by path.
    raise NotImplementedError
