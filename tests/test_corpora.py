"""Corpus readers against small trees in the layouts seen in circulating copies."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vacnn_tf.corpora.readers import COLUMNS, corpus_root, corpus_stats, find_corpus_dir, read_corpus


def touch_wav(path: Path, sample_rate: int = 8000, seconds: float = 0.02) -> Path:
    """A tiny valid wav: label parsing only needs the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(sample_rate * seconds), 0.1, np.float32), sample_rate, subtype="PCM_16")
    return path


def make_tree(root: Path, names: list[str], **kwargs) -> Path:
    for name in names:
        touch_wav(root / name, **kwargs)
    return root


def reasons(scan) -> dict[str, str]:
    return {Path(p).name: r for p, r in scan.unmatched}


# --- RAVDESS ---------------------------------------------------------------------------------
RAVDESS_FILES = [
    "audio_speech_actors_01-24/Actor_01/03-01-01-01-01-01-01.wav",  # neutral
    "audio_speech_actors_01-24/Actor_01/03-01-06-02-02-01-01.wav",  # fearful, strong
    "audio_speech_actors_01-24/Actor_02/03-01-02-01-01-02-02.wav",  # calm
    "audio_speech_actors_01-24/Actor_02/03-01-08-01-02-02-02.wav",  # surprised
]


def test_ravdess_labels_speakers_and_fields(tmp_path: Path):
    scan = read_corpus("ravdess", make_tree(tmp_path, RAVDESS_FILES))
    table = scan.table
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == ["neutral", "fear", "calm", "surprise"]
    assert table["label_raw"].tolist() == ["01", "06", "02", "08"]
    assert table["speaker"].tolist() == ["01", "01", "02", "02"]
    assert table["gender"].tolist() == ["M", "M", "F", "F"]  # odd actors male, even female
    assert table["intensity"].tolist() == ["normal", "strong", "normal", "normal"]
    assert table["text"].tolist() == ["01", "02", "01", "02"]
    assert all(Path(p).is_absolute() for p in table["path"]) and table["path"].is_monotonic_increasing
    assert scan.unmatched == []


def test_ravdess_other_modalities_and_channels_are_reported(tmp_path: Path):
    make_tree(tmp_path, RAVDESS_FILES[:1] + [
        "Actor_03/03-02-03-01-01-01-03.wav",  # song
        "Actor_03/01-01-03-01-01-01-03.wav",  # audio-video
        "Actor_03/02-01-03-01-01-01-03.wav",  # video-only
        "Actor_03/03-01-09-01-01-01-03.wav",  # no such emotion
        "Actor_03/03-01-03-01-01-01-25.wav",  # no such actor
        "Actor_03/notes.wav",
        "Actor_03/._03-01-03-01-01-01-03.wav",  # macOS resource fork
    ])
    (tmp_path / "Actor_03" / "readme.txt").write_text("not audio, ignored")
    scan = read_corpus("ravdess", tmp_path)
    assert len(scan.table) == 1
    why = reasons(scan)
    assert "song" in why["03-02-03-01-01-01-03.wav"]
    assert "audio-video" in why["01-01-03-01-01-01-03.wav"]
    assert "video-only" in why["02-01-03-01-01-01-03.wav"]
    assert "emotion code 09" in why["03-01-09-01-01-01-03.wav"]
    assert "actor 25" in why["03-01-03-01-01-01-25.wav"]
    assert "MM-VV-EE" in why["notes.wav"]
    assert "resource-fork" in why["._03-01-03-01-01-01-03.wav"]
    assert len(scan.unmatched) == 7


# --- EmoDB -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["emodb/wav/{}", "download/wav/{}", "{}"])
def test_emodb_layouts(tmp_path: Path, layout: str):
    names = ["03a01Fa.wav", "03a01Wb.wav", "08b10Lc.wav", "16a05Tb.wav", "10b03Ea.wav",
             "14a07Ad.wav", "13b09Nc.wav"]
    make_tree(tmp_path, [layout.format(n) for n in names])
    scan = read_corpus("emodb", tmp_path)
    assert scan.unmatched == [] and len(scan) == len(names)
    table = scan.table.set_index("label_raw")
    assert table.loc["F", "label"] == "happy" and table.loc["W", "label"] == "angry"
    assert table.loc["L", "label"] == "boredom" and table.loc["T", "label"] == "sad"
    assert table.loc["E", "label"] == "disgust" and table.loc["A", "label"] == "fear"
    assert table.loc["N", "label"] == "neutral"
    assert table.loc["L", "speaker"] == "08" and table.loc["L", "gender"] == "F"
    assert table.loc["F", "text"] == "a01"


def test_emodb_case_variations_and_bad_names(tmp_path: Path):
    make_tree(tmp_path, ["wav/03a01fa.wav", "wav/03A02WA.WAV", "wav/03a01Xa.wav", "wav/3a01Fa.wav"])
    scan = read_corpus("emodb", tmp_path)
    assert sorted(scan.table["label"]) == ["angry", "happy"]
    why = reasons(scan)
    assert "emotion letter 'X'" in why["03a01Xa.wav"] and "SSTTTEV" in why["3a01Fa.wav"]


# --- TESS ------------------------------------------------------------------------------------
TESS_FILES = [
    "TESS Toronto emotional speech set data/OAF_angry/OAF_back_angry.wav",
    "TESS Toronto emotional speech set data/OAF_Fear/OAF_back_fear.wav",
    "TESS Toronto emotional speech set data/OAF_Pleasant_surprise/OAF_back_ps.wav",
    "TESS Toronto emotional speech set data/OAF_Sad/OAF_back_sad.wav",
    "TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_back_ps.wav",
    "TESS Toronto emotional speech set data/YAF_disgust/YAF_back_disgust.wav",
    "TESS Toronto emotional speech set data/YAF_happy/YAF_back_happy.wav",
    "TESS Toronto emotional speech set data/YAF_neutral/YAF_back_neutral.wav",
]


def test_tess_kaggle_layout(tmp_path: Path):
    scan = read_corpus("tess", make_tree(tmp_path, TESS_FILES))
    assert scan.unmatched == []
    table = scan.table
    assert sorted(table["label"]) == sorted(
        ["angry", "fear", "surprise", "sad", "surprise", "disgust", "happy", "neutral"])
    assert sorted(set(table["speaker"])) == ["OAF", "YAF"] and set(table["text"]) == {"back"}
    assert set(table["gender"]) == {"F"}


@pytest.mark.parametrize("name, label, raw", [
    ("OAF_bite_pleasant_surprise.wav", "surprise", "pleasant_surprise"),
    ("YAF_bite_pleasant_surprised.wav", "surprise", "pleasant_surprised"),
    ("YAF_Bite_PS.wav", "surprise", "ps"),
    ("yaf_bite_Angry.wav", "angry", "angry"),
    ("OAF bite fear.wav", "fear", "fear"),
    ("OAF-bite-Pleasant Surprise.wav", "surprise", "pleasant_surprise"),
])
def test_tess_token_spellings(tmp_path: Path, name: str, label: str, raw: str):
    scan = read_corpus("tess", make_tree(tmp_path, [f"flat/{name}"]))
    assert scan.unmatched == []
    assert (scan.table.loc[0, "label"], scan.table.loc[0, "label_raw"]) == (label, raw)


def test_tess_mismatches_are_reported_not_guessed(tmp_path: Path):
    make_tree(tmp_path, [
        "OAF_neutral/OA_bite_neutral.wav",  # truncated speaker token
        "OAF_angry/OAF_bite_bored.wav",  # unknown emotion
        "OAF_angry/OAF_bite_sad.wav",  # filed under the wrong folder
        "OAF_angry/angry.wav",
        "OAF_angry/OAF_bite_angry.wav",
        "copy/OAF_angry/OAF_bite_angry.wav",  # a second copy of the corpus
    ])
    scan = read_corpus("tess", tmp_path)
    assert len(scan.table) == 1
    why = {Path(p).relative_to(tmp_path).as_posix(): r for p, r in scan.unmatched}
    assert "'oa' is not OAF or YAF" in why["OAF_neutral/OA_bite_neutral.wav"]
    assert "'bored'" in why["OAF_angry/OAF_bite_bored.wav"]
    assert "folder 'OAF_angry' says OAF/angry" in why["OAF_angry/OAF_bite_sad.wav"]
    assert "{OAF|YAF}_{word}_{emotion}" in why["OAF_angry/angry.wav"]
    assert "duplicate of" in why["copy/OAF_angry/OAF_bite_angry.wav"]


# --- SAVEE -----------------------------------------------------------------------------------
SAVEE_ITEMS = ["DC/a01", "DC/n30", "JE/sa03", "JE/su15", "JK/d02", "JK/f07", "KL/h11", "KL/n01"]


def test_savee_two_layouts_read_the_same(tmp_path: Path):
    nested = make_tree(tmp_path / "nested", [f"AudioData/{i}.wav" for i in SAVEE_ITEMS])
    flat = make_tree(tmp_path / "flat", [f"ALL/{i.replace('/', '_')}.wav" for i in SAVEE_ITEMS])
    a, b = read_corpus("savee", nested), read_corpus("savee", flat)
    assert a.unmatched == [] and b.unmatched == []
    columns = ["speaker", "label", "label_raw", "text", "gender"]
    key = ["speaker", "text"]
    assert a.table[columns].sort_values(key).reset_index(drop=True).equals(
        b.table[columns].sort_values(key).reset_index(drop=True))
    labels = dict(zip(a.table["text"] + "@" + a.table["speaker"], a.table["label"]))
    assert labels["sa03@JE"] == "sad" and labels["su15@JE"] == "surprise" and labels["n30@DC"] == "neutral"


def test_savee_without_speaker_is_reported(tmp_path: Path):
    make_tree(tmp_path, ["AudioData/DC/a01.wav", "misc/a01.wav", "AudioData/DC/x01.wav", "dc_SA02.wav"])
    scan = read_corpus("savee", tmp_path)
    assert sorted(scan.table["text"]) == ["a01", "sa02"] and set(scan.table["speaker"]) == {"DC"}
    why = reasons(scan)
    assert "folder 'misc'" in why["a01.wav"] and "is not SAVEE" in why["x01.wav"]


# --- shared behaviour ------------------------------------------------------------------------
def test_corpus_stats_keys_counts_and_unreadable_files(tmp_path: Path):
    make_tree(tmp_path, ["wav/03a01Fa.wav", "wav/03a02Fa.wav", "wav/08a01Wa.wav"],
              sample_rate=16000, seconds=0.5)
    touch_wav(tmp_path / "wav" / "09a01Na.wav", sample_rate=22050, seconds=1.0)
    (tmp_path / "wav" / "10a01Ta.wav").write_bytes(b"this is text, not audio")
    stats = corpus_stats("emodb", tmp_path)
    assert list(stats) == ["corpus", "files", "classes", "speakers", "sample_rates",
                           "total_seconds", "unmatched"]
    assert stats["files"] == 4
    assert stats["classes"] == {"neutral": 1, "happy": 2, "sad": 0, "angry": 1, "fear": 0,
                                "disgust": 0, "boredom": 0}
    assert stats["speakers"] == {"03": 2, "08": 1, "09": 1}
    assert stats["sample_rates"] == {16000: 3, 22050: 1}
    assert stats["total_seconds"] == pytest.approx(2.5, abs=1e-3)
    assert len(stats["unmatched"]) == 1
    assert stats["unmatched"][0]["path"].endswith("10a01Ta.wav")
    assert "unreadable audio" in stats["unmatched"][0]["reason"]


def test_roots_and_names(tmp_path: Path):
    (tmp_path / "emodb").mkdir()
    assert corpus_root(tmp_path, "emodb") == tmp_path / "emodb"
    assert find_corpus_dir(tmp_path, "emodb") == tmp_path / "emodb"
    assert find_corpus_dir(tmp_path / "emodb", "emodb") == tmp_path / "emodb"
    with pytest.raises(FileNotFoundError, match="savee"):
        corpus_root(tmp_path, "savee")
    with pytest.raises(ValueError, match="Received: corpus='iemocap'"):
        read_corpus("iemocap", tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_corpus("emodb", tmp_path / "missing")
    empty = read_corpus("emodb", tmp_path / "emodb")
    assert len(empty) == 0 and list(empty.table.columns) == list(COLUMNS)


def test_a_folder_reached_twice_is_read_once_and_by_its_real_path(tmp_path: Path):
    """A link to a corpus folder named before the folder itself ("0_link" < "Actor_01") must not win."""
    from vacnn_tf.corpora.readers import audio_files

    real = touch_wav(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav")
    (tmp_path / "0_link").symlink_to(tmp_path / "Actor_01", target_is_directory=True)
    assert audio_files(tmp_path) == [real]


def test_the_synthetic_corpus_of_another_generator_version_is_another_folder(tmp_path: Path, monkeypatch):
    from vacnn_tf.config import RunConfig, replace
    from vacnn_tf.corpora import synth
    from vacnn_tf.datasets.loading import synthetic_root

    config = replace(RunConfig(), **{"data.cache_dir": str(tmp_path), "data.synth_per_class": 1})
    old = synthetic_root(config)
    monkeypatch.setattr(synth, "SYNTH_VERSION", synth.SYNTH_VERSION + 1)
    new = synthetic_root(config)
    assert new != old and (new / "DONE").is_file() and (old / "DONE").is_file()
