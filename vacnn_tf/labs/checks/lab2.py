"""Lab 2 checks: the student's ``ChannelAttention``, ``SpatialAttention`` and ``VisualAttention``
against :mod:`vacnn_tf.models.layers`, with the reference's weights copied into the student's layers.

Feature maps are small (2 x 12 x 10 x 16), so the whole lab grades in about a second once
TensorFlow is loaded.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vacnn_tf.labs.grading import Check, Fixtures, StudentCode, fail

REFERENCES = ("vacnn_tf.models.layers.ChannelAttention", "vacnn_tf.models.layers.SpatialAttention",
              "vacnn_tf.models.layers.VisualAttention", "vacnn_tf.models.layers.CBAM")
SHAPE = (2, 12, 10, 16)
ATOL = 1e-5


class Lab2Fixtures(Fixtures):
    @cached_property
    def feature_map(self) -> np.ndarray:
        return np.random.default_rng(0).normal(size=SHAPE).astype("float32")

    @staticmethod
    def reference(name: str, *args: Any, channels: int = SHAPE[-1]) -> Any:
        """A built reference layer of :mod:`vacnn_tf.models.layers`, its weights drawn from a seeded generator."""
        from vacnn_tf.models import layers

        layer = getattr(layers, name)(*args)
        layer.build((None, *SHAPE[1:-1], channels))
        # biases start at zero; random ones make a missing bias visible
        layer.set_weights([np.random.default_rng(2 + i).normal(scale=0.3, size=w.shape).astype("float32")
                           for i, w in enumerate(layer.get_weights())])
        return layer


def fixtures(tmp: Path) -> Lab2Fixtures:
    return Lab2Fixtures(tmp)


def _numpy(value: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))


def _built(code: StudentCode, name: str, *args: Any, channels: int = SHAPE[-1]) -> Any:
    cls = code.get(name)
    with code.running():
        layer = cls(*args)
        layer.build((None, *SHAPE[1:-1], channels))
    return layer


def _weight_shapes(layer: Any) -> list[tuple]:
    return [tuple(int(d) for d in w.shape) for w in layer.weights]


def _copy_weights(code: StudentCode, student: Any, reference: Any, name: str) -> None:
    want, got = _weight_shapes(reference), _weight_shapes(student)
    if want != got:
        fail(f"{name}.build created weights of shapes {got}; expected {want} (the order of its docstring)")
    with code.running():
        student.set_weights(reference.get_weights())


def _check_weights(code: StudentCode, name: str, *args: Any) -> None:
    reference = Lab2Fixtures.reference(name, *args)
    student = _built(code, name, *args)
    want, got = _weight_shapes(reference), _weight_shapes(student)
    if want != got:
        fail(f"{name}.build created weights of shapes {got}; expected {want}")
    for bad_shape in ((None, 10, SHAPE[-1]), (None, 4, 4, None)):
        cls = code.get(name)
        if not code.raises(ValueError, lambda: cls(*args).build(bad_shape)):
            fail(f"{name}.build accepted input_shape={bad_shape}; expected a ValueError (not a (batch, H, W, C) map)")


def check_channel_weights(code: StudentCode, fx: Lab2Fixtures) -> None:
    _check_weights(code, "ChannelAttention", 4)
    cls = code.get("ChannelAttention")
    if not code.raises(ValueError, lambda: cls(32).build((None, 4, 4, SHAPE[-1]))):
        fail("ChannelAttention(reduction=32).build on 16 channels gave a hidden layer of 0 units; expected a ValueError")


def _channel_slips(reference: Any, v: np.ndarray) -> dict[str, np.ndarray]:
    """What common slips of eq. (1) compute, to name the slip."""
    w0, b0, w1, b1 = reference.get_weights()

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    def mlp(x: np.ndarray, relu: bool = True) -> np.ndarray:
        hidden = x @ w0 + b0
        return (np.maximum(hidden, 0) if relu else hidden) @ w1 + b1

    gap, gmp = v.mean(axis=(1, 2)), v.max(axis=(1, 2))
    return {
        "only the average-pooled descriptor is used; eq. (1) sums the MLP of GAP and of GMP": sigmoid(mlp(gap)),
        "only the max-pooled descriptor is used; eq. (1) sums the MLP of GAP and of GMP": sigmoid(mlp(gmp)),
        "the hidden ReLU is missing": sigmoid(mlp(gap, False) + mlp(gmp, False)),
        "the sigmoid is missing": mlp(gap) + mlp(gmp),
    }


def _spatial_slips(reference: Any, v: np.ndarray) -> dict[str, np.ndarray]:
    """What the swapped concatenation of eq. (2) computes: the reference with its kernel's channels swapped."""
    swapped = Lab2Fixtures.reference("SpatialAttention", 7)
    swapped.set_weights([reference.get_weights()[0][:, :, ::-1, :]])
    return {"max and mean are concatenated the other way round; eq. (2) takes [mean; max]": _numpy(swapped.attention(v))}


def _check_gate(code: StudentCode, fx: Lab2Fixtures, name: str, arg: int, equation: str, gate: str,
                shape: str, slips: Callable[[Any, np.ndarray], dict[str, np.ndarray]]) -> None:
    """The student's gate layer ``name`` with the reference's weights: its ``attention`` against
    the reference's (naming a known slip when one matches) and its call against ``V * gate``."""
    reference = fx.reference(name, arg)
    student = _built(code, name, arg)
    _copy_weights(code, student, reference, name)
    v = fx.feature_map
    with code.running():
        weights = _numpy(student.attention(v))
        refined = _numpy(student(v))
    want = _numpy(reference.attention(v))
    if weights.shape != want.shape:
        fail(f"{name}.attention returned shape {weights.shape}; expected {want.shape} {shape}")
    if not np.allclose(weights, want, atol=ATOL):
        slip = next((why for why, value in slips(reference, v).items()
                     if value.size == weights.size and np.allclose(weights.reshape(value.shape), value, atol=ATOL)), None)
        fail(f"{name}.attention differs from {equation} (largest difference {np.abs(weights - want).max():.3g})"
             + (f": {slip}" if slip else ""))
    if refined.shape != v.shape or not np.allclose(refined, v * want, atol=ATOL):
        fail(f"{name}(V) should be V * {gate}(V), of the input's shape")


def check_channel_values(code: StudentCode, fx: Lab2Fixtures) -> None:
    _check_gate(code, fx, "ChannelAttention", 4, "eq. (1)", "F_c", "(batch, 1, 1, C)", _channel_slips)


def check_spatial_weights(code: StudentCode, fx: Lab2Fixtures) -> None:
    _check_weights(code, "SpatialAttention", 7)


def check_spatial_values(code: StudentCode, fx: Lab2Fixtures) -> None:
    _check_gate(code, fx, "SpatialAttention", 7, "eq. (2)", "F_s",
                "(batch, H, W, 1): is the convolution's padding 'same'?", _spatial_slips)


def _student_va(code: StudentCode, fx: Lab2Fixtures, channels: int = SHAPE[-1]) -> tuple[Any, Any]:
    reference = fx.reference("VisualAttention", 4, 7, channels=channels)
    student = _built(code, "VisualAttention", 4, 7, channels=channels)
    for part, cls in (("channel", "ChannelAttention"), ("spatial", "SpatialAttention")):
        if not hasattr(student, part):
            fail(f"VisualAttention has no .{part} sublayer (a {cls}, made in __init__)")
        _copy_weights(code, getattr(student, part), getattr(reference, part), f"VisualAttention.{part}")
    return student, reference


def check_va_values(code: StudentCode, fx: Lab2Fixtures) -> None:
    student, reference = _student_va(code, fx)
    v = fx.feature_map
    with code.running():
        out = _numpy(student(v))
    want = _numpy(reference(v))
    if out.shape != v.shape:
        fail(f"VisualAttention returned shape {out.shape}; expected {v.shape}")
    if np.allclose(out, want, atol=ATOL):
        return
    fc, fs = _numpy(reference.channel.attention(v)), _numpy(reference.spatial.attention(v))
    refined = v * fc
    cbam = refined * _numpy(reference.spatial.attention(refined))
    slips = {
        "it chains the two attentions (spatial attention on V * F_c(V)): that is CBAM, the Table 3 ablation; "
        "VA computes both from the same V and sums the refined maps": cbam,
        "it multiplies the two gates (V * F_c * F_s); VA sums the two refined maps": v * fc * fs,
        "it uses the channel attention only": refined,
        "it uses the spatial attention only": v * fs,
    }
    slip = next((why for why, value in slips.items() if np.allclose(out, value, atol=ATOL)), None)
    fail(f"VisualAttention differs from V * F_c(V) + V * F_s(V) (largest difference {np.abs(out - want).max():.3g})"
         + (f": {slip}" if slip else ""))


def check_va_parameters(code: StudentCode, fx: Lab2Fixtures) -> None:
    for channels in (16, 32):
        student, reference = _student_va(code, fx, channels)
        if student.count_params() != reference.count_params():
            fail(f"VisualAttention on {channels} channels has {student.count_params()} parameters; "
                 f"vacnn_tf.models.layers.VisualAttention has {reference.count_params()}")


def check_functional(code: StudentCode, fx: Lab2Fixtures) -> None:
    import keras

    v = fx.feature_map
    for name, args in (("ChannelAttention", (4,)), ("SpatialAttention", (7,)), ("VisualAttention", (4, 7))):
        cls = code.get(name)
        with code.running():
            inputs = keras.Input(SHAPE[1:])
            layer = cls(*args)
            model = keras.Model(inputs, layer(inputs))
            direct, through_model = _numpy(layer(v)), _numpy(model(v))
        if tuple(model.output_shape) != (None, *SHAPE[1:]):
            fail(f"in a functional model {name} gives output shape {model.output_shape}; expected {(None, *SHAPE[1:])}")
        if not np.allclose(direct, through_model, atol=ATOL):
            fail(f"{name} gives other values inside a keras.Model than called directly")


def check_config(code: StudentCode, fx: Lab2Fixtures) -> None:
    for name, args in (("ChannelAttention", (2,)), ("SpatialAttention", (3,)), ("VisualAttention", (2, 3))):
        cls = code.get(name)
        with code.running():
            layer = cls(*args, name=f"my_{name.lower()}")
            clone = cls.from_config(layer.get_config())
            for each in (layer, clone):
                each.build((None, *SHAPE[1:]))
        if clone.name != layer.name:
            fail(f"{name}.from_config(get_config()) lost the layer's name ({clone.name!r}, not {layer.name!r}): "
                 "start from super().get_config()")
        if _weight_shapes(clone) != _weight_shapes(layer):
            fail(f"{name}{args}.from_config(get_config()) builds weights {_weight_shapes(clone)}, not "
                 f"{_weight_shapes(layer)}: get_config must return every constructor argument")


def check_gradients(code: StudentCode, fx: Lab2Fixtures) -> None:
    import tensorflow as tf

    student, _ = _student_va(code, fx)
    with code.running():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(student(fx.feature_map)))
        grads = tape.gradient(loss, student.trainable_weights)
    if len(student.trainable_weights) != 5:
        fail(f"VisualAttention has {len(student.trainable_weights)} trainable weights; expected 5 "
             "(four of the channel attention, one of the spatial attention)")
    dead = [w.path for w, g in zip(student.trainable_weights, grads) if g is None or not np.any(_numpy(g))]
    if dead:
        fail(f"these weights get no gradient, so they would never learn: {dead}")


CHECKS = [
    Check("ChannelAttention.build creates the four MLP weights and checks the input shape", check_channel_weights),
    Check("ChannelAttention computes eq. (1) and returns V * F_c(V)", check_channel_values),
    Check("SpatialAttention.build creates the (7, 7, 2, 1) kernel and checks the input shape", check_spatial_weights),
    Check("SpatialAttention computes eq. (2) and returns V * F_s(V)", check_spatial_values),
    Check("VisualAttention returns V * F_c(V) + V * F_s(V) (not CBAM's chain)", check_va_values),
    Check("VisualAttention has as many parameters as vacnn_tf.models.layers.VisualAttention", check_va_parameters),
    Check("the three layers work inside a functional keras.Model", check_functional),
    Check("from_config(get_config()) rebuilds each layer with its arguments", check_config),
    Check("every weight of VisualAttention receives a gradient", check_gradients),
]
