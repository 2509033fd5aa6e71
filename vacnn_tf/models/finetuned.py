"""The fine-tuned model of Figure 3: a pretrained network's feature map, fused with the BOVW
histogram through Luong attention (eqs. 4-8), and a new classifier.

Freezing is a name rule on the layers of :mod:`vacnn_tf.models.networks` ("va_block1" freezes
``stem_*`` and ``va_block1_*`` and their ancestors), so one pretrained model seeds every fold.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import layers

from vacnn_tf.config import STATE_POOLINGS, ModelConfig
from vacnn_tf.models import layers as vlayers
from vacnn_tf.models.networks import (
    ModelSpec,
    check_num_classes,
    check_number,
    classifier_head,
    l2_regularizer,
    spec_for_model,
)

__all__ = ["bovw_statistics", "build_finetuned", "frozen_layer_names"]

# Silent in the paper (section 3.2): activations of the two BOVW MLP layers. ReLU squeezes the
# histogram to 49 values; tanh makes h_s bounded like the RNN hidden states Luong attention was
# designed for, and puts both addends of eq. (8), tanh(O av_t) and h_s, on the same scale.
BOVW_SQUEEZE_ACTIVATION = "relu"
BOVW_HIDDEN_ACTIVATION = "tanh"


# the VACNN's stages, which ``model.freeze_through`` names; a baseline maps them in its ModelSpec
FREEZE_STAGES = ("stem", "va_block1", "va_block2", "va_block3", "head")


def _freeze_boundary(model: keras.Model, spec: ModelSpec, freeze_through: str) -> Optional[str]:
    """The last layer to freeze: a spec alias, an exact layer name, or the last ``PREFIX_*`` layer."""
    if freeze_through == "none":
        return None
    if freeze_through in spec.freeze_points:
        return spec.freeze_points[freeze_through]
    if spec.freeze_points and freeze_through in FREEZE_STAGES:
        # a baseline without this stage: its prefix would match a layer of another stage ("stem_rescale")
        raise ValueError(
            f"Config key 'model.freeze_through' names a stage {model.name!r} does not have: use 'none', one of "
            f"{sorted(spec.freeze_points)} or a layer name. Received: model.freeze_through={freeze_through!r}")
    names = [layer.name for layer in model.layers]
    if freeze_through in names:
        return freeze_through
    prefixed = [n for n in names if n.startswith(freeze_through + "_")]
    if prefixed:
        return prefixed[-1]
    raise ValueError(
        f"Config key 'model.freeze_through' names no layer or stage of {model.name!r}: use 'none', "
        f"one of {sorted(spec.freeze_points) or list(FREEZE_STAGES)}, "
        f"a layer name or a layer-name prefix. Received: model.freeze_through={freeze_through!r}"
    )


def bovw_statistics(histograms: Any, bovw_size: int) -> tuple[Any, Any]:
    """Per-word mean and variance of training histograms `(n, bovw_size)`, for ``bovw_norm``.

    Why: an L1 histogram's entries are about 1/k each, so through the paper's MLPs and eq. (8)
    the fused states start two orders of magnitude smaller than the VACNN features they
    multiply (docs/results.md); z-scored words give the attention a signal from the first step. The
    variance is floored at a hundredth of the median word's, so a word (nearly) unused in
    training cannot turn one test utterance's histogram into thousands of standard deviations.
    """
    import numpy as np

    h = np.asarray(histograms, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] < 2 or h.shape[1] != bovw_size:
        raise ValueError(f"BOVW statistics need at least two training histograms of shape (n, {bovw_size}). Received: shape={h.shape}")
    variance = h.var(axis=0)
    floor = max(float(np.median(variance)) / 100.0, 1e-12)
    return h.mean(axis=0).astype("float32"), np.maximum(variance, floor).astype("float32")


def build_finetuned(
    pretrained: keras.Model,
    num_classes: int,
    config: ModelConfig = ModelConfig(),
    use_bovw: Optional[bool] = None,
    bovw_size: int = 128,
    bovw_train: Optional[Any] = None,
) -> keras.Model:
    """The fine-tuned model of section 3.2 / Figure 3, on a copy of ``pretrained``.

    Shapes (VACNN, batch omitted): the pretrained ``head_relu`` map (14, 14, 288) ->
    ``finetune_pool`` 2x2 average (7, 7, 288) -> ``finetune_reshape`` O (49, 288). With BOVW:
    ``bovw`` (128,) -> ``bovw_squeeze`` Dense 49 -> ``bovw_expand`` (49, 1) -> ``bovw_hidden``
    Dense 288, h_s (49, 288) -> ``context_attention`` (eqs. 4-8) (49, 288) -> ``context_relu``.
    Then the classifier, "a fully connected layer and softmax" (section 3): ``finetune_flatten``
    (49 * 288,) -> ``finetune_fc`` (dense_units,) -> ``finetune_classifier`` softmax
    (``config.finetune_fc=False``: no ``finetune_fc``, the softmax classifier alone). Flattening
    keeps where in time and frequency each state lies; ``config.state_pooling="gap"`` averages
    the 49 states instead (``finetune_gap``, 288), 74k FC weights instead of 3.6M, which on
    EmoDB learned more slowly and tested lower (docs/method.md); ``"time_gap"`` averages each
    of the 7 frequency rows over its 7 time columns (``finetune_time_gap``, 7 x 288 = 2,016
    features, 516k FC weights), keeping the spectral position and dropping the temporal one.
    Without BOVW the attention and its ReLU are skipped and the states are averaged (``finetune_gap``) whatever
    ``state_pooling`` says: the fine-tuned VACNN, a new classifier on the pretrained features,
    with the pretraining model's own global average pooling; the same for the baselines, whose
    flattened maps would need 13-25M FC weights.

    Layers up to and including ``config.freeze_through`` (default "va_block1") and all their
    ancestors are frozen; the rest of the pretrained feature extractor is retrained ("retrain
    layers up to the last average pooling operation", section 4.2). Baselines: the feature
    layer of their :class:`ModelSpec` and its ``finetune_pool`` (1) are used, "va_block1"
    freezes their stem and first stage (``ModelSpec.freeze_points``). Table 3's "pure" model
    (no pretraining) is this on a freshly built VACNN with ``freeze_through="none"``.

    Args:
        pretrained: A model from :func:`build_model` (or loaded from its ``.keras`` file). It is
            copied (config + weights), never modified, so one pretrained model can seed every fold.
        num_classes: Number of target classes.
        config: ``freeze_through``, ``use_bovw``, ``state_pooling``, ``dense_units``, ``l2``,
            ``head_dropout`` (not the paper's; 0 by default adds no layer).
        use_bovw: Fuse the BOVW histogram (Figure 3); None takes ``config.use_bovw``.
        bovw_size: Length of the BOVW histogram (``BovwConfig.k``, paper: 128).
        bovw_train: The training part's histograms `(n, bovw_size)`; required with
            ``config.bovw_input="standardize"``, whose ``bovw_norm`` layer carries their
            per-word mean and variance (see :func:`bovw_statistics`).

    Returns:
        A ``keras.Model`` named ``<pretrained>_bovw`` or ``<pretrained>_finetuned`` with dict
        inputs ``{"logmel": (batch, 224, 224, 1)[, "bovw": (batch, bovw_size)]}`` and softmax
        output `(batch, num_classes)`.
    """
    _check_arguments(num_classes, config, bovw_size)
    use_bovw = config.use_bovw if use_bovw is None else bool(use_bovw)
    spec = spec_for_model(pretrained)
    base = _frozen_copy(pretrained, spec, config.freeze_through)

    x = base.get_layer(spec.feature_layer).output
    if spec.finetune_pool > 1:
        x = layers.AveragePooling2D(spec.finetune_pool, name="finetune_pool")(x)
    _, height, width, depth = x.shape
    x = layers.Reshape((height * width, depth), name="finetune_reshape")(x)  # O: (batch, 49, 288)
    inputs = {"logmel": base.inputs[0]}
    if use_bovw:
        inputs["bovw"], x = _bovw_fusion(x, bovw_size, config, bovw_train)
        x = _pool_states(x, (height, width), config.state_pooling)
    else:
        x = layers.GlobalAveragePooling1D(name="finetune_gap")(x)
    outputs = classifier_head(x, num_classes, "finetune", config, dropout=config.head_dropout, fc=config.finetune_fc)
    suffix = "bovw" if use_bovw else "finetuned"
    return keras.Model(inputs, outputs, name=f"{pretrained.name}_{suffix}")


def _check_arguments(num_classes: Any, config: ModelConfig, bovw_size: Any) -> None:
    check_num_classes(num_classes)
    if config.state_pooling not in STATE_POOLINGS:
        raise ValueError(
            f"Config key 'model.state_pooling' must be one of {STATE_POOLINGS}. Received: model.state_pooling={config.state_pooling!r}"
        )
    check_number(config.head_dropout, "model.head_dropout", 1.0)
    if isinstance(bovw_size, bool) or not isinstance(bovw_size, int) or bovw_size < 1:
        raise ValueError(f"`bovw_size` must be a positive integer. Received: bovw_size={bovw_size!r}")


def _frozen_copy(pretrained: keras.Model, spec: ModelSpec, freeze_through: str) -> keras.Model:
    """A copy of ``pretrained`` (config + weights) with its layers through ``freeze_through``
    and all their ancestors frozen."""
    # A copy: fine-tuning must not change the pretrained weights another fold starts from.
    base = keras.Model.from_config(pretrained.get_config())
    base.set_weights(pretrained.get_weights())
    boundary = _freeze_boundary(base, spec, freeze_through)
    if boundary is not None:
        frozen = keras.Model(base.inputs, base.get_layer(boundary).output)
        for layer in frozen.layers:
            layer.trainable = False
    return base


def _bovw_fusion(states: Any, bovw_size: int, config: ModelConfig, bovw_train: Optional[Any]) -> tuple[Any, Any]:
    """The BOVW branch of Figure 3 on the states O `(batch, 49, 288)`: the ``bovw`` input and
    the attended states ``context_relu`` `(batch, 49, 288)` (eqs. 4-8)."""
    _, n_states, depth = states.shape
    bovw = keras.Input((bovw_size,), dtype="float32", name="bovw")
    h = bovw
    if config.bovw_input == "standardize":
        if bovw_train is None:
            raise ValueError("model.bovw_input='standardize' needs the training histograms: pass `bovw_train`.")
        mean, variance = bovw_statistics(bovw_train, bovw_size)
        h = layers.Normalization(mean=mean, variance=variance, name="bovw_norm")(h)
    h = layers.Dense(
        n_states, activation=BOVW_SQUEEZE_ACTIVATION, kernel_regularizer=l2_regularizer(config), name="bovw_squeeze"
    )(h)
    h = layers.Reshape((n_states, 1), name="bovw_expand")(h)
    h = layers.Dense(
        depth, activation=BOVW_HIDDEN_ACTIVATION, kernel_regularizer=l2_regularizer(config), name="bovw_hidden"
    )(h)  # h_s: (batch, 49, 288)
    x = vlayers.LuongContextAttention(kernel_regularizer=l2_regularizer(config), gate_bias=config.attention_gate_bias,
                                      name="context_attention")([states, h])
    return bovw, layers.ReLU(name="context_relu")(x)


def _pool_states(states: Any, grid: tuple[int, int], state_pooling: str) -> Any:
    """The attended states `(batch, height * width, depth)` as the classifier's input vector,
    as ``model.state_pooling`` asks (see :func:`build_finetuned`)."""
    if state_pooling == "flatten":
        return layers.Flatten(name="finetune_flatten")(states)
    if state_pooling == "time_gap":
        # Rows of the map are mel bands, columns time: averaging each row over time keeps the
        # spectral profile (what per-band statistics classify EmoDB by) and drops where in the
        # utterance it occurred, which random-length speech does not fix.
        height, width = grid
        x = layers.Reshape((height, width, states.shape[-1]), name="finetune_grid")(states)
        x = layers.AveragePooling2D((1, width), name="finetune_time_gap")(x)
        return layers.Flatten(name="finetune_flatten")(x)
    return layers.GlobalAveragePooling1D(name="finetune_gap")(states)


def frozen_layer_names(model: keras.Model) -> list[str]:
    """Names of the layers with weights that are frozen (``trainable=False``), in order."""
    return [layer.name for layer in model.layers if layer.weights and not layer.trainable]
