"""One training on several devices: ``train.strategy`` and ``train.batch_per``.

``train.strategy: mirrored`` trains through ``tf.distribute.MirroredStrategy``: a copy of the
model on every GPU (on every logical CPU device where there is no GPU), each replica takes its
slice of the batch, and their gradients are combined (each replica's loss scaled by its share of
the batch, then summed) into one optimizer step: the step one device would take on the whole
batch, up to rounding.
``train.batch_per`` says what ``train.batch_size`` counts: ``replica`` (the paper's 8 on every
device; the global batch grows with the devices) or ``global`` (one batch of ``batch_size``
split over them). The model must be built and compiled inside :func:`strategy_scope`::

    with strategy_scope(config.train) as strategy:
        model = build_model(...)
        batch = global_batch_size(config.train, strategy.num_replicas_in_sync)
        compile_model(model, config.train, steps_per_epoch=ceil(n / batch))
        model.fit(dataset_batched_by(batch), ...)

No replica may get a batch without rows: TensorFlow's CPU convolutions fail on one (a final batch
of 1 row on 2 replicas). An epoch's last training batch with fewer rows than replicas is left out
of that epoch (:func:`without_short_batch`; at most replicas - 1 rows, others each epoch as the
order is shuffled), and validation batches are sized so that every one has a row for each
replica (:func:`eval_batch_size`; means over rows do not depend on the batch size).

Under a Keras backend other than TensorFlow there is one replica (:class:`OneDevice`): the
backend places the model, and ``mirrored`` is refused by name.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

from vacnn_tf.config import TrainConfig, keras_backend

__all__ = ["OneDevice", "eval_batch_size", "global_batch_size", "make_strategy", "strategy_scope", "train_steps",
           "without_short_batch"]


class OneDevice:
    """What stands for a strategy under a Keras backend other than TensorFlow: one replica, no scope of its own."""

    num_replicas_in_sync = 1

    def scope(self) -> Any:
        return nullcontext()


def make_strategy(train_config: TrainConfig) -> Any:
    """The ``tf.distribute.Strategy`` that ``train.strategy`` names.

    ``default`` is TensorFlow's default strategy (one device, its own placement); ``mirrored``
    mirrors over every logical GPU, else over every logical CPU device (one replica on a plain
    CPU machine; tests make two with ``tf.config.set_logical_device_configuration``). Under
    another Keras backend ``default`` is :class:`OneDevice` (the backend places the model).

    Raises:
        ValueError: ``mirrored`` under a backend other than TensorFlow.
    """
    backend = keras_backend()
    if backend != "tensorflow":
        if train_config.strategy != "default":
            raise ValueError(f"Config key 'train.strategy' {train_config.strategy!r} is tf.distribute, which needs "
                             f"KERAS_BACKEND=tensorflow; under {backend} training takes one device (train.strategy="
                             f"default). Received: train.strategy={train_config.strategy!r}, KERAS_BACKEND={backend}")
        return OneDevice()
    import tensorflow as tf

    if train_config.strategy == "default":  # the values were checked when the config was built
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


@contextmanager
def strategy_scope(train_config: TrainConfig) -> Iterator[Any]:
    """Build and compile models inside this block; yields the strategy (``num_replicas_in_sync``)."""
    strategy = make_strategy(train_config)
    with strategy.scope():
        yield strategy


def global_batch_size(train_config: TrainConfig, replicas: int) -> int:
    """Rows per step over all replicas: ``batch_size`` x ``replicas`` per replica, else ``batch_size``.

    Raises:
        ValueError: ``train.batch_per: global`` with fewer rows than replicas (some would get none).
    """
    if train_config.batch_per == "replica":
        return train_config.batch_size * replicas
    if train_config.batch_size < replicas:
        raise ValueError(f"train.batch_per=global splits train.batch_size over {replicas} replicas; it needs at "
                         f"least one row each. Received: train.batch_size={train_config.batch_size}")
    return train_config.batch_size


def _short_tail(rows: int, batch: int, replicas: int) -> bool:
    return replicas > 1 and 0 < rows % batch < replicas


def train_steps(rows: int, batch: int, replicas: int = 1) -> int:
    """Optimizer steps in an epoch of ``rows`` in batches of ``batch`` (a too short last one left out)."""
    steps = -(-rows // batch)
    return steps - 1 if _short_tail(rows, batch, replicas) else steps


def without_short_batch(dataset: Any, rows: int, batch: int, replicas: int) -> Any:
    """``dataset`` (batches of ``(features, labels)``) less a last batch with fewer rows than replicas."""
    if not _short_tail(rows, batch, replicas):
        return dataset
    import tensorflow as tf

    def enough(features: Any, *rest: Any) -> Any:
        return tf.shape(tf.nest.flatten(features)[0])[0] >= replicas

    kept = dataset.filter(enough)
    return kept.apply(tf.data.experimental.assert_cardinality(train_steps(rows, batch, replicas)))


def eval_batch_size(rows: int, batch: int, replicas: int) -> int:
    """A batch size near ``batch`` whose batches of ``rows`` each hold a row for every replica.

    Raises:
        ValueError: fewer rows than replicas.
    """
    if not _short_tail(rows, batch, replicas):
        return batch
    if rows < replicas:
        raise ValueError(f"{rows} validation row(s) cannot be split over {replicas} replicas: use fewer devices "
                         f"or a larger train.val_fraction. Received: {rows} rows, {replicas} replicas")
    return next(b for b in range(batch + 1, rows + 1) if not _short_tail(rows, b, replicas))
