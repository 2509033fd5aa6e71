"""A shared test helper for custom Keras layers (after keras' ``testing/test_case.py::run_layer_test``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import keras
import numpy as np

Shape = tuple[Optional[int], ...]


def random_inputs(input_shape: Shape | Sequence[Shape], seed: int = 0) -> Any:
    """Standard-normal float32 arrays of the given shape(s); a list of shapes gives a list."""
    rng = np.random.default_rng(seed)
    if input_shape and isinstance(input_shape[0], (tuple, list)):
        return [rng.standard_normal(s).astype("float32") for s in input_shape]
    return rng.standard_normal(input_shape).astype("float32")


def randomize_weights(layer: keras.layers.Layer, seed: int = 1, scale: float = 0.3) -> None:
    """Non-trivial weights (non-zero biases too), so checks do not pass by accident."""
    rng = np.random.default_rng(seed)
    layer.set_weights([scale * rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])


def run_layer_test(
    layer_cls: type,
    init_kwargs: dict[str, Any],
    input_shape: Shape | Sequence[Shape],
    expected_output_shape: Shape,
    expected_num_weights: int,
    tmp_path: Path,
) -> keras.layers.Layer:
    """Check one layer: output shape, weights, config round trip, copy and ``.keras`` reload.

    ``input_shape`` includes the batch size (a list of shapes for a multi-input layer). Checks:
    the eager output shape and ``compute_output_shape`` both equal ``expected_output_shape``;
    the layer has ``expected_num_weights`` named weights; ``get_config`` round-trips through
    ``from_config`` and the registered serialization name; a copy with the same weights gives
    the same output; a copy from a ``trainable=False`` config has only frozen weights (sublayers
    included); a model holding the layer saved as ``.keras`` and loaded with
    ``safe_mode=True`` gives the same output. Returns the built layer.
    """
    multi = bool(input_shape) and isinstance(input_shape[0], (tuple, list))
    inputs = random_inputs(input_shape)
    layer = layer_cls(**init_kwargs)
    output = np.asarray(layer(inputs))
    assert output.shape == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(expected_output_shape)
    assert len(layer.weights) == expected_num_weights
    assert len({w.path for w in layer.weights}) == expected_num_weights, "weight paths must be unique"
    randomize_weights(layer)
    output = np.asarray(layer(inputs))

    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"get_config() misses constructor argument {key!r}"
    copy = layer_cls.from_config(config)
    assert copy.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"vacnn_tf>{layer_cls.__name__}"
    copy(inputs)
    copy.set_weights(layer.get_weights())
    frozen = layer_cls.from_config({**config, "trainable": False})
    frozen(inputs)
    assert frozen.weights and not any(w.trainable for w in frozen.weights), "a frozen config must stay frozen"
    np.testing.assert_allclose(np.asarray(copy(inputs)), output, rtol=1e-6, atol=1e-6)

    shapes = input_shape if multi else [input_shape]
    symbolic = [keras.Input(tuple(s[1:]), batch_size=None) for s in shapes]
    model_inputs = symbolic if multi else symbolic[0]
    model = keras.Model(model_inputs, layer(model_inputs))
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        np.asarray(loaded(inputs)), output, rtol=1e-6, atol=1e-6
    )
    return layer
