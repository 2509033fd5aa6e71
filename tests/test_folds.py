"""Fold construction: speaker independence, stratification, pretraining exclusions, folds as data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.config import ProtocolConfig
from vacnn_tf.corpora.labels import classes_for
from vacnn_tf.datasets.folds import (
    check_protocol,
    folds_from_json,
    folds_to_json,
    holdout_split,
    make_folds,
    pretrain_exclusions,
    pretrain_table,
    ravdess_actor_groups,
    subsample_table,
)


def corpus_table(corpus: str, speakers: list[str], per_class: int, seed: int = 0) -> pd.DataFrame:
    """A fake corpus table: every speaker says every class ``per_class`` times."""
    rows = []
    for s in speakers:
        for c in classes_for(corpus):
            for i in range(per_class):
                rows.append({"path": f"/x/{corpus}/{s}_{c}_{i}.wav", "corpus": corpus, "speaker": s, "label": c})
    return pd.DataFrame(rows).sort_values("path").reset_index(drop=True)


EMODB = corpus_table("emodb", ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"], 3)
RAVDESS = corpus_table("ravdess", [f"{i:02d}" for i in range(1, 25)], 2)
SAVEE = corpus_table("savee", ["DC", "JE", "JK", "KL"], 4)
TESS = corpus_table("tess", ["OAF", "YAF"], 5)


def _paths(table, idx):
    return set(table["path"].to_numpy()[idx])


@pytest.mark.parametrize("table,corpus,n_folds", [(EMODB, "emodb", 10), (SAVEE, "savee", 4), (RAVDESS, "ravdess", 5)])
def test_speaker_protocol_never_shares_a_speaker(table, corpus, n_folds):
    folds = make_folds(table, ProtocolConfig(name="speaker"), seed=3, val_fraction=0.1, corpus=corpus)
    assert len(folds) == n_folds
    spk = table["speaker"].to_numpy()
    tested = []
    for f in folds:
        test_spk = set(spk[f.test])
        assert test_spk.isdisjoint(spk[f.train]) and test_spk.isdisjoint(spk[f.val])
        assert set(f.test_speakers) == test_spk
        # Train, val and test partition the corpus.
        assert len(f.train) + len(f.val) + len(f.test) == len(table)
        assert len(set(f.train) | set(f.val) | set(f.test)) == len(table)
        tested.extend(f.test)
    assert sorted(tested) == list(range(len(table)))  # every utterance is tested exactly once


def test_speaker_protocol_holds_whole_speakers_for_validation_where_possible():
    emodb = make_folds(EMODB, ProtocolConfig(name="speaker"), seed=1, val_fraction=0.1)
    spk = EMODB["speaker"].to_numpy()
    for f in emodb:
        assert len(f.val_speakers) == 1 and set(spk[f.val]) == set(f.val_speakers)
        assert set(f.val_speakers).isdisjoint(spk[f.train])
    savee = make_folds(SAVEE, ProtocolConfig(name="speaker"), seed=1, val_fraction=0.1)
    assert all(f.val_speakers == () and len(f.val) > 0 for f in savee)  # too few speakers: stratified


def test_ravdess_groups_are_balanced_and_seeded():
    actors = [f"{i:02d}" for i in range(1, 25)]
    groups = ravdess_actor_groups(actors, 5, seed=0)
    assert sorted(a for g in groups for a in g) == actors
    assert sorted(len(g) for g in groups) == [4, 5, 5, 5, 5]
    for g in groups:
        odd = sum(int(a) % 2 for a in g)
        assert abs(odd - (len(g) - odd)) <= 1
    assert groups == ravdess_actor_groups(actors, 5, seed=0)
    assert groups != ravdess_actor_groups(actors, 5, seed=1)


def test_paper_protocol_is_stratified_and_seeded():
    table = EMODB
    folds = make_folds(table, ProtocolConfig(name="paper", folds=5), seed=7, val_fraction=0.1)
    assert len(folds) == 5
    overall = table["label"].value_counts(normalize=True)
    for f in folds:
        share = table["label"].iloc[f.test].value_counts(normalize=True)
        assert (share - overall).abs().max() < 0.05
        assert len(f.test) == pytest.approx(len(table) / 5, abs=1)
        assert set(f.val).isdisjoint(f.test) and set(f.train).isdisjoint(f.test)
    again = make_folds(table, ProtocolConfig(name="paper", folds=5), seed=7, val_fraction=0.1)
    assert all(np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val) for a, b in zip(folds, again))
    other = make_folds(table, ProtocolConfig(name="paper", folds=5), seed=8, val_fraction=0.1)
    assert not np.array_equal(folds[0].test, other[0].test)


def test_max_folds_and_unknown_protocol():
    assert len(make_folds(EMODB, ProtocolConfig(name="paper", max_folds=2), 0, 0.1)) == 2
    with pytest.raises(ValueError, match="Received: protocol.name='random'"):
        make_folds(EMODB, ProtocolConfig(name="random"), 0, 0.1)
    with pytest.raises(ValueError, match="Received: protocol='random'"):
        check_protocol("random")


def test_first_fold_keeps_the_later_folds_as_they_are():
    """A cross-validation split over two sessions: folds 3 and 4 alone are folds 3 and 4 of the whole."""
    whole = make_folds(EMODB, ProtocolConfig(name="paper"), 0, 0.1)
    later = make_folds(EMODB, ProtocolConfig(name="paper", first_fold=3), 0, 0.1)
    assert [f.index for f in later] == [3, 4]
    for a, b in zip(whole[3:], later):
        assert (a.train == b.train).all() and (a.val == b.val).all() and (a.test == b.test).all()
    assert [f.index for f in make_folds(EMODB, ProtocolConfig(name="paper", first_fold=1, max_folds=3), 0, 0.1)] == [1, 2]
    with pytest.raises(ValueError, match="first_fold=5 leaves no fold"):
        make_folds(EMODB, ProtocolConfig(name="paper", first_fold=5), 0, 0.1)


def test_pretraining_excludes_target_test_actors_under_speaker():
    folds = make_folds(RAVDESS, ProtocolConfig(name="speaker"), seed=0, val_fraction=0.1)
    tables = {"tess": TESS, "ravdess": RAVDESS}
    for f in folds:
        table = pretrain_table(tables, pretrain_exclusions("ravdess", "speaker", f))
        assert _paths(RAVDESS, f.test).isdisjoint(table["path"])
        assert len(table) == len(TESS) + len(RAVDESS) - len(f.test)
        assert set(table["label"]) == {"neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"}
    # EmoDB / SAVEE targets and the paper protocol share one pretraining on everything.
    assert pretrain_exclusions("emodb", "speaker", folds[0]) == {}
    assert pretrain_exclusions("ravdess", "paper", folds[0]) == {}
    assert len(pretrain_table(tables)) == len(TESS) + len(RAVDESS)


def test_folds_round_trip_as_data():
    folds = make_folds(EMODB, ProtocolConfig(name="speaker"), seed=2, val_fraction=0.1)
    doc = folds_to_json(folds, EMODB, "speaker", 2)
    assert doc["folds"][0]["test"][0].startswith("/x/emodb/")
    shuffled = EMODB.sample(frac=1.0, random_state=0).reset_index(drop=True)
    back = folds_from_json(doc, shuffled)
    for a, b in zip(folds, back):
        assert _paths(EMODB, a.test) == _paths(shuffled, b.test)
        assert _paths(EMODB, a.val) == _paths(shuffled, b.val)
    with pytest.raises(ValueError, match="absent from the corpus table"):
        folds_from_json(doc, EMODB.iloc[:10])


def test_subsample_keeps_every_class_per_corpus():
    both = pd.concat([EMODB, SAVEE], ignore_index=True)
    small = subsample_table(both, 40, seed=0)
    assert small.groupby("corpus").size().to_dict() == {"emodb": 40, "savee": 40}
    assert small.groupby("corpus")["label"].nunique().to_dict() == {"emodb": 7, "savee": 7}
    assert subsample_table(both, None, 0).equals(both)


def test_holdout_split_partitions():
    f = holdout_split(TESS, 0.2, 0.1, seed=0)
    assert len(f.test) == 14 and len(set(f.train) | set(f.val) | set(f.test)) == len(TESS)
