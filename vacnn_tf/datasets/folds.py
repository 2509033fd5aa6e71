"""Fold construction: pure, seeded functions over a corpus table (section 4.2, and the leaks docs/protocols.md names).

Two protocols:

* ``paper``: stratified random k-fold (80/20 for k = 5) as the paper did. Speakers appear in
  both training and test folds, and pretraining on all of TESS + RAVDESS has seen every
  RAVDESS test utterance: this protocol leaks, and every report made under it says so.
* ``speaker``: speaker-independent folds. Leave-one-speaker-out for EmoDB and SAVEE (and any
  other corpus), held-out actor groups for RAVDESS (``protocol.ravdess_actor_groups`` groups,
  balanced between odd (male) and even (female) actors). Pretraining for a RAVDESS target
  excludes the fold's test actors.

The validation split is always carved from the training part, never from the test fold. Folds
are data: :func:`folds_to_json` writes the file lists so that a split can be rerun exactly
(:func:`folds_from_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from vacnn_tf.config import PROTOCOLS, ProtocolConfig
from vacnn_tf.corpora.labels import PRETRAIN_CLASSES, PRETRAIN_CORPORA, pretrain_label
LEAKAGE_CAVEAT = (
    "Protocol 'paper' reproduces the paper's leaks: random stratified folds put the same speakers "
    "in training and test, and pretraining on all of TESS + RAVDESS has seen every RAVDESS test "
    "utterance. Use protocol 'speaker' for speaker-independent numbers."
)


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold as row positions (0..N-1) into the corpus table.

    Attributes:
        index: Fold number, 0-based.
        train: Positions used to fit weights (and the BOVW vocabulary).
        val: Positions used for early stopping and model selection (carved from training).
        test: Positions of the held-out test fold.
        test_speakers: Speakers of the test fold (all of them under ``speaker``; informative only
            under ``paper``).
        val_speakers: Speakers held out whole for validation, empty when validation is a
            stratified random split.
    """

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...] = ()
    val_speakers: tuple[str, ...] = field(default=())


def check_protocol(name: str) -> str:
    """Return ``name`` if it is a known protocol, else raise a ValueError listing the choices."""
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol. Expected one of {list(PROTOCOLS)}. Received: protocol={name!r}")
    return name


def subsample_table(table: pd.DataFrame, limit: Optional[int], seed: int) -> pd.DataFrame:
    """Keep at most ``limit`` rows per corpus, stratified by label, in the original row order.

    Args:
        table: Corpus table (columns at least ``corpus`` and ``label``).
        limit: Rows to keep per corpus; ``None`` keeps everything.
        seed: Drives the choice.

    Returns:
        A new table with a fresh 0..n-1 index.
    """
    if limit is None:
        return table.reset_index(drop=True)
    if limit < 1:
        raise ValueError(f"protocol.subsample must be at least 1. Received: subsample={limit}")
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for _, part in table.groupby("corpus", sort=True):
        positions = np.flatnonzero(table.index.isin(part.index))
        if len(positions) <= limit:
            keep.extend(positions.tolist())
            continue
        # Proportional allocation per label (largest remainder), so every class keeps its share.
        labels = table["label"].to_numpy()[positions]
        classes, counts = np.unique(labels, return_counts=True)
        exact = counts * limit / len(positions)
        quota = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - quota), kind="stable")[: limit - quota.sum()]:
            quota[i] += 1
        for cls, n in zip(classes, quota):
            members = positions[labels == cls]
            keep.extend(rng.choice(members, size=min(n, len(members)), replace=False).tolist())
    return table.iloc[sorted(keep)].reset_index(drop=True)


def ravdess_actor_groups(speakers: Iterable[str], groups: int, seed: int) -> list[list[str]]:
    """Split RAVDESS actors into ``groups`` held-out groups, balanced between odd and even actors.

    Odd actors are male and even actors female (RAVDESS convention). Each gender is shuffled by
    ``seed`` and dealt round-robin, the even actors from the group after the last odd one, so that
    group sizes differ by at most one (24 actors, 5 groups: 5, 5, 5, 5, 4).

    Args:
        speakers: Actor ids such as ``"01"`` .. ``"24"`` (duplicates are ignored).
        groups: Number of groups; capped at the number of actors.
        seed: Drives the shuffle.

    Returns:
        ``groups`` sorted lists of actor ids.
    """
    actors = sorted(set(speakers))
    if groups < 2:
        raise ValueError(f"protocol.ravdess_actor_groups must be at least 2. Received: {groups}")
    groups = min(groups, len(actors))
    if groups < 2:
        raise ValueError(f"Held-out actor groups need at least 2 actors. Received: {actors}")

    def is_odd(actor: str) -> bool:
        digits = "".join(ch for ch in actor if ch.isdigit())
        return bool(digits) and int(digits) % 2 == 1

    rng = np.random.default_rng(seed)
    odd = [a for a in actors if is_odd(a)]
    even = [a for a in actors if not is_odd(a)]
    rng.shuffle(odd)
    rng.shuffle(even)
    out: list[list[str]] = [[] for _ in range(groups)]
    for i, actor in enumerate(odd):
        out[i % groups].append(actor)
    start = len(odd) % groups  # continue where the odd actors stopped, so sizes stay balanced
    for i, actor in enumerate(even):
        out[(start + i) % groups].append(actor)
    return [sorted(g) for g in out]


def _stratify_or_none(labels: np.ndarray, n_test: int) -> Optional[np.ndarray]:
    """Labels to stratify on, or None where a stratified split is impossible (tiny classes)."""
    _, counts = np.unique(labels, return_counts=True)
    n_classes = len(counts)
    if counts.min() < 2 or n_test < n_classes or len(labels) - n_test < n_classes:
        return None
    return labels


def _split_validation(
    table: pd.DataFrame, train: np.ndarray, val_fraction: float, seed: int, by_speaker: bool
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Carve a validation set out of ``train`` (positions). Returns (train, val, val_speakers).

    Under the speaker protocol whole speakers are held out where enough remain to train on
    (at least two speakers left and the rounded share is at least one speaker); otherwise a
    stratified random split is used, which mixes speakers between train and validation only.
    """
    from sklearn.model_selection import train_test_split

    if val_fraction <= 0 or len(train) < 2:
        return np.sort(train), np.array([], dtype=int), ()
    if not 0 < val_fraction < 1:
        raise ValueError(f"train.val_fraction must be in [0, 1). Received: val_fraction={val_fraction}")
    rng = np.random.default_rng(seed)
    if by_speaker:
        speakers = np.array(sorted(set(table["speaker"].to_numpy()[train])))
        n_val = int(round(len(speakers) * val_fraction))
        if n_val >= 1 and len(speakers) - n_val >= 2:
            chosen = tuple(sorted(rng.choice(speakers, size=n_val, replace=False).tolist()))
            in_val = np.isin(table["speaker"].to_numpy()[train], chosen)
            return np.sort(train[~in_val]), np.sort(train[in_val]), chosen
    labels = table["label"].to_numpy()[train]
    n_val = max(1, int(round(len(train) * val_fraction)))
    tr, va = train_test_split(
        train, test_size=n_val, random_state=seed, shuffle=True, stratify=_stratify_or_none(labels, n_val)
    )
    return np.sort(tr), np.sort(va), ()


def make_folds(
    table: pd.DataFrame,
    protocol: ProtocolConfig,
    seed: int,
    val_fraction: float,
    corpus: Optional[str] = None,
) -> list[Fold]:
    """Make the folds of one corpus table under ``protocol``.

    Args:
        table: Corpus table (columns ``label`` and ``speaker``), positions 0..N-1 are used.
        protocol: ``protocol.name`` (paper|speaker), ``folds`` (paper), ``ravdess_actor_groups``
            (speaker, RAVDESS), ``first_fold`` and ``max_folds`` (truncation) are read.
        seed: Drives fold assignment and validation splits.
        val_fraction: Share of each training part held out for validation (0 disables it).
        corpus: Corpus name; defaults to the table's only ``corpus`` value.

    Returns:
        The folds ``first_fold`` up to ``max_folds`` (each keeps its index).
    """
    check_protocol(protocol.name)
    if corpus is None:
        names = sorted(set(table["corpus"])) if "corpus" in table else []
        corpus = names[0] if len(names) == 1 else ""
    speakers = table["speaker"].astype(str).to_numpy()
    folds: list[Fold] = []
    for k, (train, test) in enumerate(_test_splits(table["label"].to_numpy(), speakers, protocol, seed, corpus)):
        tr, va, val_speakers = _split_validation(
            table, np.asarray(train), val_fraction, seed + 1000 + k, by_speaker=protocol.name == "speaker"
        )
        folds.append(
            Fold(
                index=k,
                train=tr,
                val=va,
                test=np.sort(np.asarray(test)),
                test_speakers=tuple(sorted(set(speakers[test]))),
                val_speakers=val_speakers,
            )
        )
    kept = folds[protocol.first_fold : protocol.max_folds]
    if not kept:
        raise ValueError(f"protocol.first_fold={protocol.first_fold} leaves no fold of the {len(folds)} "
                         f"(max_folds={protocol.max_folds}).")
    return kept


def _test_splits(labels: np.ndarray, speakers: np.ndarray, protocol: ProtocolConfig, seed: int,
                 corpus: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training part, test fold) positions of every fold, before validation is carved out.

    ``paper``: stratified k-fold; ``speaker``: held-out actor groups for RAVDESS, else
    leave-one-speaker-out.
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    positions = np.arange(len(labels))
    if protocol.name == "paper":
        if protocol.folds < 2:
            raise ValueError(f"protocol.folds must be at least 2. Received: folds={protocol.folds}")
        kfold = StratifiedKFold(n_splits=protocol.folds, shuffle=True, random_state=seed)
        return list(kfold.split(positions, labels))
    if corpus == "ravdess":
        groups_of = ravdess_actor_groups(speakers, protocol.ravdess_actor_groups, seed)
        group_id = {actor: g for g, members in enumerate(groups_of) for actor in members}
        splits = []
        for g in range(len(groups_of)):
            in_test = np.array([group_id[s] == g for s in speakers])
            splits.append((positions[~in_test], positions[in_test]))
        return splits
    if len(set(speakers)) < 2:
        raise ValueError(f"Leave-one-speaker-out needs at least 2 speakers; {corpus!r} has {sorted(set(speakers))}.")
    return list(LeaveOneGroupOut().split(positions, labels, groups=speakers))


def holdout_split(table: pd.DataFrame, test_fraction: float, val_fraction: float, seed: int) -> Fold:
    """One stratified train/val/test split (used to evaluate a pretraining run, Table 2)."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(table))
    labels = table["label"].to_numpy()
    n_test = max(1, int(round(len(table) * test_fraction)))
    train, test = train_test_split(
        positions, test_size=n_test, random_state=seed, shuffle=True, stratify=_stratify_or_none(labels, n_test)
    )
    tr, va, _ = _split_validation(table, np.asarray(train), val_fraction, seed + 1, by_speaker=False)
    return Fold(index=0, train=tr, val=va, test=np.sort(test))


def pretrain_table(
    tables: Mapping[str, pd.DataFrame], exclude_speakers: Optional[Mapping[str, Iterable[str]]] = None
) -> pd.DataFrame:
    """The pretraining table: TESS + RAVDESS relabelled onto the 7 pretraining classes.

    Args:
        tables: Corpus tables by name; ``tess`` and ``ravdess`` are used (others ignored).
        exclude_speakers: Per corpus, speakers to leave out (the speaker protocol passes the RAVDESS
            target fold's test actors, so pretraining never sees a target test utterance).

    Returns:
        Concatenated table sorted by path with ``label`` replaced by the pretraining label and the
        original kept in ``label_target``.
    """
    missing = [name for name in PRETRAIN_CORPORA if name not in tables]
    if missing:
        raise ValueError(f"Pretraining needs the corpora {list(PRETRAIN_CORPORA)}; missing {missing}.")
    exclude = {k: set(map(str, v)) for k, v in (exclude_speakers or {}).items()}
    parts = []
    for name in PRETRAIN_CORPORA:
        part = tables[name]
        drop = part["speaker"].astype(str).isin(exclude.get(name, set()))
        parts.append(part[~drop])
    out = pd.concat(parts, ignore_index=True).sort_values("path", kind="stable").reset_index(drop=True)
    out["label_target"] = out["label"]
    out["label"] = [pretrain_label(lbl) for lbl in out["label"]]
    assert set(out["label"]) <= set(PRETRAIN_CLASSES)
    return out


def shares_one_pretraining(target: str, protocol_name: str) -> bool:
    """True when every fold of ``target`` under ``protocol_name`` starts from one pretraining, the
    one that excludes nothing (see :func:`pretrain_exclusions`)."""
    return not (protocol_name == "speaker" and target in PRETRAIN_CORPORA)


def pretrain_exclusions(target: str, protocol_name: str, fold: Fold) -> dict[str, list[str]]:
    """Speakers a fold's pretraining must not see: the RAVDESS test actors under ``speaker``.

    Under ``paper`` nothing is excluded (the paper's sample leak, reported), and EmoDB / SAVEE are
    not part of the pretraining set, so one shared pretraining serves all of their folds.
    """
    if shares_one_pretraining(target, protocol_name):
        return {}
    return {target: sorted(fold.test_speakers)}


def folds_to_json(folds: list[Fold], table: pd.DataFrame, protocol: str, seed: int) -> dict[str, Any]:
    """Folds as data: file paths per part, so that anyone can rerun the same split."""
    paths = table["path"].astype(str).to_numpy()
    return {
        "protocol": protocol,
        "seed": seed,
        "files": len(table),
        "folds": [
            {
                "index": f.index,
                "test_speakers": list(f.test_speakers),
                "val_speakers": list(f.val_speakers),
                "train": paths[f.train].tolist(),
                "val": paths[f.val].tolist(),
                "test": paths[f.test].tolist(),
            }
            for f in folds
        ],
    }


def folds_from_json(doc: Mapping[str, Any], table: pd.DataFrame) -> list[Fold]:
    """Rebuild folds written by :func:`folds_to_json` against ``table`` (matched by path)."""
    where = {p: i for i, p in enumerate(table["path"].astype(str))}
    folds = []
    for entry in doc["folds"]:
        parts = {}
        for part in ("train", "val", "test"):
            missing = [p for p in entry[part] if p not in where]
            if missing:
                raise ValueError(
                    f"Fold {entry['index']} lists {len(missing)} file(s) absent from the corpus table, "
                    f"e.g. {missing[0]!r}; the split was made from other data."
                )
            parts[part] = np.array(sorted(where[p] for p in entry[part]), dtype=int)
        folds.append(
            Fold(
                index=int(entry["index"]),
                train=parts["train"],
                val=parts["val"],
                test=parts["test"],
                test_speakers=tuple(entry.get("test_speakers", ())),
                val_speakers=tuple(entry.get("val_speakers", ())),
            )
        )
    return folds
