"""Model builders: stage shapes (docs/method.md), parameter counts, freezing, save/load, a train step."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from vacnn_tf.cli import main
from vacnn_tf.cli.model import MODEL_CHOICES
from vacnn_tf.config import ConfigError, ModelConfig, TrainConfig, replace
from vacnn_tf.models import networks, optimization
from vacnn_tf.models.finetuned import bovw_statistics, build_finetuned, frozen_layer_names
from vacnn_tf.models.layers import CBAM

TORCH_ANCHOR_PARAMS = 1_250_133  # the same network in PyTorch (docs/performance.md's speed anchor), 7 classes


def _images(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, 224, 224, 1)).astype("float32")


def _bovw(batch: int = 2, seed: int = 0) -> np.ndarray:
    hist = np.random.default_rng(seed).random((batch, 128)).astype("float32")
    return hist / hist.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vacnn() -> keras.Model:
    return networks.build_vacnn(7)


@pytest.fixture(scope="module")
def finetuned(vacnn: keras.Model) -> keras.Model:
    return build_finetuned(vacnn, 8, ModelConfig())


def _shape(model: keras.Model, layer: str) -> tuple:
    return tuple(model.get_layer(layer).output.shape[1:])


def test_vacnn_matches_the_torch_anchor_parameter_count(vacnn):
    counts = networks.count_params(vacnn)
    print(f"vacnn: {counts}")
    assert counts == {"total": TORCH_ANCHOR_PARAMS, "trainable": TORCH_ANCHOR_PARAMS, "non_trainable": 0}
    assert vacnn.name == "vacnn" and vacnn.input.name == "logmel"


def test_vacnn_stage_shapes_follow_method(vacnn):
    expected = {
        "stem_conv": (112, 112, 32), "stem_pool": (56, 56, 32),
        "va_block1_relu2": (56, 56, 32), "va_block1_attention": (56, 56, 32),
        "va_block2_conv1": (28, 28, 96), "va_block2_attention": (28, 28, 96),
        "va_block3_conv1": (14, 14, 288), "va_block3_attention": (14, 14, 288),
        "head_relu": (14, 14, 288), "head_gap": (288,), "head_fc": (256,), "head_classifier": (7,),
    }
    for layer, shape in expected.items():
        assert _shape(vacnn, layer) == shape, layer
    assert networks.MODELS["vacnn"].feature_layer == "head_relu"


def test_vacnn_variants_share_the_backbone():
    cbam = networks.build_model("vacnn-cbam", 7)
    plain = networks.build_model("vacnn-noatt", 7)
    assert cbam.count_params() == TORCH_ANCHOR_PARAMS  # same weights, different wiring
    assert isinstance(cbam.get_layer("va_block2_attention"), CBAM)
    attention = sum(c * c // 4 + c // 4 + c * c // 4 + c + 2 * 49 for c in (32, 96, 288))
    assert plain.count_params() == TORCH_ANCHOR_PARAMS - attention
    assert not any("attention" in layer.name for layer in plain.layers)


@pytest.mark.filterwarnings("ignore:The structure of `inputs`")  # Keras notes the dict -> tensor match
def test_vacnn_runs_on_pixel_values_and_dict_inputs(vacnn):
    x = _images()
    probs = np.asarray(vacnn.predict_on_batch(x))
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(vacnn.predict_on_batch({"logmel": x})), probs, rtol=1e-6)


def test_finetuned_shapes_and_frozen_split(vacnn, finetuned):
    assert finetuned.name == "vacnn_bovw"
    assert sorted(finetuned.input) == ["bovw", "logmel"]
    for layer, shape in {
        "head_relu": (14, 14, 288), "finetune_pool": (7, 7, 288), "finetune_reshape": (49, 288),
        "bovw_squeeze": (49,), "bovw_expand": (49, 1), "bovw_hidden": (49, 288),
        "context_attention": (49, 288), "finetune_flatten": (49 * 288,), "finetune_classifier": (8,),
    }.items():
        assert _shape(finetuned, layer) == shape, layer
    frozen = frozen_layer_names(finetuned)
    assert frozen == ["stem_conv", "stem_gn", "va_block1_conv1", "va_block1_gn1",
                      "va_block1_conv2", "va_block1_gn2", "va_block1_attention"]
    counts = networks.count_params(finetuned)
    print(f"vacnn_bovw: {counts}")
    frozen_params = 288 + 64 + 2 * (9216 + 64) + (32 * 8 + 8 + 8 * 32 + 32 + 98)
    assert counts["non_trainable"] == frozen_params == 19_562
    head = 288 * 256 + 256 + 256 * 7 + 7
    new = (128 * 49 + 49) + (288 + 288) + 3 * 288 * 288 + (49 * 288 * 256 + 256) + (256 * 8 + 8)
    assert counts["total"] == TORCH_ANCHOR_PARAMS - head + new == 5_045_063
    assert finetuned.get_layer("va_block2_conv1").trainable and finetuned.get_layer("head_gn").trainable


def test_state_pooling_gap_averages_the_states_and_bad_values_are_named(vacnn):
    averaged = build_finetuned(vacnn, 8, ModelConfig(state_pooling="gap"))
    assert _shape(averaged, "finetune_gap") == (288,)
    assert networks.count_params(averaged)["total"] == 1_506_119
    # without the fusion the states are always averaged: the pretraining model's own head
    plain = build_finetuned(vacnn, 8, ModelConfig(), use_bovw=False)
    assert _shape(plain, "finetune_gap") == (288,)
    with pytest.raises(ValueError, match="model.state_pooling"):
        build_finetuned(vacnn, 8, ModelConfig(state_pooling="max"))


def test_state_pooling_time_gap_averages_each_frequency_row_over_time(vacnn):
    model = build_finetuned(vacnn, 7, ModelConfig(state_pooling="time_gap"))
    assert _shape(model, "finetune_time_gap") == (7, 1, 288)
    assert _shape(model, "finetune_flatten") == (7 * 288,)
    assert model.get_layer("finetune_fc").kernel.shape == (7 * 288, 256)
    probe = keras.Model(model.inputs, [model.get_layer("context_relu").output, model.get_layer("finetune_flatten").output])
    rng = np.random.default_rng(3)
    states, pooled = probe({"logmel": rng.uniform(0, 255, (2, 224, 224, 1)).astype(np.float32),
                            "bovw": rng.dirichlet(np.ones(128), 2).astype(np.float32)})
    # states are row-major over the 7x7 map: rows are mel bands (height), columns time frames
    expected = np.asarray(states).reshape(2, 7, 7, 288).mean(axis=2).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(pooled), expected, rtol=1e-5, atol=1e-6)


def test_band_input_norm_adds_a_standardization_that_adapts_to_training_images(finetuned):
    assert "stem_band_norm" not in [layer.name for layer in finetuned.layers]  # the paper's input: rescaling only
    assert not networks.adapt_input_norm(finetuned, np.zeros((2, 224, 224), np.uint8))
    config = ModelConfig(input_norm="band", freeze_through="none")
    model = build_finetuned(networks.build_model("vacnn", 7, config), 7, config)
    images = np.random.default_rng(4).integers(0, 256, (5, 224, 224), dtype=np.uint8)
    images[:, 200:] = 0  # silent top bands: std falls back to epsilon, no division by zero
    assert networks.adapt_input_norm(model, images)
    norm = model.get_layer("stem_band_norm")
    np.testing.assert_allclose(norm.mean.numpy(), (images / 255.0).mean(axis=(0, 2)), rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(model.predict({"logmel": images[:2, ..., None].astype(np.float32),
                                              "bovw": np.full((2, 128), 1 / 128, np.float32)}, verbose=0)))
    with pytest.raises(ValueError, match="model.input_norm"):
        networks.build_model("vacnn", 7, ModelConfig(input_norm="minmax"))


def test_band_input_norm_of_a_resized_baseline_adapts_to_the_resized_images():
    config = ModelConfig(input_norm="band", baseline_image_size=96)
    model = networks.build_model("mobilenet", 7, config, image_size=128)
    images = np.zeros((3, 128, 128), np.uint8)
    images[:, :64] = 255  # the lower half of the mel bands loud, the upper half silent
    assert networks.adapt_input_norm(model, images)
    mean = model.get_layer("stem_band_norm").mean.numpy()
    assert mean.shape == (96,) and mean[:40].min() > 0.99 and mean[56:].max() < -0.99


def test_bovw_input_standardize_zscores_words_with_training_statistics(vacnn, tmp_path):
    rng = np.random.default_rng(5)
    train = rng.dirichlet(np.full(128, 0.3), 40).astype(np.float32)
    train[:, 7] = 0.0  # a word no training utterance uses: floored variance, no blow-up
    mean, variance = bovw_statistics(train, 128)
    np.testing.assert_allclose(mean, train.mean(axis=0), rtol=1e-5, atol=1e-8)
    assert variance[7] > 0 and variance[7] == pytest.approx(np.median(train.var(axis=0)) / 100, rel=1e-4)
    config = ModelConfig(bovw_input="standardize")
    with pytest.raises(ValueError, match="bovw_train"):
        build_finetuned(vacnn, 7, config)
    model = build_finetuned(vacnn, 7, config, bovw_train=train)
    probe = keras.Model(model.inputs, model.get_layer("bovw_norm").output)
    feeds = {"logmel": rng.uniform(0, 255, (40, 224, 224, 1)).astype(np.float32), "bovw": train}
    z = np.asarray(probe(feeds))
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    assert np.abs(z[:, 7]).max() == 0.0
    path = tmp_path / "m.keras"
    model.save(path)
    back = keras.models.load_model(path, compile=False, safe_mode=True)
    few = {k: v[:2] for k, v in feeds.items()}
    np.testing.assert_allclose(back.predict(few, verbose=0), model.predict(few, verbose=0), rtol=1e-5, atol=1e-6)
    assert "bovw_norm" not in [layer.name for layer in build_finetuned(vacnn, 7, ModelConfig()).layers]


def test_head_dropout_adds_two_dropouts_only_when_asked(vacnn, finetuned):
    names = [layer.name for layer in finetuned.layers]
    assert not any("dropout" in name for name in names)  # the paper's model: none
    dropped = build_finetuned(vacnn, 8, ModelConfig(head_dropout=0.4))
    order = [layer.name for layer in dropped.layers]
    assert order.index("finetune_dropout_fc") < order.index("finetune_fc") < order.index(
        "finetune_dropout_classifier") < order.index("finetune_classifier")
    assert dropped.get_layer("finetune_dropout_fc").rate == 0.4
    assert networks.count_params(dropped) == networks.count_params(finetuned)
    x = {"logmel": np.full((2, 224, 224, 1), 128.0, np.float32), "bovw": np.full((2, 128), 1 / 128, np.float32)}
    np.testing.assert_array_equal(np.asarray(dropped(x, training=False)), np.asarray(dropped(x, training=False)))
    for bad in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="model.head_dropout"):
            build_finetuned(vacnn, 8, ModelConfig(head_dropout=bad))


def test_finetuned_copies_the_pretrained_model(vacnn, finetuned):
    assert all(layer.trainable for layer in vacnn.layers)
    kernel = finetuned.get_layer("va_block2_conv1").kernel
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(vacnn.get_layer("va_block2_conv1").kernel))
    assert kernel is not vacnn.get_layer("va_block2_conv1").kernel


def test_finetuned_without_bovw(vacnn):
    model = build_finetuned(vacnn, 5, ModelConfig(), use_bovw=False)
    assert model.name == "vacnn_finetuned" and list(model.input) == ["logmel"]
    names = {layer.name for layer in model.layers}
    assert "context_attention" not in names and "bovw_squeeze" not in names
    assert np.asarray(model.predict_on_batch({"logmel": _images()})).shape == (2, 5)
    # config.use_bovw is the default when use_bovw is not given
    assert build_finetuned(vacnn, 5, replace(ModelConfig(), use_bovw=False)).name == "vacnn_finetuned"


@pytest.mark.parametrize(
    "freeze_through, last_frozen",
    [("none", None), ("stem", "stem_gn"), ("va_block2", "va_block2_attention"), ("va_block3_gn1", "va_block3_gn1")],
)
def test_freeze_through_is_a_name_rule(vacnn, freeze_through, last_frozen):
    config = replace(ModelConfig(), freeze_through=freeze_through)
    model = build_finetuned(vacnn, 4, config, use_bovw=False)
    frozen = frozen_layer_names(model)
    if last_frozen is None:
        assert frozen == []
        return
    with_weights = [layer.name for layer in model.layers if layer.weights]
    assert frozen == with_weights[: with_weights.index(last_frozen) + 1]


def test_bad_arguments_are_named(vacnn):
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        networks.build_vacnn(1)
    with pytest.raises(ValueError, match="Received: attention='se'"):
        networks.build_vacnn(7, attention="se")
    with pytest.raises(ValueError, match="Received: model.groups=7"):
        networks.build_vacnn(7, config=replace(ModelConfig(), groups=7))
    with pytest.raises(ValueError, match="Received: architecture='vgg'"):
        networks.build_model("vgg", 7)
    with pytest.raises(ValueError, match="Received: model.freeze_through='va_block9'"):
        build_finetuned(vacnn, 4, replace(ModelConfig(), freeze_through="va_block9"))
    with pytest.raises(ValueError, match="Received: steps_per_epoch=0"):
        optimization.compile_model(vacnn, TrainConfig(), 0)


def test_registry_and_cli_agree():
    assert set(MODEL_CHOICES) == set(networks.MODELS) | {"finetuned"}
    for key, spec in networks.MODELS.items():
        assert spec.key == key


def test_step_decay_schedule(vacnn):
    schedule = optimization.learning_rate_schedule(TrainConfig(decay_every=10, decay_factor=0.5), steps_per_epoch=4)
    values = [float(schedule(step)) for step in (0, 39, 40, 79, 80)]
    np.testing.assert_allclose(values, [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4], rtol=1e-6)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(restored(80)) == pytest.approx(2.5e-4)
    model = optimization.compile_model(networks.build_vacnn(3), TrainConfig(), steps_per_epoch=4)
    assert isinstance(model.optimizer, keras.optimizers.Adam)


@functools.lru_cache(maxsize=None)
def _built(key: str) -> keras.Model:
    """One 4-class model per registry key for the whole module (baseline builds take seconds)."""
    return networks.build_model(key, 4)


def _model_for(key: str, pretrained: keras.Model) -> keras.Model:
    if key == "finetuned":
        return build_finetuned(pretrained, 4, ModelConfig())
    if key == "finetuned-nobovw":
        return build_finetuned(pretrained, 4, ModelConfig(), use_bovw=False)
    if key == "mobilenet-finetuned":
        return build_finetuned(_built("mobilenet"), 4, ModelConfig(), use_bovw=True)
    return _built(key)


def _inputs(model: keras.Model) -> np.ndarray | dict[str, np.ndarray]:
    if not isinstance(model.input, dict):
        return _images()  # pretraining models and baselines: the plain image batch
    data = {"logmel": _images()}
    if "bovw" in {t.name for t in model.inputs}:
        data["bovw"] = _bovw()
    return data


SAVE_LOAD = [*networks.MODELS, "finetuned", "finetuned-nobovw", "mobilenet-finetuned"]


@pytest.mark.parametrize("key", SAVE_LOAD)
def test_keras_save_and_safe_load_give_identical_predictions(key, vacnn, tmp_path):
    model = _model_for(key, vacnn)
    counts = networks.count_params(model)
    print(f"{key} ({model.name}): {counts}")
    data = _inputs(model)
    before = np.asarray(model.predict_on_batch(data))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(data)), before, rtol=0, atol=1e-6)
    assert networks.count_params(loaded) == counts
    assert frozen_layer_names(loaded) == frozen_layer_names(model)
    assert len(loaded.losses) == len(model.losses) > 0  # the L2 terms survive the reload
    if key in networks.MODELS:
        assert networks.spec_for_model(loaded) is networks.MODELS[key]
        kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
        assert len(model.losses) == len(kernels)  # every conv/dense kernel carries the L2, nothing else
    if key == "vacnn":  # the pipeline fine-tunes a pretrained model loaded from disk
        tuned = build_finetuned(loaded, 3, ModelConfig())
        assert np.asarray(tuned.predict_on_batch(_inputs(tuned))).shape == (2, 3)


def test_baseline_freeze_points():
    model = build_finetuned(_built("resnet"), 4, ModelConfig(), use_bovw=False)
    frozen = frozen_layer_names(model)
    assert frozen[0] == "conv1_conv" and frozen[-1].startswith("conv2_block3")
    assert not any(name.startswith("conv3") for name in frozen)
    assert _shape(model, "finetune_reshape") == (49, 2048)
    inception = build_finetuned(_built("inception"), 4, ModelConfig(), use_bovw=False)
    assert _shape(inception, "finetune_reshape") == (25, 2048)
    names = [layer.name for layer in inception.layers]
    frozen = set(frozen_layer_names(inception))
    assert inception.get_layer("mixed2").weights == [] and "mixed2" in names
    assert not frozen & set(names[names.index("mixed2") + 1 :])  # nothing after the first module group
    assert len(frozen) > 20
    # InceptionV3 has no "stem" freeze point: the prefix rule would have matched stem_rescale and frozen nothing
    with pytest.raises(ValueError, match=r"a stage 'inception' does not have.*'va_block1'"):
        build_finetuned(_built("inception"), 4, ModelConfig(freeze_through="stem"), use_bovw=False)


@pytest.mark.parametrize("key", [*networks.MODELS, "finetuned", "finetuned-nobovw"])
def test_one_train_step(key, vacnn):
    """One optimizer step moves every trainable weight and no frozen one.

    Eager (``run_eagerly``), which on 2 CPU cores is 5-10x quicker for a single step than
    tracing the train function; the traced path is checked once, in the next test.
    """
    model = build_finetuned(vacnn, 4, ModelConfig(), use_bovw=(key == "finetuned")) if key.startswith(
        "finetuned") else networks.build_model(key, 4)
    optimization.compile_model(model, TrainConfig(jit_compile=False), steps_per_epoch=1)
    model.run_eagerly = True
    _check_train_step(model)


def test_one_traced_train_step_of_the_finetuned_model(vacnn):
    model = build_finetuned(vacnn, 4, ModelConfig())
    optimization.compile_model(model, TrainConfig(jit_compile=False), steps_per_epoch=1)
    _check_train_step(model)


def _check_train_step(model: keras.Model) -> None:
    frozen = {w.path: np.asarray(w).copy() for w in model.non_trainable_weights}
    trainable = {w.path: np.asarray(w).copy() for w in model.trainable_weights}
    loss, accuracy = model.train_on_batch(_inputs(model), np.array([0, 1]))
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    changed = [w.path for w in model.trainable_weights if not np.array_equal(np.asarray(w), trainable[w.path])]
    assert len(changed) > 0.9 * len(trainable)
    for w in model.non_trainable_weights:
        if "moving" not in w.path:  # BN statistics are non-trainable but update in training
            np.testing.assert_array_equal(np.asarray(w), frozen[w.path])
    if any(not layer.trainable for layer in model.layers):
        assert frozen, "a fine-tuned model has frozen weights"


def test_model_summary_command(capsys):
    assert main(["model-summary", "--model", "vacnn", "--classes", "7"]) == 0
    out = capsys.readouterr().out
    assert "va_block3_attention" in out
    assert "vacnn: total=1,250,133 trainable=1,250,133 non_trainable=0" in out


def test_mixup_loss_takes_integer_labels_and_blended_rows(tmp_path):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    ids = np.array([0, 2])
    rows = np.array([[0.6, 0.4, 0.0], [0.0, 0.75, 0.25]], np.float32)
    loss = optimization.LabelCrossentropy()
    assert float(loss(ids, probs)) == pytest.approx(float(keras.losses.SparseCategoricalCrossentropy()(ids, probs)), rel=1e-6)
    assert float(loss(rows, probs)) == pytest.approx(float(keras.losses.CategoricalCrossentropy()(rows, probs)), rel=1e-6)
    np.testing.assert_array_equal(np.asarray(optimization.label_accuracy(ids, probs)), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(optimization.label_accuracy(rows, probs)), [1.0, 0.0])
    with pytest.raises(ValueError, match="train.mixup"):
        optimization.compile_model(networks.build_vacnn(3), TrainConfig(mixup=-0.5), steps_per_epoch=1)


def test_a_model_trained_with_mixup_saves_and_loads_safely(tmp_path):
    from vacnn_tf.datasets.pipeline import make_dataset

    # The loss and metric do not depend on the network: a tiny one keeps the test quick.
    inputs = keras.Input((224, 224, 1), name="logmel")
    tiny = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    model = optimization.compile_model(tiny, TrainConfig(mixup=0.2, steps_per_execution=1), steps_per_epoch=2)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (8, 224, 224), dtype=np.uint8), np.arange(8) % 3
    train = make_dataset(images, labels, batch_size=4, shuffle=True, mixup=0.2, num_classes=3)
    history = model.fit(train, validation_data=make_dataset(images, labels, batch_size=4), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0]) and 0.0 <= history.history["val_accuracy"][0] <= 1.0
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.loss, optimization.LabelCrossentropy)
    np.testing.assert_allclose(np.asarray(loaded(images[:2, :, :, None].astype(np.float32))),
                               np.asarray(model(images[:2, :, :, None].astype(np.float32))), atol=1e-6)


def test_ema_selects_and_saves_the_averaged_weights(tmp_path):
    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.training.fitting import fit_resumable

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (8, 224, 224), dtype=np.uint8), np.arange(8) % 3

    def train(ema: float, epochs: int, name: str) -> list[np.ndarray]:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((224, 224, 1), name="logmel")
        pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
        tiny = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
        optimization.compile_model(tiny, TrainConfig(ema=ema, learning_rate=0.5, steps_per_execution=1), steps_per_epoch=1)
        assert tiny.optimizer.use_ema is bool(ema)
        # one batch: one optimizer step per epoch; no validation: the last epoch is kept
        fit_resumable(tiny, make_dataset(images, labels, batch_size=8), None, tmp_path / name, epochs=epochs, patience=5, verbose=0)
        return tiny.get_weights()

    first = train(0.0, 1, "first")
    raw, averaged = train(0.0, 3, "raw"), train(0.99, 3, "ema")
    # Keras starts the average at the first step's weights; two more steps at momentum 0.99
    # move it about 2% of the way the raw weights go.
    distance = lambda weights: float(np.sqrt(sum(np.sum((w - f) ** 2) for w, f in zip(weights, first))))
    assert 0.0 < distance(averaged) < 0.1 * distance(raw)
    with pytest.raises(ValueError, match="train.ema"):
        optimization.compile_model(networks.build_vacnn(3), TrainConfig(ema=1.0), steps_per_epoch=1)


@pytest.mark.parametrize("select_on, best_epoch", [("accuracy", 1), ("loss", 2)])
def test_selection_follows_validation_accuracy_or_loss(tmp_path, select_on, best_epoch):
    from vacnn_tf.training.fitting import SelectBest

    inputs = keras.Input((3,))
    tiny = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    select = SelectBest(tmp_path, patience=5, select_on=select_on)
    select.set_model(tiny)
    for epoch, (acc, loss) in enumerate([(0.5, 1.0), (0.6, 1.2), (0.55, 0.8), (0.6, 1.3)]):
        select.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
    assert select.state["best"]["epoch"] == best_epoch
    assert select.state["wait"] == 3 - best_epoch
    with pytest.raises(ValueError, match="train.select_on"):
        SelectBest(tmp_path, patience=5, select_on="uar")


def test_baselines_take_the_configured_batchnorm_momentum_and_keep_it_through_a_reload(tmp_path):
    bns = lambda m: [layer for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
    default = _built("mobilenet")
    assert bns(default) and {layer.momentum for layer in bns(default)} == {ModelConfig().bn_momentum}
    model = networks.build_model("mobilenet", 4, ModelConfig(bn_momentum=0.99))
    assert {layer.momentum for layer in bns(model)} == {0.99}
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert {layer.momentum for layer in bns(loaded)} == {0.99}
    with pytest.raises(ValueError, match="model.bn_momentum"):
        networks.build_model("mobilenet", 4, ModelConfig(bn_momentum=1.0))


def test_a_smaller_image_scales_every_stage_and_keeps_the_weights():
    """features.image_size=96: the same 1.25M weights, each map 96/224 the side, 3x3 fine-tuning states."""
    small = networks.build_vacnn(7, image_size=96)
    assert networks.count_params(small)["total"] == TORCH_ANCHOR_PARAMS
    assert _shape(small, "stem_pool") == (24, 24, 32) and _shape(small, "head_relu") == (6, 6, 288)
    assert networks.image_size_of(small) == 96
    fused = build_finetuned(small, 5, ModelConfig())
    assert _shape(fused, "finetune_reshape") == (9, 288) and _shape(fused, "bovw_squeeze") == (9,)
    assert networks.image_size_of(fused) == 96  # found by name among the dict inputs
    out = fused({"logmel": np.full((2, 96, 96, 1), 128.0, "float32"), "bovw": _bovw()})
    assert tuple(out.shape) == (2, 5)


def test_image_sizes_the_networks_cannot_take_are_refused():
    with pytest.raises(ValueError, match=r"`image_size` must be a multiple of 32 of at least 64\. Received: image_size=80"):
        networks.build_vacnn(7, image_size=80)
    with pytest.raises(ValueError, match=r"at least 75 for the 'inception' baseline .*image_size=64"):
        networks.build_model("inception", 4, image_size=64)


def test_without_the_fine_tuning_fc_the_softmax_reads_the_states_themselves():
    """model.finetune_fc=false: flattened attended states -> softmax (49 * 288 * 5 + 5 weights), no FC 256."""
    base = networks.build_vacnn(7, image_size=64)
    fused = build_finetuned(base, 5, ModelConfig(finetune_fc=False, head_dropout=0.3))
    names = [layer.name for layer in fused.layers]
    assert "finetune_fc" not in names and "finetune_dropout_fc" not in names and "finetune_dropout_classifier" in names
    assert fused.get_layer("finetune_classifier").kernel.shape == (4 * 288, 5)  # 64 px: 2x2 states
    plain = build_finetuned(base, 5, ModelConfig(use_bovw=False, finetune_fc=False))
    assert plain.get_layer("finetune_classifier").kernel.shape == (288, 5)
    assert build_finetuned(base, 5, ModelConfig()).get_layer("finetune_fc").kernel.shape == (4 * 288, 256)


def test_the_attention_gate_bias_reaches_the_fused_model_and_its_saved_file(tmp_path):
    """model.attention_gate_bias: a trained bias in eq. (7), kept by a .keras round trip."""
    base = networks.build_vacnn(7, image_size=64)
    fused = build_finetuned(base, 5, ModelConfig(attention_gate_bias=1.0))
    attention = fused.get_layer("context_attention")
    assert attention.gate_bias == 1.0 and attention.combine_bias.shape == (288,)
    assert build_finetuned(base, 5, ModelConfig()).get_layer("context_attention").combine_bias is None
    with pytest.raises(ConfigError, match="model.attention_gate_bias"):
        ModelConfig(attention_gate_bias="1")
    path = tmp_path / "fused.keras"
    fused.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.get_layer("context_attention").combine_bias.numpy(), np.ones(288, "float32"))


def test_residual_blocks_add_each_block_input_and_freeze_through_the_first_sum(tmp_path):
    """model.residual: identity in VA block 1, 1x1/2 conv + GN in blocks 2 and 3; the rest unchanged."""
    config = ModelConfig(residual=True)
    model = networks.build_vacnn(7, config=config, image_size=64)
    plain = networks.build_vacnn(7, image_size=64)
    shortcuts = 32 * 96 + 2 * 96 + 96 * 288 + 2 * 288  # two projections and their GN; block 1 adds its input as is
    assert networks.count_params(model)["total"] == networks.count_params(plain)["total"] + shortcuts
    names = [layer.name for layer in model.layers]
    assert "va_block1_shortcut_conv" not in names and {"va_block1_add", "va_block2_add", "va_block3_add"} <= set(names)
    assert _shape(model, "va_block2_shortcut_gn") == (8, 8, 96) and _shape(model, "va_block3_add") == (4, 4, 288)
    fused = build_finetuned(model, 5, config)
    frozen = frozen_layer_names(fused)
    assert "va_block1_attention" in frozen and "va_block2_conv1" not in frozen
    assert "va_block2_shortcut_conv" not in frozen  # block 2's projection is retrained with the block
    x = {"logmel": np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 1)).astype("float32"), "bovw": _bovw()}
    fused.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x), fused(x), rtol=1e-5, atol=1e-6)


def test_a_baseline_image_size_resizes_inside_the_model_and_survives_a_safe_reload(tmp_path):
    """model.baseline_image_size=64 on 128x128 features: the input stays 128, the backbone sees 64."""
    config = ModelConfig(baseline_image_size=64)
    model = networks.build_model("mobilenet", 4, config, image_size=128)
    assert networks.image_size_of(model) == 128
    assert _shape(model, "stem_resize") == (64, 64, 1) and _shape(model, "conv1") == (32, 32, 32)
    full = networks.build_model("mobilenet", 4, ModelConfig(), image_size=128)
    assert _shape(full, "conv1") == (64, 64, 32) and "stem_resize" not in [layer.name for layer in full.layers]
    assert networks.count_params(model) == networks.count_params(full)  # the same weights, a quarter of the pixels
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    vacnn = networks.build_model("vacnn", 4, config, image_size=128)  # the VACNN rows keep the features' size
    assert _shape(vacnn, "stem_pool") == (32, 32, 32)


def test_baseline_image_sizes_that_cannot_work_are_refused_by_key():
    from vacnn_tf.config import ConfigError, RunConfig

    with pytest.raises(ValueError, match=r"'model.baseline_image_size' must be at least 75 for the 'inception' .*=64"):
        networks.build_model("inception", 4, ModelConfig(baseline_image_size=64), image_size=128)
    with pytest.raises(ConfigError, match=r"model.baseline_image_size' must be null or a multiple of 32 .*=100"):
        ModelConfig(baseline_image_size=100)
    with pytest.raises(ConfigError, match=r"must be at most features.image_size \(128\).*baseline_image_size=160"):
        replace(RunConfig(), **{"features.image_size": 128, "model.baseline_image_size": 160})
    with pytest.raises(ValueError, match=r"at most the input's 128"):
        networks.build_model("resnet", 4, ModelConfig(baseline_image_size=160), image_size=128)


def test_a_pretrained_model_of_another_size_is_refused_by_name(tmp_path):
    from vacnn_tf.config import RunConfig

    config = replace(RunConfig(), **{"features.image_size": 96})
    networks.check_image_size(networks.build_vacnn(3, image_size=96), config, "small.keras")
    with pytest.raises(ValueError, match=r"big\.keras: this model takes 224x224 .*set features\.image_size=224"):
        networks.check_image_size(networks.build_vacnn(3), config, "big.keras")
