"""`vacnn synth`, `vacnn corpus-stats` and `vacnn features` end to end on a tiny synthetic corpus."""

import json
from pathlib import Path

import pytest

from vacnn_tf.cli import main


@pytest.fixture(scope="module")
def data_root(module_tmp) -> Path:
    root = module_tmp / "data"
    assert main(["synth", "--out", str(root), "--per-class", "2", "--seed", "3",
                 "--corpora", "emodb", "savee"]) == 0
    return root


def test_synth_prints_what_it_wrote(data_root, capsys):
    assert main(["synth", "--out", str(data_root), "--per-class", "2", "--seed", "3",
                 "--corpora", "emodb", "savee"]) == 0  # already there: skipped
    out = capsys.readouterr().out
    assert "emodb" in out and "14 files" in out and "savee" in out


def test_corpus_stats_json_from_a_data_root(data_root, capsys):
    assert main(["corpus-stats", "--corpus", "emodb", "--root", str(data_root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert list(stats) == ["corpus", "files", "classes", "speakers", "sample_rates",
                           "total_seconds", "unmatched"]
    assert stats["files"] == 14 and set(stats["classes"].values()) == {2}
    assert stats["sample_rates"] == {"16000": 14} and stats["unmatched"] == []


def test_corpus_stats_text_from_the_corpus_folder(data_root, capsys):
    stray = data_root / "savee" / "AudioData" / "DC" / "x99.wav"
    stray.write_bytes(next((data_root / "savee" / "AudioData" / "DC").glob("*.wav")).read_bytes())
    try:
        assert main(["corpus-stats", "--corpus", "savee", "--root", str(data_root / "savee")]) == 0
    finally:
        stray.unlink()
    out = capsys.readouterr().out
    assert "files: 14" in out and "speakers: 4" in out and "44100 Hz (14)" in out
    assert "unmatched: 1" in out and "x99.wav: name is not SAVEE" in out
    assert "surprise" in out


def test_corpus_stats_errors(tmp_path, capsys):
    assert main(["corpus-stats", "--corpus", "tess", "--root", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["corpus-stats", "--corpus", "tess", "--root", str(tmp_path)]) == 1
    assert "no TESS files" in capsys.readouterr().err


def test_features_fills_cache_and_reports_failures(data_root, tmp_path, capsys):
    broken = data_root / "emodb" / "wav" / "03a01Wz.wav"
    broken.write_bytes(b"")
    cache = tmp_path / "cache"
    args = ["features", "--corpus", "emodb", "--root", str(data_root), "--cache", str(cache),
            "--workers", "1", "--set", "features.n_mels=64"]
    try:
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "15 files, 14 images (0 from cache, 14 computed), 1 failed" in out
        assert f"{broken}: empty file (0 bytes)" in out
        assert main(args) == 0
        assert "14 images (14 from cache, 0 computed)" in capsys.readouterr().out
    finally:
        broken.unlink()
    assert len(list(cache.rglob("*.npz"))) == 14
    assert main(["features", "--corpus", "emodb", "--root", str(data_root), "--set", "features.nmels=3"]) == 2
    assert "Unknown config key" in capsys.readouterr().err



def _training_reads(config, monkeypatch, descriptors: bool = False) -> None:
    """Load a corpus (and its KAZE descriptors) as training does, failing on any recomputation."""
    from vacnn_tf.datasets.loading import load_corpus
    from vacnn_tf.features import kaze, logmel
    from vacnn_tf.storage import bovw_cache_dir

    def computed(*args, **kwargs):
        raise AssertionError("training recomputed what the command had cached")

    monkeypatch.setattr(logmel, "_compute", computed)
    monkeypatch.setattr(kaze, "extract_descriptors", computed)
    data = load_corpus(config, "savee")
    assert len(data.images) == 14
    if descriptors:
        kaze.descriptors_for(data.images, config.bovw, cache_dir=bovw_cache_dir(config), progress=False, workers=1)


def _config(data_root, cache):
    from vacnn_tf.config import load_config

    return load_config(overrides=[f"data.data_root={data_root}", f"data.cache_dir={cache}", "data.workers=1",
                                  "train.verbose=0"])


def test_features_fills_the_image_cache_training_reads(data_root, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    assert main(["features", "--corpus", "savee", "--root", str(data_root), "--cache", str(cache), "--workers", "1"]) == 0
    assert "14 computed" in capsys.readouterr().out
    _training_reads(_config(data_root, cache), monkeypatch)


def test_cache_flag_and_set_follow_the_one_precedence_rule(data_root, tmp_path, capsys):
    base = ["--corpus", "savee", "--root", str(data_root), "--workers", "1"]
    for command in ("features", "bovw-silhouette"):
        assert main([command, *base, "--cache", str(tmp_path / "a"), "--set", f"data.cache_dir={tmp_path / 'b'}"]) == 2
        assert "--cache and --set data.cache_dir" in capsys.readouterr().err
    assert main(["features", *base, "--set", f"data.cache_dir={tmp_path / 'c'}"]) == 0
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 14


def test_bovw_silhouette_fills_the_caches_training_reads(data_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert main(["bovw-silhouette", "--corpus", "savee", "--root", str(data_root), "--cache", str(cache),
                 "--out", str(tmp_path / "study"), "--k", "2", "--sample", "100", "--workers", "1",
                 "--set", "bovw.max_fit_descriptors=500", "--set", "bovw.kmeans=full"]) == 0
    _training_reads(_config(data_root, cache), monkeypatch, descriptors=True)
