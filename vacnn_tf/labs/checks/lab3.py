"""Lab 3 checks: the student's speaker folds and pretraining exclusion against :mod:`vacnn_tf.datasets.folds`,
and the two leaks they close (a test speaker heard in training; a RAVDESS test utterance
heard in pretraining).

The corpus tables are made up (no audio): EmoDB-like with 5 speakers, RAVDESS-like with 6
actors, TESS-like with 2 speakers; their rows are shuffled and their index is not 0..N-1, so
that positions and index labels differ.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vacnn_tf.labs.grading import Check, Fixtures, StudentCode, fail

REFERENCES = ("vacnn_tf.datasets.folds.make_folds", "vacnn_tf.datasets.folds.pretrain_exclusions", "vacnn_tf.datasets.folds.pretrain_table")
SPEAKERS = {"emodb": ["03", "08", "09", "10", "11"], "ravdess": [f"{a:02d}" for a in range(1, 7)], "tess": ["OAF", "YAF"]}
LABELS = {"emodb": ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"],
          "ravdess": ["neutral", "happy", "sad", "angry"], "tess": ["neutral", "happy", "sad", "angry"]}


def corpus_table(corpus: str, per_label: int = 2, seed: int = 0) -> pd.DataFrame:
    """A made-up corpus table: every speaker says ``per_label`` utterances of every label."""
    rows = [{"path": f"/data/{corpus}/{speaker}/{label}_{i}.wav", "corpus": corpus, "speaker": speaker, "label": label}
            for speaker in SPEAKERS[corpus] for label in LABELS[corpus] for i in range(per_label)]
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    table.index = 1000 - np.arange(len(table)) * 3  # labels that are not positions
    return table


class Lab3Fixtures(Fixtures):
    @cached_property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: corpus_table(name) for name in SPEAKERS}


def fixtures(tmp: Path) -> Lab3Fixtures:
    return Lab3Fixtures(tmp)


def _folds(code: StudentCode, table: pd.DataFrame, n_val_speakers: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    folds = code.call("speaker_folds", table, n_val_speakers=n_val_speakers, seed=seed)
    if not isinstance(folds, list) or not all(isinstance(f, dict) for f in folds):
        fail(f"speaker_folds returned {type(folds).__name__}; expected a list of dicts, one per speaker")
    for k, fold in enumerate(folds):
        missing = [key for key in ("test_speaker", "train", "val", "test") if key not in fold]
        if missing:
            fail(f"fold {k} lacks the keys {missing}")
        for part in ("train", "val", "test"):
            positions = np.asarray(fold[part])
            if positions.ndim != 1 or (positions.size and not np.issubdtype(positions.dtype, np.integer)):
                fail(f"fold {k}'s {part} is {positions.dtype} of shape {positions.shape}; expected a 1-D array of int positions")
            if positions.size and (positions.min() < 0 or positions.max() >= len(table)):
                fail(f"fold {k}'s {part} holds {positions.max()}, outside the positions 0..{len(table) - 1}: "
                     "index labels instead of row positions?")
    return folds


def _speakers(table: pd.DataFrame, positions: Any) -> set[str]:
    return set(table["speaker"].astype(str).to_numpy()[np.asarray(positions, dtype=int)])


def check_one_fold_per_speaker(code: StudentCode, fx: Lab3Fixtures) -> None:
    table = fx.tables["emodb"]
    folds = _folds(code, table)
    got = [str(f["test_speaker"]) for f in folds]
    if got != SPEAKERS["emodb"]:
        fail(f"the folds test the speakers {got}; expected one fold per speaker in sorted order, {SPEAKERS['emodb']}")


def check_matches_reference(code: StudentCode, fx: Lab3Fixtures) -> None:
    from vacnn_tf.config import ProtocolConfig
    from vacnn_tf.datasets.folds import make_folds

    table = fx.tables["emodb"]
    reference = make_folds(table, ProtocolConfig(name="speaker"), seed=0, val_fraction=0.0, corpus="emodb")
    for fold, ref in zip(_folds(code, table), reference):
        if set(np.asarray(fold["test"]).tolist()) != set(ref.test.tolist()):
            fail(f"the test part of the fold of speaker {fold['test_speaker']} differs from vacnn_tf.datasets.folds.make_folds: "
                 f"{len(fold['test'])} positions against {len(ref.test)}, all of speaker {ref.test_speakers[0]}")


def check_partition(code: StudentCode, fx: Lab3Fixtures) -> None:
    table = fx.tables["emodb"]
    for k, fold in enumerate(_folds(code, table)):
        parts = {part: np.asarray(fold[part], dtype=int).tolist() for part in ("train", "val", "test")}
        for part, positions in parts.items():
            if len(set(positions)) != len(positions):
                fail(f"fold {k}'s {part} lists a position twice")
        everything = sum(parts.values(), [])
        if len(everything) != len(set(everything)):
            fail(f"fold {k}: a position is in two of train, val and test")
        if set(everything) != set(range(len(table))):
            fail(f"fold {k}: train, val and test hold {len(set(everything))} of the {len(table)} rows; every row "
                 "belongs to exactly one part")


def check_no_speaker_leak(code: StudentCode, fx: Lab3Fixtures) -> None:
    table = fx.tables["emodb"]
    for k, fold in enumerate(_folds(code, table)):
        speakers = {part: _speakers(table, fold[part]) for part in ("train", "val", "test")}
        if speakers["test"] != {str(fold["test_speaker"])}:
            fail(f"fold {k}'s test part holds the speakers {sorted(speakers['test'])}, not only {fold['test_speaker']}")
        for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
            shared = speakers[a] & speakers[b]
            if shared:
                fail(f"fold {k} (test speaker {fold['test_speaker']}): speaker(s) {sorted(shared)} in both {a} and {b}, "
                     "so the model is tested (or selected) on a voice it trained on")


def check_validation_speakers(code: StudentCode, fx: Lab3Fixtures) -> None:
    table = fx.tables["emodb"]
    for n in (0, 1, 2):
        for k, fold in enumerate(_folds(code, table, n_val_speakers=n)):
            found = _speakers(table, fold["val"]) if len(fold["val"]) else set()
            if len(found) != n:
                fail(f"with n_val_speakers={n}, fold {k}'s validation part holds {len(found)} speakers {sorted(found)}")


def check_seed_and_errors(code: StudentCode, fx: Lab3Fixtures) -> None:
    table = fx.tables["emodb"]
    first, again = _folds(code, table, seed=5), _folds(code, table, seed=5)
    if any(not np.array_equal(a["val"], b["val"]) for a, b in zip(first, again)):
        fail("the same seed gave different validation speakers; use np.random.default_rng(seed)")
    two = table[table["speaker"].isin(["03", "08"])]
    if not code.raises(ValueError, code.get("speaker_folds"), two, n_val_speakers=1, seed=0):
        fail("two speakers with n_val_speakers=1 leave nobody to train on; expected a ValueError")


def check_exclusions(code: StudentCode, fx: Lab3Fixtures) -> None:
    from vacnn_tf.datasets.folds import Fold, pretrain_exclusions

    empty = np.array([], dtype=int)
    for target in ("ravdess", "tess", "emodb", "savee"):
        for protocol in ("paper", "speaker"):
            got = code.call("pretrain_exclusions", target, protocol, ["05", "02"])
            want = pretrain_exclusions(target, protocol, Fold(0, empty, empty, empty, test_speakers=("05", "02")))
            if not isinstance(got, dict) or {k: sorted(map(str, v)) for k, v in got.items()} != want:
                fail(f"pretrain_exclusions({target!r}, {protocol!r}, ['05', '02']) returned {got!r}; expected {want!r}")


def check_pretraining_table(code: StudentCode, fx: Lab3Fixtures) -> None:
    from vacnn_tf.datasets.folds import pretrain_table

    for exclude in ({}, {"ravdess": ["02", "05"]}, {"tess": ["OAF"]}):
        got = code.call("pretraining_table", fx.tables, exclude)
        if not isinstance(got, pd.DataFrame) or "path" not in got:
            fail(f"pretraining_table returned {type(got).__name__}; expected a DataFrame with a path column")
        want = pretrain_table(fx.tables, exclude)["path"].tolist()
        if sorted(got["path"]) != sorted(want):
            extra, lost = set(got["path"]) - set(want), set(want) - set(got["path"])
            fail(f"with exclude={exclude}: {len(extra)} utterances too many and {len(lost)} missing against "
                 "vacnn_tf.datasets.folds.pretrain_table")
        if got["path"].tolist() != want or list(got.index) != list(range(len(got))):
            fail("pretraining_table should be sorted by path with a fresh 0..n-1 index")
    no_tess = {name: t for name, t in fx.tables.items() if name != "tess"}
    if not code.raises(ValueError, code.get("pretraining_table"), no_tess, {}):
        fail("tables without tess were accepted; expected a ValueError naming the missing corpus")


def check_no_pretraining_leak(code: StudentCode, fx: Lab3Fixtures) -> None:
    ravdess = fx.tables["ravdess"]
    paths = ravdess["path"].to_numpy()
    for fold in _folds(code, ravdess):
        exclude = code.call("pretrain_exclusions", "ravdess", "speaker", [str(fold["test_speaker"])])
        pretraining = code.call("pretraining_table", fx.tables, exclude)
        heard = set(paths[np.asarray(fold["test"], dtype=int)]) & set(pretraining["path"])
        if heard:
            fail(f"RAVDESS fold of actor {fold['test_speaker']} under --protocol speaker: {len(heard)} of its "
                 f"{len(fold['test'])} test utterances are in the pretraining table, so the pretrained model "
                 "has already heard them with their labels")


CHECKS = [
    Check("speaker_folds makes one fold per speaker, in sorted order", check_one_fold_per_speaker),
    Check("speaker_folds tests the same utterances as vacnn_tf.datasets.folds.make_folds (speaker protocol)", check_matches_reference),
    Check("speaker_folds: train, val and test cover every row exactly once", check_partition),
    Check("no speaker is in two parts of a fold (speaker leakage)", check_no_speaker_leak),
    Check("the validation part holds n_val_speakers whole speakers", check_validation_speakers),
    Check("speaker_folds is seeded and refuses too few speakers", check_seed_and_errors),
    Check("pretrain_exclusions matches vacnn_tf.datasets.folds.pretrain_exclusions (4 targets x 2 protocols)", check_exclusions),
    Check("pretraining_table drops exactly the excluded speakers", check_pretraining_table),
    Check("no RAVDESS test utterance reaches pretraining under the speaker protocol (sample leakage)",
          check_no_pretraining_leak),
]
