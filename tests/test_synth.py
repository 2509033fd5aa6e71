"""The synthetic corpus: layouts, exact counts through the real readers, determinism, reruns."""

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vacnn_tf.corpora.labels import CANONICAL_LABELS, CORPUS_CLASSES
from vacnn_tf.corpora.readers import corpus_stats, read_corpus
from vacnn_tf.corpora.synth import NATIVE_RATES, PROSODY, Prosody, _capacity, _utterance, _voice, generate, plan

PER_CLASS = 3


@pytest.fixture(scope="module")
def corpus(module_tmp) -> dict[str, Path]:
    return generate(module_tmp / "synth", per_class=PER_CLASS, seed=1)


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.wav"))}


@pytest.mark.parametrize("name", sorted(CORPUS_CLASSES))
def test_reads_back_with_exact_counts(corpus, name):
    stats = corpus_stats(name, corpus[name])
    assert stats["unmatched"] == []
    assert stats["classes"] == {label: PER_CLASS for label in CORPUS_CLASSES[name]}
    assert stats["files"] == PER_CLASS * len(CORPUS_CLASSES[name])
    assert stats["sample_rates"] == {NATIVE_RATES[name]: stats["files"]}
    assert len(stats["speakers"]) >= 2
    assert 1.0 * stats["files"] <= stats["total_seconds"] <= 2.5 * stats["files"]


def test_official_layouts(corpus):
    assert sorted(p.name for p in corpus["ravdess"].iterdir()) == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    assert (corpus["emodb"] / "wav").is_dir() and len(list((corpus["emodb"] / "wav").iterdir())) == 21
    assert {p.name for p in corpus["tess"].iterdir()} >= {"OAF_Pleasant_surprise", "YAF_pleasant_surprised"}
    assert sorted(p.name for p in (corpus["savee"] / "AudioData").iterdir()) == ["DC", "JE", "JK", "KL"]
    ravdess = read_corpus("ravdess", corpus["ravdess"]).table
    assert set(ravdess["gender"]) == {"M", "F"}
    emodb = read_corpus("emodb", corpus["emodb"]).table
    assert set(emodb["speaker"]) <= {"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"}


def test_classes_differ_in_prosody(corpus):
    """Angry is louder than sad (against the same noise floor), which is what makes it learnable."""
    table = read_corpus("savee", corpus["savee"]).table

    def loudness(label: str) -> float:
        return float(np.mean([np.sqrt(np.mean(sf.read(p)[0] ** 2))
                              for p in table.loc[table["label"] == label, "path"]]))

    assert loudness("angry") > 2 * loudness("sad")


def test_every_two_classes_differ_in_several_cues():
    """No single cue decides a pair of classes: each pair differs in at least four, by margins the
    log-mel image shows (the design rule stated above PROSODY)."""
    def cues(a: Prosody, b: Prosody) -> list[str]:
        differ = {
            "pitch": abs(math.log2(a.f0_scale / b.f0_scale)) * 12 >= 1.5,
            "range": abs(a.f0_range - b.f0_range) >= 2.0,
            "contour": a.contour != b.contour,
            "rate": abs(a.rate - b.rate) >= 0.6,
            "energy": abs(a.energy_db - b.energy_db) >= 3.0,
            "tilt": abs(a.tilt_db - b.tilt_db) >= 3.0,
            "breath": abs(a.breath - b.breath) >= 0.06,
            "jitter": abs(a.jitter - b.jitter) >= 0.015,
            "tremor": (a.tremor > 0) != (b.tremor > 0),
            "creak": (a.creak > 0) != (b.creak > 0),
        }
        return [name for name, yes in differ.items() if yes]

    assert set(PROSODY) == set(CANONICAL_LABELS)
    for x, y in itertools.combinations(PROSODY, 2):
        assert len(cues(PROSODY[x], PROSODY[y])) >= 4, (x, y, cues(PROSODY[x], PROSODY[y]))


def test_neither_duration_nor_level_gives_a_class_away(corpus):
    """Duration is drawn the same way for every class; level varies within a class; nothing clips."""
    voice = _voice(0, "savee", "DC")
    lengths = {len(_utterance(np.random.default_rng(7), voice, PROSODY[label], 1)) for label in PROSODY}
    assert len(lengths) == 1  # the same draws give the same duration whatever the class
    table = read_corpus("savee", corpus["savee"]).table
    for label, rows in table.groupby("label"):
        peaks = [20 * np.log10(np.abs(sf.read(p)[0]).max()) for p in rows["path"]]
        assert max(peaks) < -0.1, (label, peaks)  # below full scale: no clipping
    voices = [_voice(0, "savee", speaker) for speaker in ("DC", "JE", "JK", "KL")]
    for label in ("angry", "sad"):
        peaks = [20 * np.log10(np.abs(_utterance(np.random.default_rng(i), v, PROSODY[label], i)).max())
                 for i, v in enumerate(voices * 3)]
        assert max(peaks) - min(peaks) > 2.0, (label, peaks)  # speakers and utterances differ in level


def test_deterministic_per_seed(tmp_path: Path):
    a = generate(tmp_path / "a", per_class=2, seed=5, corpora=["emodb", "tess"])
    b = generate(tmp_path / "b", per_class=2, seed=5, corpora=["emodb", "tess"])
    c = generate(tmp_path / "c", per_class=2, seed=6, corpora=["emodb"])
    for name in a:
        assert digest(a[name]) == digest(b[name])
    changed = [k for k, v in digest(c["emodb"]).items() if digest(a["emodb"])[k] != v]
    assert len(changed) == 14  # every file, same names


def test_skips_done_work_and_regenerates_on_new_settings(tmp_path: Path):
    roots = generate(tmp_path, per_class=1, seed=3, corpora=["savee"])
    first = sorted(roots["savee"].rglob("*.wav"))[0]
    stamp = first.stat().st_mtime_ns
    generate(tmp_path, per_class=1, seed=3, corpora=["savee"])
    assert first.stat().st_mtime_ns == stamp  # nothing rewritten
    generate(tmp_path, per_class=5, seed=3, corpora=["savee"])
    assert len(list(roots["savee"].rglob("*.wav"))) == 35


def test_refuses_foreign_folders_and_bad_arguments(tmp_path: Path):
    (tmp_path / "emodb").mkdir()
    (tmp_path / "emodb" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not written by vacnn synth"):
        generate(tmp_path, per_class=1, corpora=["emodb"])
    assert (tmp_path / "emodb" / "mine.txt").exists()
    with pytest.raises(ValueError, match="Received: per_class=0"):
        generate(tmp_path, per_class=0, corpora=["savee"])
    with pytest.raises(ValueError, match="Received: corpus='crema'"):
        generate(tmp_path, corpora=["crema"])


def test_plan_names_are_unique_at_capacity():
    for name in CORPUS_CLASSES:
        paths = [row[3] for row in plan(name, _capacity(name))]
        assert len(paths) == len(set(paths))
