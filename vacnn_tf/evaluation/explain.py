"""What a trained VACNN looks at: attention weights and Grad-CAM maps, as numbers.

* :func:`attention_maps` -- for each VA (or CBAM) module, the channel weights ``F_c`` of
  eq. (1) and the spatial weights ``F_s`` of eq. (2) that the module multiplies its input by.
* :func:`grad_cam` -- a Grad-CAM class-activation map (Selvaraju et al. 2017) on the last
  feature map (``head_relu``, 14x14x288 for the VACNN family).

No plotting here (matplotlib is not imported): :mod:`vacnn_tf.evaluation.attention_figures` draws these maps
(``vacnn figures attention``). TensorFlow and Keras are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["GRADCAM_LAYERS", "AttentionMap", "GradCam", "attention_layers", "attention_maps", "grad_cam", "input_names"]

# Layers of the VACNN family whose 14x14 output Grad-CAM reads, in order of preference: the
# VACNN's last feature map, then the feature layers of the baselines (models.MODELS).
GRADCAM_LAYERS: tuple[str, ...] = ("head_relu", "post_relu", "mixed10", "conv_pw_13_relu")


@dataclass
class AttentionMap:
    """What one attention module computed for one image.

    Attributes:
        layer: Layer name, e.g. ``va_block2_attention``.
        kind: ``VisualAttention`` (parallel, the paper's) or ``CBAM`` (sequential).
        channel: Channel weights ``F_c`` of eq. (1), shape `(C,)`, in (0, 1).
        spatial: Spatial weights ``F_s`` of eq. (2), shape `(H, W)`, in (0, 1). For CBAM they
            are computed on the channel-refined map, as CBAM applies them.
    """

    layer: str
    kind: str
    channel: np.ndarray
    spatial: np.ndarray


@dataclass
class GradCam:
    """A Grad-CAM class-activation map.

    Attributes:
        cam: `(H, W)` map in [0, 1] (14x14 for the VACNN), ReLU of the gradient-weighted sum of
            the feature maps, divided by its maximum.
        class_index: The class explained.
        probabilities: The model's softmax output `(num_classes,)`.
        layer: The feature layer used.
    """

    cam: np.ndarray
    class_index: int
    probabilities: np.ndarray
    layer: str


def _logmel_batch(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None, :, :, None]
    elif image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 1:
        raise ValueError(f"Expected a log-mel image (S, S) or (S, S, 1). Received: shape={image.shape}")
    return image.astype(np.float32)  # the models take pixel values 0-255 and rescale inside


def input_names(model: Any) -> list[str]:
    """The names of a model's inputs (``logmel``, and ``bovw`` for fine-tuned models with BOVW)."""
    return [t.name.split(":")[0] for t in model.inputs]


def _inputs(model: Any, image: np.ndarray, bovw: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    """The model's inputs as a dict keyed by input name, checking the BOVW histogram is there if needed."""
    feed = {"logmel": _logmel_batch(image)}
    if "bovw" in input_names(model):
        if bovw is None:
            raise ValueError(f"Model {model.name!r} takes a BOVW histogram: pass bovw= (the fold's vocabulary).")
        feed["bovw"] = np.asarray(bovw, dtype=np.float32).reshape(1, -1)
    return feed


def attention_layers(model: Any) -> list[Any]:
    """The VA / CBAM modules of a model, in network order (VACNN: ``va_block1..3_attention``)."""
    from vacnn_tf.models.layers import CBAM, VisualAttention

    return [layer for layer in model.layers if isinstance(layer, (VisualAttention, CBAM))]


def attention_maps(model: Any, image: np.ndarray) -> list[AttentionMap]:
    """Channel and spatial attention of every VA / CBAM module of ``model`` for one image.

    Uses the layers' own ``.attention`` helpers (:mod:`vacnn_tf.models.layers`) on the module's input,
    so the maps are the ones the forward pass multiplies by. Works for a VACNN and for a
    fine-tuned model built on one (only the ``logmel`` input is needed).

    Args:
        model: A Keras model of the VACNN family.
        image: uint8 or float log-mel image, `(224, 224)` (pixel values 0-255).

    Returns:
        One :class:`AttentionMap` per module; empty for models without attention (``vacnn-noatt``).
    """
    import keras
    from keras import ops

    from vacnn_tf.models.layers import CBAM

    modules = attention_layers(model)
    if not modules:
        return []
    logmel = model.inputs[input_names(model).index("logmel")]
    probe = keras.Model(logmel, [layer.input for layer in modules])
    features = probe(_logmel_batch(image), training=False)
    if not isinstance(features, (list, tuple)):
        features = [features]
    maps = []
    for layer, v in zip(modules, features):
        # Outside the layer's own call there is no autocast: under a mixed-precision policy the
        # bfloat16 features meet float32 weights, so compute the maps in the weights' dtype.
        v = ops.cast(v, layer.spatial.kernel.dtype)
        channel = layer.channel.attention(v)
        # CBAM applies spatial attention to the channel-refined map; VA to the block's input.
        spatial = layer.spatial.attention(v * channel if isinstance(layer, CBAM) else v)  # CBAM: V * F_c(V)
        maps.append(AttentionMap(layer.name, type(layer).__name__,
                                 np.asarray(ops.convert_to_numpy(channel))[0, 0, 0],
                                 np.asarray(ops.convert_to_numpy(spatial))[0, :, :, 0]))
    return maps


def _classifier(model: Any) -> Any:
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense) and getattr(layer.activation, "__name__", "") == "softmax":
            return layer
    raise ValueError(f"Model {model.name!r} has no Dense softmax classifier for Grad-CAM to explain.")


def grad_cam(
    model: Any,
    image: np.ndarray,
    bovw: Optional[np.ndarray] = None,
    class_index: Optional[int] = None,
    layer: Optional[str] = None,
) -> GradCam:
    """Grad-CAM (Selvaraju et al. 2017) on the last feature map of a VACNN-family model.

    ``cam = ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of the gradient of the
    class score with respect to feature map ``A_c``. The class score is the classifier's logit
    (its Dense layer recomputed without the softmax), as in the paper; the gradient of a
    softmax probability vanishes when the model is confident.

    Args:
        model: A VACNN, a fine-tuned VACNN (+ BOVW) or a baseline, with a softmax classifier.
        image: Log-mel image `(224, 224)`, pixel values 0-255.
        bovw: The BOVW histogram `(k,)`, required when the model takes one.
        class_index: The class to explain; default: the predicted one.
        layer: Feature layer; default: the first of :data:`GRADCAM_LAYERS` the model has
            (``head_relu``, 14x14x288, for the VACNN family).

    Returns:
        A :class:`GradCam`.
    """
    import keras
    import tensorflow as tf

    names = {l.name for l in model.layers}
    if layer is None:
        layer = next((n for n in GRADCAM_LAYERS if n in names), None)
        if layer is None:
            raise ValueError(f"Model {model.name!r} has none of the feature layers {list(GRADCAM_LAYERS)}; pass layer=.")
    elif layer not in names:
        raise ValueError(f"Model {model.name!r} has no layer {layer!r}. Received: layer={layer!r}")
    classifier = _classifier(model)
    probe = keras.Model(model.inputs, [model.get_layer(layer).output, classifier.input, model.outputs[0]])
    feed = _inputs(model, image, bovw)
    args = [tf.constant(feed[name]) for name in input_names(model)]
    with tf.GradientTape() as tape:
        features, before, probs = probe(args, training=False)  # a list, as probe.inputs is
        tape.watch(features)
        # The logit in float32: under a mixed-precision policy the classifier's input arrives
        # as bfloat16, and the classifier (kept in float32 by networks.classifier_head) casts it too.
        kernel = tf.cast(classifier.kernel, tf.float32)
        logits = tf.matmul(tf.cast(before, tf.float32), kernel)
        if classifier.use_bias:
            logits = logits + tf.cast(classifier.bias, tf.float32)
        chosen = int(tf.argmax(probs[0])) if class_index is None else int(class_index)
        if not 0 <= chosen < int(probs.shape[-1]):
            raise ValueError(f"class_index must lie in [0, {probs.shape[-1]}). Received: class_index={class_index}")
        score = logits[:, chosen]
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)  # cast after the gradient: the cast is not on the path
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam  # an all-zero map stays zero rather than dividing by 0
    return GradCam(cam.astype(np.float32), chosen, tf.cast(probs[0], tf.float32).numpy(), layer)
