"""The PyTorch anchor's protocol (the script ANCHOR in docs/performance.md), step for step, on our VACNN.

Usage (from the repository root; KEY=VALUE arguments are config overrides)::

    .venv/bin/python benchmarks/keras_vacnn_speed.py
    .venv/bin/python benchmarks/keras_vacnn_speed.py train.precision=mixed_bfloat16

Same sizes as the anchor: 96 random 224x224x1 images, one warm-up epoch then one timed epoch
of training at batch 8 (both in one ``fit``, timed by a callback: a ``fit`` that stops after one
epoch can spend up to a second shutting its iterator down, docs/performance.md), inference at batch 32 after one warm-up batch, then the
mean of 10 single-image calls (as served: without XLA fusion; one untimed call traces it);
printed in the anchor's format, so the two outputs read side by side. Training goes through ``compile_model`` + ``fit`` and inference through
``runtime.predict_function`` with the project's default runtime settings (``TrainConfig``),
so this measures what ``vacnn pretrain`` and ``vacnn finetune`` run. ``vacnn bench`` gives
the fuller picture (tf.data, features, SavedModel latency); this script exists so that a
whole-process comparison with the anchor (e.g. ``/usr/bin/time -v`` on both) compares the
same work.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vacnn_tf.config import load_config  # noqa: E402
from vacnn_tf.models.runtime import configure_runtime  # noqa: E402


def main(overrides: list[str]) -> None:
    config = load_config(None, overrides)
    configure_runtime(config.train)
    import numpy as np
    import tensorflow as tf

    from vacnn_tf.bench import epoch_timer
    from vacnn_tf.models.networks import build_vacnn, count_params
    from vacnn_tf.models.optimization import compile_model
    from vacnn_tf.models.runtime import predict_function

    model = build_vacnn(7, config=config.model)
    print("params", count_params(model)["total"])
    n, bs = 96, 8
    rng = np.random.default_rng(0)
    x = rng.random((n, 224, 224, 1), dtype=np.float32) * 255.0
    y = rng.integers(0, 7, n).astype(np.int32)
    compile_model(model, config.train, steps_per_epoch=n // bs)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(bs).prefetch(tf.data.AUTOTUNE)
    timer = epoch_timer()  # the anchor's two epochs, here two epochs of one fit; the second is timed
    model.fit(ds, epochs=2, verbose=0, callbacks=[timer])
    print(f"keras train bs=8: {n / timer.walls[1]:.1f} samples/s")
    forward = predict_function(model)
    xt = tf.constant(x)
    forward({"logmel": xt[:32]}).numpy()
    start = time.time()
    for i in range(0, n, 32):
        forward({"logmel": xt[i:i + 32]}).numpy()
    print(f"keras infer bs=32: {n / (time.time() - start):.1f} samples/s")
    # Latency as `vacnn predict` serves it: a forward pass without the XLA fusion of training
    # (it costs a few ms at batch 1, docs/performance.md), created after switching it off.
    tf.config.optimizer.set_jit(False)
    serve = tf.function(lambda inputs: model(inputs["logmel"], training=False))
    one = {"logmel": xt[:1]}
    serve(one).numpy()  # traces the function (eager PyTorch has nothing to trace)
    start = time.time()
    for _ in range(10):
        serve(one).numpy()
    print(f"keras infer bs=1 latency: {(time.time() - start) / 10 * 1000:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
