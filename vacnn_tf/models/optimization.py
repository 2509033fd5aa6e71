"""Optimisation recipe of section 4.2: Adam on a step-decay schedule, the loss and accuracy
(which also take mixup's blended label rows), optional weight averaging."""

from __future__ import annotations

from typing import Any

import keras

from vacnn_tf.config import TrainConfig
from vacnn_tf.models.networks import check_number

__all__ = ["LabelCrossentropy", "compile_model", "label_accuracy", "learning_rate_schedule"]


def learning_rate_schedule(train_config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Step decay of section 4.2: ``learning_rate * decay_factor ** floor(epoch / decay_every)``.

    ``ExponentialDecay`` with ``staircase=True`` is exactly that step decay, counted in
    optimizer steps, and it is serializable with the model.

    Args:
        train_config: ``learning_rate``, ``decay_every`` (epochs), ``decay_factor``.
        steps_per_epoch: Optimizer steps per epoch, to turn epochs into steps.

    Returns:
        The schedule (callable on the optimizer step).
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"`steps_per_epoch` must be a positive integer. Received: steps_per_epoch={steps_per_epoch!r}")
    if train_config.decay_every < 1:
        raise ValueError(f"Config key 'train.decay_every' must be >= 1. Received: train.decay_every={train_config.decay_every}")
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=train_config.learning_rate,
        decay_steps=train_config.decay_every * steps_per_epoch,
        decay_rate=train_config.decay_factor,
        staircase=True,
    )


def _one_hot_like(y_true: Any, y_pred: Any) -> Any:
    """``y_true`` as probability rows: integer labels become one-hot, rows pass through."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1]:
        return keras.ops.cast(y_true, y_pred.dtype)
    labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
    return keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package="vacnn_tf")
def label_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Accuracy against integer labels or the larger share of a blended (mixup) label row."""
    target = keras.ops.argmax(_one_hot_like(y_true, y_pred), axis=-1)
    return keras.ops.cast(keras.ops.equal(target, keras.ops.argmax(y_pred, axis=-1)), "float32")


@keras.saving.register_keras_serializable(package="vacnn_tf")
class LabelCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels or on probability rows (mixup), chosen by the labels' shape.

    Keras traces the train and the validation step separately, so the mixup training batches
    (rows) and the validation batches (integer ids) each get the matching form.
    """

    def __init__(self, name: str = "label_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return keras.losses.categorical_crossentropy(_one_hot_like(y_true, y_pred), y_pred)


def compile_model(model: keras.Model, train_config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Compile with the recipe of section 4.2.

    Adam on :func:`learning_rate_schedule` (step decay), sparse categorical cross-entropy on
    integer labels, accuracy. With ``train.ema`` > 0 Adam keeps an exponential moving average
    of the weights (Polyak averaging, Keras's ``use_ema``) that validation and model selection
    use (:func:`vacnn_tf.training.fitting.fit_resumable`). With ``train.mixup`` > 0 the loss is
    :class:`LabelCrossentropy`, which also takes the blended label rows of mixup batches. The
    L2 weight decay lives in the layers' kernel regularizers (``ModelConfig.l2``), so it is
    part of the loss Keras minimises.

    Args:
        model: Any model of this module (softmax outputs).
        train_config: Learning rate, decay, ``jit_compile`` (XLA-compiled train step; always
            on under JAX) and
            ``steps_per_execution`` (train steps per compiled call; the same optimizer steps on
            the same batches, with less Python between them, docs/performance.md; one for a
            model built under a strategy of several replicas).
        steps_per_epoch: Optimizer steps per epoch.

    Returns:
        The same model, compiled.
    """
    spe = train_config.steps_per_execution
    if isinstance(spe, bool) or not isinstance(spe, int) or spe < 1:
        raise ValueError(
            f"Config key 'train.steps_per_execution' must be a positive integer. Received: train.steps_per_execution={spe!r}"
        )
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # Keras 3's loop of several steps per call fails on more than one replica ("You must feed
        # a value for placeholder tensor", keras-team/keras#19246); one a call takes the same steps
        spe = 1
    ema = check_number(train_config.ema, "train.ema", 1.0, " (0: off)")
    if check_number(train_config.mixup, "train.mixup", note=" (0: off)"):
        # Mixup batches carry blended one-hot rows, validation batches integer labels.
        loss, metric = LabelCrossentropy(), keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
    else:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(), keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate_schedule(train_config, steps_per_epoch),
        **({"use_ema": True, "ema_momentum": ema} if ema else {}),
    )
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[metric],
        # JAX without jit runs every op eagerly from Python, many times slower: it always compiles
        jit_compile=train_config.jit_compile or keras.backend.backend() == "jax",
        steps_per_execution=spe,
    )
    return model
