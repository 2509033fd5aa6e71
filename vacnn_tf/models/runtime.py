"""Process-wide runtime settings and a fast inference path, for training and serving on CPUs.

Nothing here changes the model's mathematics: thread counts decide how the same ops are
scheduled; ``xla_fusion`` lets XLA fuse the chains of element-wise and reduction ops between
convolutions (GroupNormalization, the attention modules) into single loops, the same sums in
another rounding order, while the convolutions stay oneDNN kernels; ``precision`` (float32 by
default) decides the dtype the same ops compute in; and :func:`predict` runs the same forward
pass as ``model.predict`` without its per-call set-up. What each setting measured on a 2-core
CPU is in docs/performance.md.

Typical use (the training stages do this before building a model)::

    from vacnn_tf.models.runtime import configure_runtime, predict
    configure_runtime(config.train)        # threads + precision policy, once per process
    model = build_model(...)               # layers take the precision policy set above
    probs = predict(model, test_ds)        # instead of model.predict(test_ds)
"""

from __future__ import annotations

import logging
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping, Union

import numpy as np

from vacnn_tf.config import PRECISIONS, TrainConfig, keras_backend

__all__ = [
    "PRECISIONS", "XLA_FUSION_FLAGS", "RuntimeSettings", "check_precision", "check_runtime_config", "configure_runtime", "predict",
    "predict_function", "quiet_dict_inputs",
]

log = logging.getLogger(__name__)

# TF_XLA_FLAGS for xla_fusion: let auto-clustering run on the CPU, and only over "fusible" ops
# (element-wise, reductions, reshapes) so that convolutions and matmuls keep their oneDNN
# kernels (XLA's own CPU convolutions measured slower: TrainConfig.jit_compile).
XLA_FUSION_FLAGS: tuple[str, ...] = (
    "--tf_xla_cpu_global_jit", "--tf_xla_ops_to_cluster=FUSIBLE", "--tf_xla_enable_lazy_compilation=false",
)

# Compiled forward passes, one per (model, jit) pair; weak so a dropped model frees its graph.
_FORWARD: "weakref.WeakKeyDictionary[Any, dict[bool, Callable[..., Any]]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RuntimeSettings:
    """What :func:`configure_runtime` left in force (the bench prints it beside its figures).

    Attributes:
        intra_op_threads: Threads inside one op; 0 means TensorFlow's default (one per core).
        inter_op_threads: Ops run concurrently; 0 means TensorFlow's default.
        precision: The Keras global dtype policy.
        xla_fusion: Whether auto-clustering of fusible ops was switched on (CPU-only processes).
        onednn: Whether TensorFlow's oneDNN kernels are on (``TF_ENABLE_ONEDNN_OPTS``).
    """

    intra_op_threads: int
    inter_op_threads: int
    precision: str
    xla_fusion: bool
    onednn: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_threads(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Config key '{key}' must be an integer >= 0 (0: TensorFlow's default). Received: {key}={value!r}")
    return value


def check_precision(precision: Any) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise naming the config key."""
    if precision not in PRECISIONS:
        raise ValueError(f"Config key 'train.precision' must be one of {PRECISIONS}. Received: train.precision={precision!r}")
    return str(precision)


def check_runtime_config(train_config: TrainConfig) -> None:
    """Check the runtime keys of ``train_config`` without importing TensorFlow (fail before work starts).

    Raises:
        ValueError: naming the offending key and value.
    """
    _check_threads(train_config.intra_op_threads, "train.intra_op_threads")
    _check_threads(train_config.inter_op_threads, "train.inter_op_threads")
    check_precision(train_config.precision)
    spe = train_config.steps_per_execution
    if isinstance(spe, bool) or not isinstance(spe, int) or spe < 1:
        raise ValueError(
            f"Config key 'train.steps_per_execution' must be a positive integer. Received: train.steps_per_execution={spe!r}"
        )


def _onednn_enabled() -> bool:
    """TensorFlow's own answer where it gives one, else the documented default (on for x86 Linux)."""
    import os

    try:
        from tensorflow.python.util import _pywrap_util_port  # private, but the same call TF's tests use

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")


def _enable_xla_fusion_flags() -> None:
    """Add :data:`XLA_FUSION_FLAGS` to ``TF_XLA_FLAGS``, keeping flags the user set."""
    import os

    present = os.environ.get("TF_XLA_FLAGS", "").split()
    names = {flag.split("=", 1)[0] for flag in present}
    present += [flag for flag in XLA_FUSION_FLAGS if flag.split("=", 1)[0] not in names]
    os.environ["TF_XLA_FLAGS"] = " ".join(present)


def _pinned_cores() -> int:
    """The cores of a process pinned to part of the machine (a ``--jobs`` worker, a cluster job), else 0."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return 0
    cores = len(os.sched_getaffinity(0))
    return cores if cores < (os.cpu_count() or cores) else 0


def configure_runtime(train_config: TrainConfig = TrainConfig()) -> RuntimeSettings:
    """Apply ``train_config``'s threads, XLA fusion and precision policy to this process.

    Under a Keras backend other than TensorFlow only the precision policy applies: threads and
    XLA fusion are TensorFlow's settings, and nothing of TensorFlow is imported.

    Call it first, before TensorFlow runs anything: thread counts can only be set before its
    first op (called later with other counts, it logs a warning and keeps those in force
    rather than fail a run over a scheduling detail), and TensorFlow reads the XLA flags once,
    when the first function runs (a later call leaves fusion off, silently and harmlessly).
    The precision policy applies to layers built *after* the call; the policy and the fusion
    switch are process-wide, so calling again with another config switches them.

    Args:
        train_config: ``intra_op_threads`` (0: one per core this process may run on),
            ``inter_op_threads`` (0: TensorFlow's default),
            ``xla_fusion`` (applied only where no GPU is visible: untested there) and
            ``precision`` (one of :data:`PRECISIONS`).

    Returns:
        The settings in force afterwards.

    Raises:
        ValueError: a negative thread count or an unknown precision (the message names the key).
    """
    intra = _check_threads(train_config.intra_op_threads, "train.intra_op_threads") or _pinned_cores()
    inter = _check_threads(train_config.inter_op_threads, "train.inter_op_threads")
    precision = check_precision(train_config.precision)
    if keras_backend() != "tensorflow":
        return _configure_other_backend(train_config, precision)
    if train_config.xla_fusion:
        # Before any TensorFlow call: listing devices or reading thread counts already makes
        # it read TF_XLA_FLAGS. The flags alone change nothing; set_jit below is the switch.
        _enable_xla_fusion_flags()

    import keras
    import tensorflow as tf

    threading = tf.config.threading
    for wanted, getter, setter, key in (
        (intra, threading.get_intra_op_parallelism_threads, threading.set_intra_op_parallelism_threads, "intra"),
        (inter, threading.get_inter_op_parallelism_threads, threading.set_inter_op_parallelism_threads, "inter"),
    ):
        if wanted == getter():
            continue
        try:
            setter(wanted)
        except RuntimeError:  # TensorFlow is initialised: the pools exist and cannot be resized
            log.warning(
                "train.%s_op_threads=%d not applied: TensorFlow already runs with %d (set it before the first op)",
                key, wanted, getter(),
            )
    fusion = bool(train_config.xla_fusion) and not tf.config.list_physical_devices("GPU")
    # Auto-clustering itself is a switch of the runtime context, so it can be turned off again;
    # without the flags above it clusters nothing on a CPU.
    tf.config.optimizer.set_jit("autoclustering" if fusion else False)
    keras.mixed_precision.set_global_policy(precision)
    return RuntimeSettings(
        intra_op_threads=threading.get_intra_op_parallelism_threads(),
        inter_op_threads=threading.get_inter_op_parallelism_threads(),
        precision=keras.mixed_precision.global_policy().name,
        xla_fusion=fusion,
        onednn=_onednn_enabled(),
    )


def _configure_other_backend(train_config: TrainConfig, precision: str) -> RuntimeSettings:
    """:func:`configure_runtime` under JAX or PyTorch: the precision policy alone.

    Thread counts and XLA fusion are TensorFlow's settings (JAX compiles every train step with
    XLA anyway, :func:`vacnn_tf.models.optimization.compile_model`); counts asked for explicitly
    are named in the log rather than silently dropped.
    """
    import keras

    if train_config.intra_op_threads or train_config.inter_op_threads:
        log.warning("train.intra_op_threads / train.inter_op_threads apply to TensorFlow only: not applied under %s",
                    keras.backend.backend())
    keras.mixed_precision.set_global_policy(precision)
    return RuntimeSettings(intra_op_threads=0, inter_op_threads=0, precision=keras.mixed_precision.global_policy().name,
                           xla_fusion=False, onednn=False)


@contextmanager
def quiet_dict_inputs() -> Iterator[None]:
    """Silence Keras's warning that a dict fed a single-input model.

    The datasets and the serving signature always pass ``{"logmel": ...[, "bovw": ...]}``; a
    single-input model takes the one entry and Keras warns about the structure. Harmless.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        yield


def _input_names(model: Any) -> list[str]:
    return [t.name.split(":")[0] for t in model.inputs]


def predict_function(model: Any, jit_compile: bool = False) -> Callable[[Mapping[str, Any]], Any]:
    """The model's inference forward pass as one ``tf.function``, traced once for any batch size.

    ``model.predict`` builds a data adapter and an iterator and runs callbacks on every call:
    tens of milliseconds that dominate a batch of one. This function is traced with an unknown
    batch dimension, so the last, smaller batch of a set does not retrace it either.

    Args:
        model: A Keras model (any of :mod:`vacnn_tf.models.networks`).
        jit_compile: Compile the forward pass with XLA (measured in docs/performance.md).

    Returns:
        ``forward(inputs)`` taking a dict ``{input name: tensor (batch, ...)}`` and returning the
        model's output tensor (softmax probabilities, float32).
    """
    import tensorflow as tf

    cached = _FORWARD.setdefault(model, {})
    if jit_compile in cached:
        return cached[jit_compile]
    specs = {
        name: tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name=name)
        for name, tensor in zip(_input_names(model), model.inputs)
    }

    # Call the model with the structure it was built with (a dict for the fine-tuned model, a
    # tensor for the VACNN and baselines): the same result, without Keras's structure warning.
    takes_dict = isinstance(model.input, dict)
    first = _input_names(model)[0]

    @tf.autograph.experimental.do_not_convert  # no Python control flow here to convert
    def forward(inputs: Mapping[str, Any]) -> Any:
        outputs = model(dict(inputs) if takes_dict else inputs[first], training=False)
        # float32 out whatever the precision policy, like the softmax of a training step.
        return tf.cast(outputs, tf.float32)

    compiled = tf.function(forward, input_signature=[specs], jit_compile=jit_compile)
    cached[jit_compile] = compiled
    return compiled


def _batch_predictor(model: Any) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """:func:`predict_function`'s counterpart under another Keras backend: ``predict_on_batch``, which that
    backend compiles once per batch shape (``model.jit_compile``)."""
    takes_dict = isinstance(model.input, dict)
    first = _input_names(model)[0]

    def forward(inputs: Mapping[str, Any]) -> np.ndarray:
        outputs = model.predict_on_batch(dict(inputs) if takes_dict else inputs[first])
        return np.asarray(outputs, dtype=np.float32)

    return forward


InputData = Union[np.ndarray, Mapping[str, np.ndarray], Any]


def _batches(model: Any, data: InputData, batch_size: int) -> Any:
    """Yield ``{input name: array}`` batches from arrays, a dict of arrays, a ``tf.data.Dataset`` or a
    ``keras.utils.PyDataset``."""
    import keras

    names = _input_names(model)
    if hasattr(data, "element_spec") or isinstance(data, keras.utils.PyDataset):  # already batched
        for element in data:
            features = element[0] if isinstance(element, tuple) else element
            if not isinstance(features, Mapping):
                features = {names[0]: features}
            yield {name: features[name] for name in names}  # a "bovw" column a model ignores is dropped
        return
    arrays = dict(data) if isinstance(data, Mapping) else {names[0]: data}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"predict: the model takes inputs {names}; missing {missing}. Received: {sorted(arrays)}")
    lengths = {len(arrays[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"predict: all inputs need the same number of rows. Received lengths {sorted(lengths)}")
    n = lengths.pop()
    for start in range(0, n, batch_size):
        yield {name: np.asarray(arrays[name][start:start + batch_size], dtype=np.float32) for name in names}


def predict(model: Any, data: InputData, batch_size: int = 32, jit_compile: bool = False) -> np.ndarray:
    """``model.predict`` through :func:`predict_function`: same outputs, less overhead per batch.

    Args:
        model: A Keras model.
        data: An array ``(N, 224, 224, 1)`` for single-input models, a dict of arrays keyed by
            input name (``{"logmel": ..., "bovw": ...}``), or a batched ``tf.data.Dataset`` (or
            ``keras.utils.PyDataset``) of ``features`` or ``(features, labels)`` as
            :func:`vacnn_tf.datasets.pipeline.make_dataset` makes.
        batch_size: Rows per forward pass for array input (a dataset keeps its own batches).
        jit_compile: Compile the forward pass with XLA.

    Returns:
        float32 ``(N, num_classes)``, rows in input order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    forward = predict_function(model, jit_compile) if keras_backend() == "tensorflow" else _batch_predictor(model)
    outputs = [np.asarray(forward(batch)) for batch in _batches(model, data, batch_size)]
    if not outputs:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    return np.concatenate(outputs, axis=0)
