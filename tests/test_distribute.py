"""train.strategy and train.batch_per: MirroredStrategy on two logical CPU devices, against one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vacnn_tf.config import ConfigError, TrainConfig, load_config
from vacnn_tf.training.distribute import global_batch_size

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("key, value", [("strategy", "multi"), ("batch_per", "device")])
def test_the_strategy_keys_take_only_their_listed_values(key: str, value: str):
    with pytest.raises(ConfigError, match=f"train.{key}' must be one of"):
        load_config(overrides=[f"train.{key}={value}"])


def test_the_batch_is_per_replica_or_split_over_them():
    assert global_batch_size(TrainConfig(batch_size=8), replicas=2) == 16
    assert global_batch_size(TrainConfig(batch_size=8, batch_per="global"), replicas=2) == 8
    with pytest.raises(ValueError, match="at least one row each"):
        global_batch_size(TrainConfig(batch_size=2, batch_per="global"), replicas=4)


def test_no_replica_is_left_a_batch_without_rows():
    from vacnn_tf.training.distribute import eval_batch_size, train_steps

    assert train_steps(17, 8) == 3 and train_steps(17, 8, replicas=2) == 2  # the 1-row batch is left out
    assert train_steps(18, 8, replicas=2) == 3
    assert eval_batch_size(18, 8, replicas=2) == 8
    assert eval_batch_size(17, 8, replicas=2) == 9  # batches of 9 and 8: a row for each replica
    assert eval_batch_size(17, 8, replicas=1) == 8
    with pytest.raises(ValueError, match="1 validation row"):
        eval_batch_size(1, 8, replicas=2)


# Runs in a fresh interpreter: logical devices can only be made before TensorFlow initialises.
MIRRORED_FIT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from vacnn_tf.config import TrainConfig
    from vacnn_tf.datasets.pipeline import make_dataset
    from vacnn_tf.models.optimization import compile_model
    from vacnn_tf.training.distribute import global_batch_size, strategy_scope, train_steps, without_short_batch
    from vacnn_tf.training.fitting import fit_resumable

    rng = np.random.default_rng(0)
    all_images = rng.integers(0, 256, (17, 32, 32), dtype=np.uint8)
    all_labels = rng.integers(0, 7, 17)

    def fit(folder, rows=16, **train):
        images, labels = all_images[:rows], all_labels[:rows]
        config = TrainConfig(**train)  # steps_per_execution 4: one a call on two replicas (keras-team/keras#19246)
        keras.utils.set_random_seed(0)
        with strategy_scope(config) as strategy:
            x = keras.Input((32, 32, 1), name="logmel")
            h = keras.layers.Rescaling(1 / 255.0)(x)
            h = keras.layers.Conv2D(4, 3, activation="relu")(h)
            h = keras.layers.GroupNormalization(2)(h)
            h = keras.layers.GlobalAveragePooling2D()(h)
            model = keras.Model(x, keras.layers.Dense(7, activation="softmax")(h))
            replicas = strategy.num_replicas_in_sync
            batch = global_batch_size(config, replicas)
            compile_model(model, config, steps_per_epoch=train_steps(rows, batch, replicas))
            initial = [w.tolist() for w in model.get_weights()]
            train = lambda epoch: without_short_batch(
                make_dataset(images, labels, batch_size=batch, shuffle=True, seed=1, epoch=epoch), rows, batch, replicas)
            fit_resumable(model, train, None, Path(sys.argv[1]) / folder, epochs=1, patience=5, verbose=0)
        return replicas, batch, [w.tolist() for w in model.get_weights()], initial

    cases = {
        "default_8": dict(batch_size=8),
        "mirrored_global_8": dict(batch_size=8, strategy="mirrored", batch_per="global"),
        "mirrored_replica_4": dict(batch_size=4, strategy="mirrored"),
        # a 17th row: a last batch of one row would leave a replica none; it is left out of the epoch
        "mirrored_17_rows": dict(rows=17, batch_size=8, strategy="mirrored", batch_per="global"),
    }
    print(json.dumps({name: fit(name, **cases[name]) for name in sys.argv[2:]}))
''')


def _max_diff(a: list, b: list) -> float:
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _mirrored_fits(tmp_path: Path, *cases: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", MIRRORED_FIT, str(tmp_path), *cases], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_mirrored_fit_on_two_devices_takes_the_steps_one_device_takes(tmp_path: Path):
    runs = _mirrored_fits(tmp_path, "default_8", "mirrored_global_8", "mirrored_replica_4")
    # (replicas, rows a step): batch_size 8 split over two replicas; 4 on each replica, 8 a step
    assert [runs[k][:2] for k in runs] == [[1, 8], [2, 8], [2, 8]]
    one_device = runs["default_8"][2]
    assert _max_diff(one_device, runs["default_8"][3]) > 1e-3  # the two steps moved the weights
    # the mirrored fits take the two steps of 8 rows the one device took, rounding apart
    for name in ("mirrored_global_8", "mirrored_replica_4"):
        assert _max_diff(one_device, runs[name][2]) < 1e-5, name


@pytest.mark.slow
def test_a_last_batch_too_short_for_the_replicas_is_left_out(tmp_path: Path):
    """17 rows in batches of 8 on two replicas: without the 1-row batch, no replica runs on none."""
    run = _mirrored_fits(tmp_path, "mirrored_17_rows")["mirrored_17_rows"]
    assert run[:2] == [2, 8] and _max_diff(run[2], run[3]) > 1e-3


MIRRORED_FINETUNE = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import pandas as pd
    from vacnn_tf.config import RunConfig, replace
    from vacnn_tf.training.finetuning import finetune

    out = Path(sys.argv[1])
    config = replace(RunConfig(), **{
        "out": str(out), "data.cache_dir": str(out / "cache"), "data.workers": 1, "data.synth_per_class": 4,
        "train.verbose": 0, "train.epochs": 1, "train.xla_fusion": False, "train.val_fraction": 0.25, "protocol.folds": 2,
        "protocol.max_folds": 1, "model.use_bovw": False, "features.image_size": 64,
    })
    probs = {}
    for name, train in (("default", {}), ("mirrored", {"train.strategy": "mirrored", "train.batch_per": "global"})):
        run = finetune(replace(config, **train), "emodb", out / name, variant="pure")
        frame = pd.read_csv(Path(run.run_dir) / "fold_0" / "predictions.csv")
        probs[name] = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy().tolist()
        probs["rows"] = json.loads((Path(run.run_dir) / "fold_0" / "metrics.json").read_text())["train"]
    print(json.dumps(probs))
''')


@pytest.mark.slow
def test_a_mirrored_fine_tuning_run_predicts_as_the_default_one(tmp_path: Path):
    """A whole `pure` fold (the VACNN, one epoch) on two logical CPU devices, batch 8 split over them."""
    import numpy as np

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", MIRRORED_FINETUNE, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    probs = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.asarray(probs["default"]).shape[1] == 7
    assert probs["rows"] % 8 != 1  # no batch was left out: the same steps on one device and on two
    np.testing.assert_allclose(probs["mirrored"], probs["default"], atol=1e-4)
