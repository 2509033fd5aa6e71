"""Training under any Keras backend: a JAX training without TensorFlow writes a model TensorFlow loads and
predicts alike; the NumPy input pipeline's epoch keying; what only TensorFlow can do is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.config import TrainConfig
from vacnn_tf.datasets.pipeline import Masking
from vacnn_tf.datasets.pydataset import ArrayBatches
from vacnn_tf.training.fitting import EpochCounter

ROOT = Path(__file__).resolve().parents[1]

# One fold of the VACNN at 64x64 through the package's own stage (compile, resumable fit with
# augmentation and mixup, model selection, save, predict), under JAX and with TensorFlow made
# unimportable: what a machine with JAX and no TensorFlow runs.
JAX_FOLD = r"""
import json, sys
from pathlib import Path


class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTensorFlow())
import keras
import numpy as np
import pandas as pd

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.datasets.folds import Fold
from vacnn_tf.datasets.loading import CorpusData
from vacnn_tf.datasets.pipeline import make_dataset
from vacnn_tf.models.networks import build_model
from vacnn_tf.models.runtime import configure_runtime
from vacnn_tf.training.distribute import strategy_scope
from vacnn_tf.training.fitting import set_seed
from vacnn_tf.training.stage import train_and_test

out = Path(sys.argv[1])
images = np.load(out / "images.npy")
classes = ("a", "b", "c")
y = (np.arange(len(images)) % 3).astype(np.int32)
table = pd.DataFrame({"path": [f"/x/{i}.wav" for i in range(len(y))], "corpus": "x", "speaker": "s",
                      "label": [classes[i] for i in y]})
data = CorpusData("x", table, images, classes, y, [], [])
fold = Fold(0, np.arange(12), np.arange(12, 15), np.arange(15, 18), ("s",), ())
config = replace(RunConfig(), **{"features.image_size": 64, "train.verbose": 0, "train.batch_size": 6,
                                 "train.steps_per_execution": 1, "train.augment": True, "train.mixup": 0.2})
configure_runtime(config.train)
set_seed(config.seed)
with strategy_scope(config.train):
    model = build_model("vacnn", len(classes), config.model, 64)
    train_and_test(config, model, data, fold, None, out / "fold_0", epochs=1)
print(json.dumps({"backend": keras.backend.backend(), "dataset": type(make_dataset(images, y)).__name__}))
"""


def test_a_jax_training_without_tensorflow_writes_a_model_tensorflow_predicts_alike(tmp_path: Path):
    pytest.importorskip("jax")
    images = np.random.default_rng(0).integers(0, 256, (18, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", JAX_FOLD, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {"backend": "jax", "dataset": "ArrayBatches"}
    fold = tmp_path / "fold_0"
    history = pd.read_csv(fold / "history.csv")
    assert (fold / "DONE").is_file() and list(history["epoch"]) == [0] and np.isfinite(history["loss"]).all()

    import keras

    import vacnn_tf.models.layers  # noqa: F401 - registers the custom layers for loading
    from vacnn_tf.models.runtime import predict

    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(fold / "model.keras", compile=False, safe_mode=True)
    probs = predict(model, {"logmel": images[15:, :, :, None].astype(np.float32)})  # the fold's test part
    under_jax = pd.read_csv(fold / "predictions.csv")[["prob_a", "prob_b", "prob_c"]].to_numpy()
    np.testing.assert_allclose(probs, under_jax, atol=1e-4)


def test_numpy_batches_follow_the_epoch_counter_in_any_order():
    """fit_resumable's EpochCounter keys an ArrayBatches as a tf.Variable keys tf.data; a batch depends on
    (seed, epoch, its index), not on which batches were made before it."""
    images, labels = np.full((10, 16, 12), 200, np.uint8), np.arange(10)
    epoch = EpochCounter()
    ds = ArrayBatches(images, labels, batch_size=4, shuffle=True, seed=3, epoch=epoch,
                      masking=Masking(masks=1, freq_width=4, time_width=4), mixup=0.3, num_classes=10)
    assert len(ds) == ds.num_batches == 3
    forward = [ds[i] for i in range(3)]
    backward = [ds[i] for i in (2, 1, 0)][::-1]
    for (x, y), (x2, y2) in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(x["logmel"], x2["logmel"])
        np.testing.assert_array_equal(y, y2)
    assert forward[2][0]["logmel"].shape == (2, 16, 12, 1) and forward[2][1].dtype == np.float32
    epoch.assign(1)
    assert not np.array_equal(ds[0][1], forward[0][1])  # another epoch, other draws
    with pytest.raises(IndexError):
        ds[3]


def test_a_mirrored_strategy_is_refused_by_name_under_another_backend(monkeypatch: pytest.MonkeyPatch):
    from vacnn_tf.training import distribute

    monkeypatch.setattr(distribute, "keras_backend", lambda: "jax")
    assert distribute.make_strategy(TrainConfig()).num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="train.strategy.*KERAS_BACKEND=tensorflow"):
        distribute.make_strategy(TrainConfig(strategy="mirrored"))


def test_the_backend_is_read_as_keras_reads_it_without_importing_keras(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path):
    from vacnn_tf.config import keras_backend

    monkeypatch.delitem(sys.modules, "keras")  # as before the first import of Keras
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert keras_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert keras_backend() == "jax"
    assert "keras" not in sys.modules
