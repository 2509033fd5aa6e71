"""Keras builders: the VACNN (Figure 2) and the baselines, from a registry of architectures.

Every model takes the input ``logmel``: float32 `(batch, S, S, 1)` with pixel values 0-255,
``S`` the config's ``features.image_size`` (the paper's 224, the default here), rescaled inside the model, so saved models accept the feature cache's images as they are.
Any model also accepts a dict keyed by input name (``{"logmel": x}``), the fine-tuned one
requires it (``{"logmel": x, "bovw": h}``).

Layer names say the stage they belong to, ``stem_conv``, ``va_block2_gn1``, ``head_fc``
(Keras 3 forbids ``/`` in layer names, so ``_`` separates stage and op), which makes
"freeze through VA block 1" a name rule (:func:`vacnn_tf.models.finetuned.build_finetuned`), not a
layer index.

The registry :data:`MODELS` maps each architecture name of ``ModelConfig.architecture`` to a
:class:`ModelSpec`; :func:`build_model` builds from it. Nothing is registered at import time
beyond the literal dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import keras
from keras import layers

from vacnn_tf.config import IMAGE_SIZE, INPUT_NORMS, MIN_IMAGE_SIZE, ModelConfig
from vacnn_tf.models import layers as vlayers

__all__ = [
    "INPUT_SHAPE", "MODELS", "ModelSpec", "build_baseline", "build_model", "build_vacnn", "check_image_size",
    "check_num_classes", "check_number", "classifier_head", "count_params", "image_size_of", "input_shape",
    "is_baseline", "l2_regularizer", "spec_for_model",
]

INPUT_SHAPE: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)
# keras.applications' own minimum input sides (include_top=False)
MIN_BASELINE_SIZE: dict[str, int] = {"resnet": 32, "inception": 75, "mobilenet": 32}
# VA blocks of Figure 2: (filters, stride of the first conv block) -> 56x56x32, 28x28x96, 14x14x288.
VA_BLOCKS: tuple[tuple[int, int], ...] = ((32, 1), (96, 2), (288, 2))
ATTENTIONS: tuple[str, ...] = ("va", "cbam", "none")
BASELINES: tuple[str, ...] = ("resnet", "inception", "mobilenet")


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    Attributes:
        key: Registry name, as in ``ModelConfig.architecture``.
        model_name: Name of the built ``keras.Model``; :func:`spec_for_model` finds a loaded
            model's spec by it.
        description: One line for summaries and docs.
        feature_layer: Layer whose output is the final feature map that fine-tuning builds on.
        finetune_pool: Average-pool size applied to that map before it becomes a sequence
            (VACNN: 2, 14x14 -> 7x7 = 49 states; baselines already end at 7x7 or 5x5).
        attention: VACNN attention module ("va", "cbam", "none"); None for baselines.
        freeze_points: Names of ``ModelConfig.freeze_through`` translated to this model's layer
            names; for baselines "va_block1" means "the stem and the first stage of blocks",
            the part the paper freezes in the VACNN.
    """

    key: str
    model_name: str
    description: str
    feature_layer: str
    finetune_pool: int
    attention: Optional[str] = None
    freeze_points: Mapping[str, str] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "vacnn": ModelSpec("vacnn", "vacnn", "VACNN with the paper's VA module (Figure 2)", "head_relu", 2, "va"),
    "vacnn-cbam": ModelSpec("vacnn-cbam", "vacnn_cbam", "VACNN with CBAM instead of VA (Table 3)", "head_relu", 2, "cbam"),
    "vacnn-noatt": ModelSpec("vacnn-noatt", "vacnn_noatt", "VACNN without attention modules", "head_relu", 2, "none"),
    "resnet": ModelSpec(
        "resnet", "resnet", "ResNet50V2 backbone (Table 10)", "post_relu", 1,
        freeze_points={"stem": "pool1_pool", "va_block1": "conv2_block3_out",
                       "va_block2": "conv3_block4_out", "va_block3": "conv4_block6_out"},
    ),
    "inception": ModelSpec(
        "inception", "inception", "InceptionV3 backbone (Table 10)", "mixed10", 1,
        # Inception's stem layers have auto-generated names, so only the module groups are named:
        # mixed0-2 (first grid size), mixed3-7 (second), mixed8-10 (third).
        freeze_points={"va_block1": "mixed2", "va_block2": "mixed7", "va_block3": "mixed10"},
    ),
    "mobilenet": ModelSpec(
        "mobilenet", "mobilenet", "MobileNet (v1) backbone (Table 10)", "conv_pw_13_relu", 1,
        freeze_points={"stem": "conv_pw_1_relu", "va_block1": "conv_pw_3_relu",
                       "va_block2": "conv_pw_5_relu", "va_block3": "conv_pw_11_relu"},
    ),
}


def check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
    return num_classes


def input_shape(image_size: int) -> tuple[int, int, int]:
    """``(image_size, image_size, 1)``, or raise if the VACNN's strides do not divide the size."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE or image_size % 32:
        raise ValueError(f"`image_size` must be a multiple of 32 of at least {MIN_IMAGE_SIZE}. Received: image_size={image_size!r}")
    return (image_size, image_size, 1)


def image_size_of(model: keras.Model) -> int:
    """The side of the square log-mel image a built or loaded model takes."""
    # by name: a fine-tuned model's inputs are a dict, and its first may be the histogram
    logmel = [t for t in model.inputs if t.name.split(":")[0] == "logmel"] or model.inputs[:1]
    return int(logmel[0].shape[1])


def check_image_size(model: keras.Model, config: Any, source: Any) -> None:
    """Raise if ``model`` (loaded from ``source``) takes another image size than ``config.features``."""
    size = image_size_of(model)
    if size != config.features.image_size:
        raise ValueError(f"{source}: this model takes {size}x{size} log-mel images, the config renders "
                         f"{config.features.image_size}x{config.features.image_size}: set features.image_size={size}. "
                         f"Received: features.image_size={config.features.image_size}")


def check_number(value: Any, key: str, upper: Optional[float] = None, note: str = "") -> float:
    """``value`` if it is a number in ``[0, upper)`` (``[0, inf)`` without ``upper``), else raise naming the config key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (upper is not None and value >= upper):
        bound = f"in [0, {upper:g})" if upper is not None else ">= 0"
        raise ValueError(f"Config key '{key}' must be a number {bound}{note}. Received: {key}={value!r}")
    return float(value)


def l2_regularizer(config: ModelConfig) -> Optional[keras.regularizers.Regularizer]:
    """The paper's L2 weight decay (section 4.2), on kernels only (not biases or GN)."""
    if config.l2 < 0:
        raise ValueError(f"Config key 'model.l2' must be >= 0. Received: model.l2={config.l2}")
    return keras.regularizers.L2(config.l2) if config.l2 > 0 else None


def _input_stem(inputs: Any, scale: float, offset: float, config: ModelConfig) -> Any:
    """``stem_rescale`` from pixel values 0-255, then with ``input_norm="band"`` ``stem_band_norm``."""
    if config.input_norm not in INPUT_NORMS:
        raise ValueError(f"Config key 'model.input_norm' must be one of {INPUT_NORMS}. Received: model.input_norm={config.input_norm!r}")
    x = layers.Rescaling(scale, offset=offset, name="stem_rescale")(inputs)
    if config.input_norm == "band":
        x = vlayers.BandStandardization(name="stem_band_norm")(x)
    return x


def adapt_input_norm(model: keras.Model, images: Any) -> bool:
    """Fit ``stem_band_norm`` (``model.input_norm="band"``) to training ``images`` (N, 224, 224) 0-255.

    Called on a freshly built model only: a fine-tuned model keeps the statistics of the data
    its frozen layers were pretrained on. Returns False when the model has no such layer.
    """
    try:
        norm = model.get_layer("stem_band_norm")
    except ValueError:
        return False
    rescale = model.get_layer("stem_rescale")
    norm.adapt(_through_stem_resize(model, images), scale=float(rescale.scale), offset=float(rescale.offset))
    return True


def _through_stem_resize(model: keras.Model, images: Any) -> Any:
    """``images`` as ``stem_band_norm`` receives them: a baseline at ``baseline_image_size`` resizes first."""
    import numpy as np

    try:
        resize = model.get_layer("stem_resize")
    except ValueError:
        return images
    chunks = []
    for start in range(0, len(images), 256):
        chunk = np.asarray(images[start:start + 256], dtype=np.float32)
        chunks.append(keras.ops.convert_to_numpy(resize(chunk.reshape(chunk.shape[:3] + (1,))))[..., 0])
    return np.concatenate(chunks)


def _conv_block(x: Any, filters: int, strides: int, prefix: str, suffix: str, config: ModelConfig) -> Any:
    """Conv 3x3 (unbiased: GN follows) -> GroupNormalization(G) -> ReLU (section 3.1)."""
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_regularizer=l2_regularizer(config), name=f"{prefix}_conv{suffix}",
    )(x)
    # epsilon 1e-5: PyTorch's GroupNorm default, as in the reference anchor (Keras' is 1e-3).
    x = layers.GroupNormalization(groups=config.groups, epsilon=1e-5, name=f"{prefix}_gn{suffix}")(x)
    return layers.ReLU(name=f"{prefix}_relu{suffix}")(x)


def _residual(x: Any, block_input: Any, filters: int, stride: int, prefix: str, config: ModelConfig) -> Any:
    """``model.residual``: ``x`` + the block's input, projected (1x1 conv, stride, GN) where its shape differs.

    No activation after the sum: the next block's first conv block normalises it, and after the
    last block ``head_gn`` + ``head_relu`` do, as in a pre-activation ResNet.
    """
    shortcut = block_input
    if stride != 1 or block_input.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, padding="same", use_bias=False,
                                 kernel_regularizer=l2_regularizer(config), name=f"{prefix}_shortcut_conv")(block_input)
        shortcut = layers.GroupNormalization(groups=config.groups, epsilon=1e-5, name=f"{prefix}_shortcut_gn")(shortcut)
    return layers.Add(name=f"{prefix}_add")([x, shortcut])


def classifier_head(x: Any, num_classes: int, prefix: str, config: ModelConfig, dropout: float = 0.0,
                    fc: bool = True) -> Any:
    """FC ``dense_units`` + ReLU -> softmax classifier (section 3.1: "FC 256 -> softmax").

    ``dropout`` > 0 puts a Dropout of that rate before each of the two dense layers
    (``<prefix>_dropout_fc``, ``<prefix>_dropout_classifier``); 0 adds no layer. ``fc=False``
    leaves the FC layer (and its dropout) out: the softmax classifier reads ``x`` itself.
    """
    if fc:
        if dropout:
            x = layers.Dropout(dropout, name=f"{prefix}_dropout_fc")(x)
        x = layers.Dense(config.dense_units, activation="relu", kernel_regularizer=l2_regularizer(config),
                         name=f"{prefix}_fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{prefix}_dropout_classifier")(x)
    # dtype float32: under a mixed precision policy (TrainConfig.precision) the softmax and the
    # loss stay in float32, Keras's rule for mixed precision; under float32 it changes nothing.
    return layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=l2_regularizer(config), name=f"{prefix}_classifier",
        dtype="float32",
    )(x)


def build_vacnn(
    num_classes: int,
    attention: str = "va",
    config: ModelConfig = ModelConfig(),
    name: Optional[str] = None,
    image_size: int = IMAGE_SIZE,
) -> keras.Model:
    """The VACNN of section 3.1 / Figure 2.

    Shapes (batch omitted): logmel (224, 224, 1) -> ``stem_conv`` stride 2 (112, 112, 32) ->
    ``stem_pool`` 3x3/2 (56, 56, 32) -> ``va_block1_*`` (56, 56, 32) -> ``va_block2_*``
    (28, 28, 96) -> ``va_block3_*`` (14, 14, 288) -> ``head_gn``, ``head_relu`` (14, 14, 288,
    the feature map fine-tuning uses) -> ``head_gap`` (288,) -> ``head_fc`` (256,) ->
    ``head_classifier`` (num_classes,). Each VA block is two conv blocks (the first strided in
    blocks 2 and 3) followed by ``va_blockN_attention``; with ``config.residual`` the block's input
    is added to that (``va_blockN_add``, through ``va_blockN_shortcut_conv`` / ``_gn`` in blocks 2 and 3).

    Args:
        num_classes: Number of output classes (pretraining: 7).
        attention: "va" (the paper's VA module), "cbam" (Table 3 ablation) or "none".
        config: Groups, reduction, spatial kernel, FC width and L2 factor.
        name: Model name; defaults to the registry's ("vacnn", "vacnn_cbam", "vacnn_noatt").
        image_size: Side of the input image (``features.image_size``); the shapes above scale
            with it (96: a 6x6 feature map, 3x3 states after the fine-tuning pool).

    Returns:
        A ``keras.Model`` mapping `(batch, image_size, image_size, 1)` pixel values 0-255 to softmax
        probabilities `(batch, num_classes)`. With 7 classes and "va" it has 1,250,133
        parameters, the PyTorch anchor's count.
    """
    check_num_classes(num_classes)
    if attention not in ATTENTIONS:
        raise ValueError(f"`attention` must be one of {ATTENTIONS}. Received: attention={attention!r}")
    for filters, _ in VA_BLOCKS:
        if filters % config.groups:
            raise ValueError(
                f"Config key 'model.groups' must divide every block width {[f for f, _ in VA_BLOCKS]}. "
                f"Received: model.groups={config.groups}"
            )
    if name is None:
        name = {"va": "vacnn", "cbam": "vacnn_cbam", "none": "vacnn_noatt"}[attention]

    inputs = keras.Input(input_shape(image_size), dtype="float32", name="logmel")
    x = _input_stem(inputs, 1.0 / 255.0, 0.0, config)
    x = _conv_block(x, VA_BLOCKS[0][0], 2, "stem", "", config)
    # "same": 112 -> 56 as in the paper (PyTorch pads 1 on both sides, Keras 0 before, 1 after).
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for index, (filters, stride) in enumerate(VA_BLOCKS, start=1):
        prefix = f"va_block{index}"
        block_input = x
        x = _conv_block(x, filters, stride, prefix, "1", config)
        x = _conv_block(x, filters, 1, prefix, "2", config)
        if attention != "none":
            module = vlayers.VisualAttention if attention == "va" else vlayers.CBAM
            x = module(
                reduction=config.reduction, kernel_size=config.spatial_kernel,
                kernel_regularizer=l2_regularizer(config), name=f"{prefix}_attention",
            )(x)
        if config.residual:
            x = _residual(x, block_input, filters, stride, prefix, config)
    x = layers.GroupNormalization(groups=config.groups, epsilon=1e-5, name="head_gn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    outputs = classifier_head(x, num_classes, "head", config)
    return keras.Model(inputs, outputs, name=name)


def _apply_l2(model: keras.Model, config: ModelConfig) -> None:
    """Give every conv/dense kernel of a keras.applications backbone the paper's L2.

    The applications take no regularizer argument; setting both the layer attribute (so
    ``get_config`` and a saved model carry it) and the variable's regularizer (so this
    instance's ``model.losses`` include it) is equivalent to having passed it.
    """
    regularizer = l2_regularizer(config)
    if regularizer is None:
        return
    for layer in model.layers:
        if getattr(layer, "kernel", None) is None:
            continue
        # Depthwise convolutions keep their kernel in `kernel` but name its regularizer differently.
        argument = "depthwise_regularizer" if hasattr(layer, "depthwise_regularizer") else "kernel_regularizer"
        if hasattr(layer, argument):
            setattr(layer, argument, regularizer)
            layer.kernel.regularizer = regularizer


def _set_bn_momentum(model: keras.Model, momentum: float) -> None:
    # keras.applications hard-code 0.99: at batch 8 with Adam at 1e-3 the moving statistics then
    # trail the weights by ~100 steps, and inference mode sees other activations than training.
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(momentum)


def build_baseline(name: str, num_classes: int, config: ModelConfig = ModelConfig(),
                   image_size: int = IMAGE_SIZE) -> keras.Model:
    """A Table 10 baseline: a keras.applications backbone (weights=None) + the VACNN's head.

    - "resnet": ResNet50V2. keras.applications has no ResNet18/34, so the smallest ResNet is 50
      layers deep; V2 (pre-activation, He et al. 2016b) is chosen because, trained from scratch
      as here, identity mappings train more stably than v1, and its ``post_bn``/``post_relu``
      end mirrors the VACNN's ``head_gn``/``head_relu``.
    - "inception": InceptionV3 (224x224 input is above its 75x75 minimum; 5x5x2048 at the end).
    - "mobilenet": MobileNet v1 (alpha 1.0), the paper's "MobileNet".

    Every BatchNormalization takes ``config.bn_momentum`` for its moving statistics (see
    :func:`_set_bn_momentum`: the applications' 0.99 lags the weights at batch 8).

    Input pixel values 0-255 are rescaled to [-1, 1] (``stem_rescale``), the range these
    applications' own ``preprocess_input`` produces. The backbone's layers are inlined (not a
    nested model) so freezing by layer name works. Head: ``head_gap`` -> ``head_fc``
    (``dense_units``, ReLU) -> ``head_classifier`` softmax, the VACNN's head without its GN.

    Args:
        name: "resnet", "inception" or "mobilenet".
        num_classes: Number of output classes.
        config: FC width and L2 factor (applied to every backbone kernel).
        image_size: Side of the input image; at least the application's minimum
            (:data:`MIN_BASELINE_SIZE`: InceptionV3 needs 75, so 96 with the VACNN's rule).
            With ``config.baseline_image_size`` set, ``stem_resize`` first resizes it to that side,
            to which the same minimum applies.

    Returns:
        A ``keras.Model`` named after ``name``, `(batch, image_size, image_size, 1)` -> `(batch, num_classes)`.
    """
    if name not in BASELINES:
        raise ValueError(f"`name` must be one of {BASELINES}. Received: name={name!r}")
    check_num_classes(num_classes)
    shape = input_shape(image_size)
    size = config.baseline_image_size or image_size
    key = "model.baseline_image_size" if config.baseline_image_size else "features.image_size"
    if size < MIN_BASELINE_SIZE[name]:
        raise ValueError(f"Config key '{key}' must be at least {MIN_BASELINE_SIZE[name]} for the "
                         f"{name!r} baseline (keras.applications' minimum). Received: {key}={size}")
    if size > image_size:
        raise ValueError(f"Config key 'model.baseline_image_size' must be at most the input's {image_size}. "
                         f"Received: model.baseline_image_size={size}")
    inputs = keras.Input(shape, dtype="float32", name="logmel")
    x = inputs
    if size != image_size:
        # inside the model, so the feature cache, the export and serving keep one image size for every row
        x = layers.Resizing(size, size, interpolation="bilinear", antialias=True, name="stem_resize")(x)
    x = _input_stem(x, 1.0 / 127.5, -1.0, config)
    application = {
        "resnet": keras.applications.ResNet50V2,
        "inception": keras.applications.InceptionV3,
        "mobilenet": keras.applications.MobileNet,
    }[name]
    backbone = application(include_top=False, weights=None, input_tensor=x, input_shape=input_shape(size))
    _set_bn_momentum(backbone, config.bn_momentum)
    x = layers.GlobalAveragePooling2D(name="head_gap")(backbone.output)
    outputs = classifier_head(x, num_classes, "head", config)
    model = keras.Model(inputs, outputs, name=MODELS[name].model_name)
    _apply_l2(model, config)
    return model


def build_model(architecture: str, num_classes: int, config: ModelConfig = ModelConfig(),
                image_size: int = IMAGE_SIZE) -> keras.Model:
    """Build a registered architecture (see :data:`MODELS`) from scratch.

    Args:
        architecture: A key of :data:`MODELS`, e.g. ``config.architecture``.
        num_classes: Number of output classes.
        config: Model settings.
        image_size: Side of the input image (``features.image_size``).

    Returns:
        The freshly initialised ``keras.Model``.
    """
    if architecture not in MODELS:
        raise ValueError(
            f"Config key 'model.architecture' must be one of {sorted(MODELS)}. "
            f"Received: architecture={architecture!r}"
        )
    spec = MODELS[architecture]
    if spec.attention is not None:
        return build_vacnn(num_classes, attention=spec.attention, config=config, name=spec.model_name,
                           image_size=image_size)
    return build_baseline(architecture, num_classes, config, image_size)


def is_baseline(architecture: str) -> bool:
    """True for a registered keras.applications backbone (Table 10's baselines), False for a VACNN."""
    return architecture in MODELS and MODELS[architecture].attention is None


def spec_for_model(model: keras.Model) -> ModelSpec:
    """The :class:`ModelSpec` a built or loaded model came from (by model name, else by layers)."""
    for spec in MODELS.values():
        if spec.model_name == model.name:
            return spec
    names = {layer.name for layer in model.layers}
    if "head_relu" in names and any(n.startswith("va_block") for n in names):
        return MODELS["vacnn"]  # a VACNN under a custom name
    raise ValueError(
        f"Cannot tell which registered architecture model {model.name!r} is; expected one of the "
        f"model names {[s.model_name for s in MODELS.values()]}. Received: model.name={model.name!r}"
    )


def count_params(model: keras.Model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts (BN moving statistics are non-trainable)."""
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    non_trainable = sum(_size(w.shape) for w in model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def _size(shape: tuple) -> int:
    size = 1
    for dim in shape:
        size *= int(dim)
    return size
