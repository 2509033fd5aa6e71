"""`vacnn bench` and the runtime helpers. Speed figures are printed by the bench, never asserted here."""

import json

import numpy as np
import pytest

from vacnn_tf.bench import RESULT_KEYS
from vacnn_tf.cli import main
from vacnn_tf.config import TrainConfig


def test_bench_quick_json_has_every_key(capsys):
    import keras
    import tensorflow as tf

    assert main(["bench", "--json", "--quick"]) == 0
    # the bench leaves no process-wide switch behind for the tests that follow
    assert not tf.config.optimizer.get_jit() and keras.mixed_precision.global_policy().name == "float32"
    result = json.loads(capsys.readouterr().out)
    missing = [key for key in RESULT_KEYS if key not in result]
    assert not missing
    assert all(isinstance(result[key], (int, float)) and result[key] > 0 for key in RESULT_KEYS)
    assert result["latency_ms_p95"] >= result["latency_ms_median"]
    assert result["machine"]["cores"] >= 1 and result["settings"]["precision"] == "float32"


def test_bench_rejects_an_unknown_precision(capsys):
    assert main(["bench", "--quick", "--set", "train.precision=float8"]) == 2
    assert "train.precision" in capsys.readouterr().err


def test_predict_matches_model_predict():
    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.models.finetuned import build_finetuned
    from vacnn_tf.models.networks import build_vacnn
    from vacnn_tf.models.runtime import predict

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 224, 224), dtype=np.uint8)
    bovw = rng.random((5, 128), dtype=np.float32)
    vacnn = build_vacnn(7)
    x = images.astype(np.float32)[..., None]
    expected = vacnn.predict(x, batch_size=2, verbose=0)
    np.testing.assert_allclose(predict(vacnn, x, batch_size=2), expected, rtol=1e-5, atol=1e-5)
    # a dataset with a BOVW column the VACNN does not take: the column is dropped
    ds = make_dataset(images, np.zeros(5), bovw, batch_size=3)
    np.testing.assert_allclose(predict(vacnn, ds), expected, rtol=1e-5, atol=1e-5)

    finetuned = build_finetuned(vacnn, 4, use_bovw=True)
    inputs = {"logmel": x, "bovw": bovw}
    np.testing.assert_allclose(predict(finetuned, inputs, batch_size=4),
                               finetuned.predict(inputs, batch_size=4, verbose=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="missing \\['bovw'\\]"):
        predict(finetuned, {"logmel": x})


def test_configure_runtime_checks_and_applies():
    import keras

    from vacnn_tf.models.runtime import configure_runtime

    with pytest.raises(ValueError, match="train.precision"):
        configure_runtime(TrainConfig(precision="float8"))
    with pytest.raises(ValueError, match="train.intra_op_threads"):
        configure_runtime(TrainConfig(intra_op_threads=-1))
    try:
        settings = configure_runtime(TrainConfig(precision="mixed_bfloat16"))
        assert settings.precision == "mixed_bfloat16"
        from vacnn_tf.models.networks import build_vacnn

        model = build_vacnn(7)
        assert model.get_layer("va_block1_conv1").compute_dtype == "bfloat16"
        assert model.get_layer("head_classifier").compute_dtype == "float32"  # softmax and loss stay float32
    finally:
        # back to TensorFlow's defaults for the tests that follow (auto-clustering off)
        assert configure_runtime(TrainConfig(xla_fusion=False)).precision == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_compile_model_rejects_bad_steps_per_execution():
    import keras

    from vacnn_tf.models.optimization import compile_model

    inputs = keras.Input((4,), name="logmel")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="train.steps_per_execution"):
        compile_model(model, TrainConfig(steps_per_execution=0), steps_per_epoch=3)


def test_steps_per_execution_takes_the_same_optimizer_steps():
    """Several steps per compiled call: the same updates on the same batches, so the same weights."""
    import keras

    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.models.optimization import compile_model

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    weights = {}
    for spe in (1, 3):  # 5 steps per epoch: 3 + a partial call of 2
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="logmel")
        hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        compile_model(model, TrainConfig(steps_per_execution=spe), steps_per_epoch=5)
        model.fit(make_dataset(images, labels, batch_size=2), epochs=2, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 10
        weights[spe] = model.get_weights()
    for a, b in zip(weights[1], weights[3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
