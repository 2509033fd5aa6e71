"""SavedModel export, `vacnn predict`, and the TF Serving REST client, on a briefly trained model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from vacnn_tf.config import load_config, replace

ENV_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def run_dir(module_tmp) -> Path:
    """A fine-tuning run (fine-tuned architecture from scratch, BOVW) trained for 2 epochs."""
    from vacnn_tf.training.finetuning import finetune

    root = module_tmp / "export"
    config = load_config(overrides=[
        f"out={root / 'runs'}", f"data.cache_dir={root / 'cache'}", "data.synth_per_class=4",
        "protocol.folds=2", "protocol.max_folds=1", "train.epochs=2", "train.verbose=0", "train.xla_fusion=false",
    ])
    summary = finetune(config, "emodb", out_dir=root / "run", variant="pure")
    return Path(summary.run_dir)


@pytest.fixture(scope="module")
def exported(run_dir: Path, module_tmp) -> Path:
    from vacnn_tf.serving.export import export_savedmodel

    return export_savedmodel(run_dir, module_tmp / "models", model_name="vacnn")


def _wavs(run_dir: Path, n: int) -> list[str]:
    from vacnn_tf.storage import read_json

    return read_json(run_dir / "folds.json")["folds"][0]["test"][:n]


def test_layout_assets_and_signature(exported: Path, run_dir: Path):
    assert exported.name == "1" and exported.parent.name == "vacnn"
    assets = exported / "assets"
    assert json.loads((assets / "labels.json").read_text())["classes"] == json.loads(
        (run_dir / "labels.json").read_text())["classes"]
    spec = json.loads((assets / "feature_config.json").read_text())
    assert spec["features"]["n_fft"] == 2048 and spec["features"]["hop_length"] == 512
    assert "kaze_threshold" in spec["bovw"] and spec["bovw"]["k"] == 128
    assert (assets / "vocabulary.npz").is_file()
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--dir", str(exported), "--tag_set", "serve",
                          "--signature_def", "serving_default"], capture_output=True, text=True,
                         env={**os.environ, **ENV_QUIET}, check=True).stdout
    assert "inputs['logmel']" in out and "(-1, 224, 224, 1)" in out
    assert "inputs['bovw']" in out and "(-1, 128)" in out
    assert "outputs['probabilities']" in out and "outputs['label']" in out and "DT_STRING" in out


def test_savedmodel_matches_keras_checkpoint_in_a_fresh_process(exported: Path, run_dir: Path, tmp_path: Path):
    import keras

    rng = np.random.default_rng(0)
    logmel = rng.uniform(0, 255, size=(3, 224, 224, 1)).astype(np.float32)
    bovw = rng.dirichlet(np.ones(128), size=3).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", logmel=logmel, bovw=bovw)
    fold = max(run_dir.glob("fold_*"))
    expected = keras.models.load_model(fold / "model.keras", safe_mode=True)(
        {"logmel": logmel, "bovw": bovw}, training=False)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = np.load(sys.argv[2], allow_pickle=False)\n"
        "sig = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = sig(logmel=tf.constant(d['logmel']), bovw=tf.constant(d['bovw']))\n"
        "np.save(sys.argv[3], out['probabilities'].numpy())\n"
        "print(','.join(x.decode() for x in out['label'].numpy()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(exported), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "probs.npy")], capture_output=True, text=True,
                            env={**os.environ, **ENV_QUIET}, check=True)
    probs = np.load(tmp_path / "probs.npy")
    assert np.max(np.abs(probs - np.asarray(expected))) <= 1e-5
    classes = json.loads((run_dir / "labels.json").read_text())["classes"]
    assert result.stdout.strip().split(",") == [classes[i] for i in probs.argmax(1)]


def test_predict_cli_labels_files_and_reports_bad_ones(exported: Path, run_dir: Path, tmp_path: Path):
    good = _wavs(run_dir, 2)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF but not really a wav")
    cmd = [sys.executable, "-m", "vacnn_tf", "predict", "--json", "--model", str(exported), good[0], str(bad), good[1]]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV_QUIET})
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [good[0], str(bad), good[1]]
    classes = json.loads((run_dir / "labels.json").read_text())["classes"]
    for line in (lines[0], lines[2]):
        assert line["label"] in classes
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-4
    assert "broken.wav" in lines[1]["error"]


def test_export_refuses_a_folder_that_is_not_a_run(tmp_path: Path):
    from vacnn_tf.serving.export import ExportError, export_savedmodel

    with pytest.raises(ExportError, match="config.yaml missing"):
        export_savedmodel(tmp_path, tmp_path / "models")


def test_only_fold_k_folders_are_folds(tmp_path: Path):
    """A copy kept beside the folds (fold_0_old) is not a fold, and fold_1_2 is not fold 12."""
    from vacnn_tf.serving.export import choose_fold, fold_dirs

    for name in ("fold_0", "fold_2", "fold_10", "fold_0_old", "fold_1_2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.keras").write_bytes(b"k")
    assert [p.name for p in fold_dirs(tmp_path)] == ["fold_0", "fold_2", "fold_10"]
    assert choose_fold(tmp_path, 10).name == "fold_10"


class _FakeServing(BaseHTTPRequestHandler):
    """Answers like TF Serving's REST API, from a fixed rule, for the client test."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/v1/models/vacnn:predict"):
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "Servable not found"}')
            return
        rows = body["instances"]
        preds = [{"probabilities": [0.25, 0.75], "label": "b"} for _ in rows]
        payload = json.dumps({"predictions": preds}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_rest_client_against_a_local_server():
    from vacnn_tf.serving.classifier import ServingClient, ServingError

    server = HTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        inputs = {"logmel": np.zeros((2, 224, 224, 1), np.float32), "bovw": np.zeros((2, 128), np.float32)}
        out = ServingClient(url, "vacnn", timeout=5).predict(inputs)
        assert [o["label"] for o in out] == ["b", "b"]
        with pytest.raises(ServingError, match="HTTP 404"):
            ServingClient(url, "other", timeout=5).predict(inputs)
    finally:
        server.shutdown()
    with pytest.raises(ServingError, match="refused|no answer"):
        ServingClient(url, "vacnn", timeout=2).predict(inputs)


def test_serving_model_swaps_group_norm_and_keeps_outputs():
    import keras

    from vacnn_tf.config import ModelConfig
    from vacnn_tf.models.layers import ChannelStatsGroupNormalization
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.serving.export import serving_model

    base = build_vacnn(7)
    model = build_finetuned(base, 5, ModelConfig())
    copy = serving_model(model)
    kinds = [type(layer) for layer in copy.layers]
    assert keras.layers.GroupNormalization not in kinds
    assert kinds.count(ChannelStatsGroupNormalization) == sum(
        type(layer) is keras.layers.GroupNormalization for layer in model.layers) > 0
    assert [(l.name, l.trainable) for l in copy.layers if l.weights] == [
        (l.name, l.trainable) for l in model.layers if l.weights]
    rng = np.random.default_rng(0)
    inputs = {"logmel": rng.uniform(0, 255, (2, 224, 224, 1)).astype(np.float32),
              "bovw": rng.dirichlet(np.ones(128), size=2).astype(np.float32)}
    np.testing.assert_allclose(np.asarray(copy(inputs, training=False)), np.asarray(model(inputs, training=False)),
                               atol=1e-5, rtol=0)


def test_model_card_travels_in_the_assets(exported: Path, run_dir: Path):
    import pandas as pd
    import tensorflow as tf

    from vacnn_tf.evaluation.model_card import PAPER_DOI

    card = (exported / "assets" / "MODEL_CARD.md").read_text()
    for heading in ("## Model", "## Training data and protocol", "## Metrics", "## Intended use", "## Limits", "## Citation"):
        assert heading in card
    summary = json.loads((run_dir / "summary.json").read_text())
    spread = f"{100 * summary['accuracy_mean']:.1f}% +- {100 * summary['accuracy_std']:.1f}"
    assert f"accuracy: {spread}" in card
    f1 = pd.read_csv(run_dir / "metrics" / "summary.csv", index_col=0)["macro_f1"]
    assert f"macro-F1: {100 * f1['mean']:.1f}% +- {100 * f1['std']:.1f}" in card
    assert "synthetic corpus in EmoDB's layout" in card and "Synthetic corpus" in card
    assert "Acted speech only: EmoDB hold" in card and "Languages seen: German." in card
    assert "protocol `paper`" in card and PAPER_DOI in card
    # in the object graph too, not only a loose file in the folder
    loaded = tf.saved_model.load(str(exported))
    assert Path(loaded.assets["MODEL_CARD.md"].asset_path.numpy().decode()).name == "MODEL_CARD.md"


def test_model_card_of_a_real_corpus_run(tmp_path: Path):
    """The card's wording for recorded corpora, from a run's files alone (no training)."""
    from vacnn_tf.evaluation.model_card import model_card

    fold = tmp_path / "fold_1"
    fold.mkdir()
    (tmp_path / "summary.json").write_text(json.dumps({
        "target": "savee", "variant": "finetuned", "protocol": "speaker", "architecture": "vacnn", "use_bovw": True,
        "folds": [{"fold": 0, "accuracy": 0.5, "uar": 0.45, "test": 120}, {"fold": 1, "accuracy": 0.6, "uar": 0.55, "test": 120}],
        "accuracy_mean": 0.55, "accuracy_std": 0.0707, "uar_mean": 0.5, "uar_std": 0.0707, "audit": None}))
    (fold / "metrics.json").write_text(json.dumps({"fold": 1, "accuracy": 0.6, "uar": 0.55, "best_val_accuracy": 0.62}))
    config = load_config(overrides=["data.data_root=/corpora", "protocol.name=speaker"])
    card = model_card(tmp_path, fold, config, ["neutral", "happy"], "vacnn", 3, chosen_by_user=True)
    assert "Synthetic" not in card and "synthetic" not in card
    assert "target: SAVEE (English; acted, 4 male speakers)" in card and "pretraining: TESS + RAVDESS" in card
    assert "Languages seen: English." in card and "Acted speech only: SAVEE, TESS and RAVDESS hold" in card
    assert "accuracy: 55.0% +- 7.1" in card and "range from 50.0% to 60.0%" in card
    assert "protocol `speaker`" in card and "chosen with `--fold`" in card and "macro-F1" not in card
    assert "Test folds of the run (2 folds)" in card  # no total: the speaker protocol's depends on the corpus
    partial = model_card(tmp_path, fold, replace(config, **{"protocol.max_folds": 2}), ["neutral", "happy"], "vacnn", 3)
    assert "(2 folds, part of the protocol's folds" in partial


# --- the waveform signatures: the log-mel image computed in the graph ---------------------------

def _padded(waves: list[np.ndarray]) -> dict[str, np.ndarray]:
    batch = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    return {"waveform": batch, "length": np.array([len(w) for w in waves], np.int32)}


def _call(signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    specs = signature.structured_input_signature[1]
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}).items()}


@pytest.fixture(scope="module")
def signatures(exported: Path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported))
    return loaded, loaded.signatures


def test_waveform_signature_matches_the_python_features(exported: Path, run_dir: Path, signatures):
    """In-graph images of a padded batch of synthetic utterances of different lengths against
    vacnn_tf.features.logmel.logmel_image, and the labels of the two paths (the Python histogram in both)."""
    from vacnn_tf.features.logmel import load_audio
    from vacnn_tf.serving.classifier import Preprocessor

    pre = Preprocessor.from_savedmodel(exported)
    waves = [load_audio(p, pre.features.sample_rate) for p in _wavs(run_dir, 6)]
    assert len({len(w) for w in waves}) > 1  # the padding and the lengths are exercised
    python = [pre.from_waveform(w, pre.features.sample_rate) for w in waves]
    images = np.concatenate([p["logmel"] for p in python])
    bovw = np.concatenate([p["bovw"] for p in python])
    graph = _call(signatures[1]["waveform_logmel"], _padded(waves))["logmel"]
    diff = np.abs(graph - images)
    assert graph.shape == images.shape and diff.max() <= 1.0 and diff.mean() < 1e-3
    by_graph = _call(signatures[1]["waveform"], {**_padded(waves), "bovw": bovw})
    by_python = _call(signatures[1]["serving_default"], {"logmel": images, "bovw": bovw})
    assert list(by_graph["label"]) == list(by_python["label"])
    np.testing.assert_allclose(by_graph["probabilities"], by_python["probabilities"], atol=1e-3)


@pytest.mark.parametrize("case, reason", [("silent", "all silent"), ("short", "too short"), ("width", "must not exceed")])
def test_waveform_signature_refuses_bad_audio(signatures, case: str, reason: str):
    import tensorflow as tf

    wave = (0.1 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    inputs = {"silent": _padded([np.zeros(16000, np.float32)]), "short": _padded([wave[:200]]),
              "width": {"waveform": wave[None], "length": np.array([16001], np.int32)}}[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
        _call(signatures[1]["waveform_logmel"], inputs)


def test_waveform_signature_of_a_model_without_bovw_needs_audio_only(tmp_path: Path, run_dir: Path):
    """TF Serving alone turns audio into labels: the signature takes waveform and length, nothing else."""
    import tensorflow as tf

    from vacnn_tf.features.logmel import load_audio, logmel_image
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.serving.export import write_savedmodel

    config = load_config()
    target = write_savedmodel(build_vacnn(7), tmp_path / "vacnn" / "1", list("abcdefg"), config)
    loaded = tf.saved_model.load(str(target))
    assert sorted(loaded.signatures["waveform"].structured_input_signature[1]) == ["length", "waveform"]
    waves = [load_audio(p, 16000) for p in _wavs(run_dir, 3)]
    images = np.stack([logmel_image(w, 16000, config.features) for w in waves]).astype(np.float32)[..., None]
    by_graph = _call(loaded.signatures["waveform"], _padded(waves))
    assert list(by_graph["label"]) == list(_call(loaded.signatures["serving_default"], {"logmel": images})["label"])
    spec = json.loads((target / "assets" / "feature_config.json").read_text())
    assert spec["waveform_signature"] == "present" and "waveform" in spec["signatures"]


def test_waveform_signature_is_left_out_where_the_graph_cannot_copy_the_features(tmp_path: Path):
    import tensorflow as tf

    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.serving.export import write_savedmodel

    config = load_config(overrides=["features.resize=area"])
    target = write_savedmodel(build_vacnn(3), tmp_path / "vacnn" / "1", list("abc"), config)
    assert sorted(tf.saved_model.load(str(target)).signatures) == ["serving_default"]
    assert "resize='area'" in json.loads((target / "assets" / "feature_config.json").read_text())["waveform_signature"]


def test_export_cli_in_a_fresh_process_and_saved_model_cli_shows_the_waveform_signature(run_dir: Path, tmp_path: Path):
    env = {**os.environ, **ENV_QUIET}
    result = subprocess.run([sys.executable, "-m", "vacnn_tf", "export", "--run", str(run_dir), "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--dir", str(tmp_path / "vacnn" / "1"), "--tag_set", "serve",
                          "--signature_def", "waveform"], capture_output=True, text=True, env=env, check=True).stdout
    assert "inputs['waveform']" in out and "(-1, -1)" in out and "inputs['length']" in out and "DT_INT32" in out
    assert "inputs['bovw']" in out and "outputs['label']" in out
