"""`vacnn figures` and vacnn_tf.evaluation.figures on a tiny synthetic corpus and tiny random models.

Each figure is checked to be a readable PNG of a sensible size, and the numbers behind the
attention and Grad-CAM figures are checked against what the layers compute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vacnn_tf.cli import main
from vacnn_tf.config import BovwConfig, RunConfig, replace, to_yaml
from vacnn_tf.storage import write_json, write_text

K = 4  # visual words: a 7-file corpus has a few hundred KAZE descriptors


def assert_png(path: Path, min_side: int = 200) -> tuple[int, int]:
    """The file exists, is a PNG, decodes, and is at least ``min_side`` pixels each way."""
    from PIL import Image

    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        width, height = img.size
    assert min(width, height) >= min_side
    assert not list(path.parent.glob(f".{path.name}.*")), "a temporary file was left behind"
    return width, height


@pytest.fixture(scope="module")
def corpus(module_tmp) -> Path:
    from vacnn_tf.corpora.synth import generate

    root = module_tmp / "data"
    generate(root, per_class=1, seed=5, corpora=("emodb",))
    return root


@pytest.fixture(scope="module")
def wav(corpus) -> Path:
    return sorted((corpus / "emodb").rglob("*W*.wav"))[0]


@pytest.fixture(scope="module")
def config(module_tmp) -> RunConfig:
    cache = module_tmp / "cache"
    return replace(RunConfig(), **{"bovw.k": K, "data.cache_dir": str(cache), "data.workers": 1})


@pytest.fixture(scope="module")
def vocabulary(corpus, config):
    from vacnn_tf.features.bovw import BovwVocabulary, descriptors_for
    from vacnn_tf.features.logmel import extract_images

    paths = sorted(str(p) for p in (corpus / "emodb").rglob("*.wav"))
    # The cache layout the figures use, so the CLI test below reads these images back.
    cache = Path(config.data.cache_dir) / "features"
    images = extract_images(paths, config.features, cache, workers=1, progress=False).images
    return BovwVocabulary.fit(descriptors_for(images, config.bovw, progress=False, workers=1), config.bovw, seed=0)


@pytest.fixture(scope="module")
def finetuned_run(module_tmp, corpus, config, vocabulary) -> Path:
    """A run directory as `vacnn finetune` leaves it, holding a random fine-tuned VACNN + BOVW."""
    import keras

    from vacnn_tf.corpora.labels import classes_for
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.storage import atomic_write

    keras.utils.set_random_seed(0)
    run = module_tmp / "run"
    classes = list(classes_for("emodb"))
    model = build_finetuned(build_vacnn(7), len(classes), config.model, bovw_size=K)
    fold = run / "fold_0"
    fold.mkdir(parents=True)
    atomic_write(fold / "model.keras", model.save, suffix=".keras")
    vocabulary.save(fold / "vocabulary.npz")
    write_text(run / "config.yaml", to_yaml(config))
    write_json(run / "labels.json", {"classes": classes, "corpus": "emodb"})
    paths = sorted(str(p) for p in (corpus / "emodb").rglob("*.wav"))
    from vacnn_tf.corpora.readers import read_corpus

    table = read_corpus("emodb", corpus / "emodb").table
    rows = ["path,label,pred"] + [f"{p},{lbl},{lbl}" for p, lbl in zip(table["path"], table["label"])]
    write_text(fold / "predictions.csv", "\n".join(rows) + "\n")
    assert len(paths) == len(table)
    # A resumed fit appends to history.csv: epoch 1 appears twice, the later record counts.
    write_text(fold / "history.csv", "epoch,accuracy,loss,val_accuracy,val_loss\n"
               "0,0.2,2.0,0.1,2.1\n1,0.3,1.9,0.2,2.0\n1,0.35,1.8,0.25,1.95\n2,0.5,1.5,0.3,1.9\n")
    write_json(fold / "selection.json", {"history": [], "best": {"epoch": 2, "acc": 0.3, "loss": 1.9}})
    return run


def test_features_figure(wav, tmp_path, capsys):
    out = tmp_path / "f" / "features.png"
    assert main(["figures", "features", "--wav", str(wav), "--out", str(out), "--set", "features.n_mels=64"]) == 0
    width, height = assert_png(out)
    assert width > 2 * height  # three panels side by side
    assert "n_mels=64" in capsys.readouterr().out


def test_features_function_counts_the_keypoints_bovw_uses(wav, tmp_path):
    from vacnn_tf.evaluation.figures import plot_features
    from vacnn_tf.features.bovw import extract_descriptors

    result = plot_features(wav, tmp_path / "f.png")
    assert result["image"].shape == (224, 224) and result["keypoints"] > 0
    assert result["keypoints"] == len(extract_descriptors(result["image"], BovwConfig()))


def test_bad_audio_is_an_error_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    assert main(["figures", "features", "--wav", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "empty file" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_bovw_figure_from_a_corpus(corpus, config, tmp_path, capsys):
    out = tmp_path / "bovw.png"
    args = ["figures", "bovw", "--corpus", "emodb", "--root", str(corpus), "--out", str(out),
            "--set", f"bovw.k={K}", "--set", f"data.cache_dir={config.data.cache_dir}", "--set", "data.workers=1"]
    assert main(args) == 0
    assert_png(out)
    assert "neutral, happy, sad, angry, fear, disgust, boredom" in capsys.readouterr().out


def test_bovw_figure_from_a_run_uses_the_fold_vocabulary(finetuned_run, tmp_path):
    from vacnn_tf.evaluation.figures import bovw_figure_from_run

    result = bovw_figure_from_run(finetuned_run, tmp_path / "b.png", fold=0)
    assert_png(result["path"])
    assert result["k"] == K and len(result["classes"]) == 7
    assert main(["figures", "bovw", "--run", str(finetuned_run), "--fold", "3", "--out", str(tmp_path / "n.png")]) == 2


def test_attention_figure_of_a_finetuned_checkpoint(finetuned_run, wav, tmp_path, capsys):
    out = tmp_path / "att.png"
    model = finetuned_run / "fold_0" / "model.keras"
    assert main(["figures", "attention", "--model", str(model), "--wav", str(wav), "--out", str(out),
                 "--class", "angry"]) == 0
    assert_png(out)
    text = capsys.readouterr().out
    assert "Grad-CAM explains angry" in text
    assert all(f"va_block{i}_attention (VisualAttention)" in text for i in (1, 2, 3))


def test_attention_maps_are_what_the_va_module_multiplies_by(wav):
    """F_c and F_s from attention_maps reproduce the VA layer's output: V * (F_c + F_s)."""
    import keras

    from vacnn_tf.evaluation.figures import attention_maps
    from vacnn_tf.features.logmel import file_image
    from vacnn_tf.models.networks import build_vacnn

    keras.utils.set_random_seed(1)
    model = build_vacnn(7, attention="va")
    image = file_image(wav, RunConfig().features)
    maps = attention_maps(model, image)
    assert [m.layer for m in maps] == [f"va_block{i}_attention" for i in (1, 2, 3)]
    assert [m.spatial.shape for m in maps] == [(56, 56), (28, 28), (14, 14)]
    assert [m.channel.shape for m in maps] == [(32,), (96,), (288,)]
    layer = model.get_layer("va_block2_attention")
    probe = keras.Model(model.inputs, [layer.input, layer.output])
    v, out = (np.asarray(t) for t in probe([image[None, :, :, None].astype("float32")]))
    expected = v[0] * (maps[1].channel[None, None, :] + maps[1].spatial[:, :, None])
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-5)


def test_grad_cam_and_attention_for_cbam_and_no_attention(wav, tmp_path):
    import keras

    from vacnn_tf.evaluation.figures import grad_cam, plot_attention
    from vacnn_tf.features.logmel import file_image
    from vacnn_tf.models.networks import build_vacnn

    keras.utils.set_random_seed(2)
    image = file_image(wav, RunConfig().features)
    cbam = build_vacnn(3, attention="cbam")
    result = plot_attention(cbam, image, tmp_path / "cbam.png", classes=["a", "b", "c"], class_index=1)
    assert_png(result["path"])
    assert {m.kind for m in result["maps"]} == {"CBAM"} and result["explained"] == "b"
    cam = grad_cam(cbam, image, class_index=1)
    assert cam.cam.shape == (14, 14) and cam.layer == "head_relu"
    assert 0.0 <= cam.cam.min() and cam.cam.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(cam.probabilities.sum(), 1.0, rtol=1e-5)
    plain = build_vacnn(3, attention="none")
    result = plot_attention(plain, image, tmp_path / "none.png")
    assert_png(result["path"]) and result["maps"] == []
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(plain, image, class_index=5)


def test_attention_of_a_bovw_model_needs_its_histogram(finetuned_run, wav, tmp_path):
    import keras

    from vacnn_tf.evaluation.figures import grad_cam
    from vacnn_tf.features.logmel import file_image

    model = keras.models.load_model(finetuned_run / "fold_0" / "model.keras", compile=False)
    with pytest.raises(ValueError, match="BOVW"):
        grad_cam(model, file_image(wav, RunConfig().features))


def test_training_curves(finetuned_run, tmp_path, capsys):
    from vacnn_tf.evaluation.figures import read_history

    history = read_history(finetuned_run / "fold_0" / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2] and history["accuracy"].tolist()[1] == 0.35
    out = tmp_path / "curves.png"
    assert main(["figures", "curves", "--run", str(finetuned_run), "--out", str(out)]) == 0
    assert_png(out)
    assert "fold_0: 3 epochs, selected epoch 3 (val accuracy 0.300)" in capsys.readouterr().out
    assert main(["figures", "curves", "--run", str(tmp_path)]) == 2
