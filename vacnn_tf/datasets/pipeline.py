"""The tf.data input pipeline: in-memory uint8 log-mel images (+ BOVW histograms) -> batches.

Under a Keras backend other than TensorFlow the same batches come from
:mod:`vacnn_tf.datasets.pydataset`, a ``keras.utils.PyDataset`` in NumPy.

Images stay uint8 in memory (224 x 224 bytes each, a quarter of float32) and are cast to
float32 inside the pipeline; the models rescale 0-255 themselves. Elements are
``({"logmel": float32 (224, 224, 1), "bovw": float32 (128,)}, label)``, with ``"bovw"`` only
when histograms are given (models without the BOVW branch take the log-mel image alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class Masking:
    """SpecAugment-style masking (Park et al. 2019) of training images, not in the paper.

    Each image gets ``masks`` frequency bands (rows) and ``masks`` time spans (columns) set to
    0, the image's floor (``-top_db`` below its loudest bin), each of a width drawn uniformly
    from ``0 .. max width``. With ``time_shift`` > 0 each image is first shifted in time by a
    whole number of columns drawn uniformly from ``-time_shift .. time_shift``, the columns it
    leaves empty set to 0 (an utterance starting a little earlier or later is the same
    emotion). With ``warp`` > 0 each image is first stretched or squeezed along frequency and
    along time by two factors drawn uniformly from ``1 - warp .. 1 + warp`` (nearest
    neighbour, anchored at the lowest mel band and the first frame, what falls outside at 0):
    a higher or lower voice and faster or slower speech, in the spirit of vocal tract length
    perturbation (Jaitly and Hinton 2013). Masks, shifts and warps are drawn per image and
    per epoch from the shuffle seed.
    """

    masks: int = 2
    freq_width: int = 24
    time_width: int = 24
    time_shift: int = 0
    warp: float = 0.0
    low_freq_at_bottom: bool = True

    def __post_init__(self) -> None:
        for name in ("masks", "freq_width", "time_width", "time_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Masking.{name} must be an integer >= 0. Received: {name}={value!r}")
        if isinstance(self.warp, bool) or not isinstance(self.warp, (int, float)) or not 0.0 <= self.warp < 0.5:
            raise ValueError(f"Masking.warp must be a number in [0, 0.5). Received: warp={self.warp!r}")

    @classmethod
    def from_train_config(cls, train_config: Any, low_freq_at_bottom: bool = True) -> Optional["Masking"]:
        """The masking ``train.augment`` asks for, or None when it is off.

        ``low_freq_at_bottom`` (``features.low_freq_at_bottom``) tells the frequency warp which
        edge of the image is 0 Hz.
        """
        if not train_config.augment:
            return None
        return cls(train_config.augment_masks, train_config.augment_freq_width, train_config.augment_time_width,
                   train_config.augment_time_shift, float(train_config.augment_warp), bool(low_freq_at_bottom))


def _take(x: Any, index: Any, axis: int) -> Any:
    """Per image, gather rows (``axis=1``) or columns (``axis=2``) of ``x`` (B, H, W, 1) by ``index``
    (B, size); indices outside the image give 0, the floor."""
    import tensorflow as tf

    size = tf.shape(x)[axis]
    inside = (index >= 0) & (index < size)
    moved = tf.gather(x, tf.clip_by_value(index, 0, size - 1), axis=axis, batch_dims=1)
    inside = inside[:, :, None, None] if axis == 1 else inside[:, None, :, None]
    return tf.where(inside, moved, tf.zeros_like(moved))


def _warp_batch(x: Any, seed: Any, warp: float, low_freq_at_bottom: bool) -> Any:
    """Rescale each image of ``x`` (B, H, W, 1) along rows and columns by its own factors in ``1 +- warp``."""
    import tensorflow as tf

    batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    scale = tf.random.stateless_uniform([batch, 2], seed + tf.constant([0, 211], tf.int64), 1.0 - warp, 1.0 + warp)

    def source(size: Any, factor: Any) -> Any:
        # output index i (counted from the anchor) reads input index i / factor
        return tf.cast(tf.round(tf.cast(tf.range(size), tf.float32)[None, :] / factor[:, None]), tf.int32)

    rows = source(height, scale[:, 0])
    if low_freq_at_bottom:  # count rows from the bottom edge, the lowest band
        rows = tf.reverse(height - 1 - rows, axis=[1])
    return _take(_take(x, rows, axis=1), source(width, scale[:, 1]), axis=2)


def _shift_batch(x: Any, seed: Any, widest: int) -> Any:
    """Shift each image of ``x`` (B, H, W, 1) by its own number of columns in ``-widest .. widest``."""
    import tensorflow as tf

    batch, width = tf.shape(x)[0], tf.shape(x)[2]
    shift = tf.random.stateless_uniform([batch], seed + tf.constant([0, 101], tf.int64), -widest, widest + 1, dtype=tf.int32)
    return _take(x, tf.range(width)[None, :] - shift[:, None], axis=2)  # output column c reads input column c - shift


def _mask_batch(x: Any, seed: Any, masking: Masking) -> Any:
    """Zero ``masking.masks`` random row bands and column spans of each image of ``x`` (B, H, W, 1)."""
    import tensorflow as tf

    batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    keep = tf.ones_like(x, dtype=tf.bool)
    for k in range(masking.masks):
        for axis, size, widest in ((1, height, masking.freq_width), (2, width, masking.time_width)):
            if widest == 0:
                continue
            base = seed + tf.constant([0, 2 * k + axis], tf.int64) * 7919
            span = tf.random.stateless_uniform([batch], base, 0, widest + 1, dtype=tf.int32)
            span = tf.minimum(span, size)
            start = tf.cast(
                tf.random.stateless_uniform([batch], base + 1) * tf.cast(size - span + 1, tf.float32), tf.int32
            )
            positions = tf.range(size)[None, :]
            inside = (positions >= start[:, None]) & (positions < (start + span)[:, None])  # (B, size)
            inside = inside[:, :, None, None] if axis == 1 else inside[:, None, :, None]
            keep = keep & ~inside
    return tf.where(keep, x, tf.zeros_like(x))


def _mix_batch(feats: dict[str, Any], label: Any, seed: Any, alpha: float, num_classes: int) -> tuple[dict[str, Any], Any]:
    """Mixup of a batch with its mirror image; labels become blended one-hot rows."""
    import tensorflow as tf

    batch = tf.shape(label)[0]
    # Beta(a, a) as G1 / (G1 + G2) with G1, G2 ~ Gamma(a): stateless, so a function of the seed.
    g1 = tf.random.stateless_gamma([batch], seed + tf.constant([0, 313], tf.int64), alpha)
    g2 = tf.random.stateless_gamma([batch], seed + tf.constant([0, 317], tf.int64), alpha)
    weight = g1 / tf.maximum(g1 + g2, 1e-12)

    def blend(value: Any) -> Any:
        w = tf.reshape(weight, [-1] + [1] * (len(value.shape) - 1))
        return w * value + (1.0 - w) * tf.reverse(value, axis=[0])

    one_hot = tf.one_hot(label, num_classes, dtype=tf.float32)
    return {name: blend(value) for name, value in feats.items()}, blend(one_hot)


def batch_count(n: int, batch_size: int) -> int:
    """Batches in one pass over ``n`` elements."""
    return -(-n // batch_size)  # the last batch may be partial


def _epoch_batches(n: int, batch_size: int, shuffle: bool, seed: int, epoch: Any, per_batch_seeds: bool) -> Any:
    """One epoch of index batches (with a stateless seed per batch when asked), from (seed, epoch) alone."""
    import tensorflow as tf

    order = tf.range(n, dtype=tf.int64)
    key = tf.stack([tf.constant(seed, tf.int64), 2 * epoch])
    if shuffle and n > 1:
        order = tf.random.experimental.stateless_shuffle(order, seed=key)
    batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    if not per_batch_seeds:
        return batches
    seeds = tf.random.stateless_uniform([batch_count(n, batch_size), 2], key + tf.constant([0, 1], tf.int64), minval=None, maxval=None, dtype=tf.int64)
    return tf.data.Dataset.zip(batches, tf.data.Dataset.from_tensor_slices(seeds))


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    bovw: Optional[np.ndarray] = None,
    *,
    batch_size: int = 8,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    epoch: Any = None,
    masking: Optional[Masking] = None,
    mixup: float = 0.0,
    num_classes: Optional[int] = None,
    class_weights: Optional[np.ndarray] = None,
) -> Any:
    """Build a batched, prefetched ``tf.data.Dataset`` (under another Keras backend, the same batches as a
    ``keras.utils.PyDataset``: :class:`vacnn_tf.datasets.pydataset.ArrayBatches`).

    Args:
        images: uint8 array ``(N, H, W)``; cast to float32 ``(H, W, 1)`` per element.
        labels: Integer class ids ``(N,)``.
        bovw: Optional float32 histograms ``(N, k)``; when None the element has only ``"logmel"``.
        batch_size: Batch size (paper: 8). The last partial batch is kept.
        shuffle: Shuffle the whole set each epoch (training); evaluation sets keep their order.
        seed: Shuffle seed. Without ``epoch``, each pass over the set (each iterator) draws a
            new order and new augmentation seeds, the n-th pass's a function of (seed, n).
        repeat: Repeat forever (for benchmarks); Keras ``fit`` does not need it.
        epoch: Key the draws to an epoch index instead of to the pass count: an int, or an
            int64 ``tf.Variable`` read each time an iterator starts (``fit_resumable`` sets one
            at the start of every epoch; under another backend anything ``int()`` reads). Epoch e's order, masks and mixup weights are then a
            function of (seed, e) alone, so a fit resumed at epoch e sees what an unbroken one
            saw there; counting passes cannot give that, as Keras makes more than one iterator
            an epoch. Not with ``repeat``.
        masking: Augment every batch with :class:`Masking` (training sets only); masks are
            drawn from ``seed`` and differ from epoch to epoch.
        mixup: Mixup's alpha (Zhang et al. 2018; training sets only, not the paper's): each
            sample of a batch is blended with the batch's mirror image (first with last, ...)
            by a weight drawn from Beta(alpha, alpha), images and histograms alike, and the
            label becomes the same blend of the two one-hot vectors (float32 ``(B,
            num_classes)``; :func:`vacnn_tf.models.optimization.compile_model` with ``train.mixup`` takes
            both label forms). 0: off, integer labels.
        num_classes: Length of the one-hot labels; required with ``mixup``.
        class_weights: Optional float32 ``(num_classes,)`` loss weight of each class
            (:func:`balanced_class_weights`; training sets only): each element then carries a
            third part, its sample weight, which for a mixed sample is the same blend of its two
            classes' weights. None: ``(features, label)`` only.

    Returns:
        ``tf.data.Dataset`` of ``(features, label)`` (or ``(features, label, weight)``) with features a
        dict as described above, or under a Keras backend other than TensorFlow a
        ``keras.utils.PyDataset`` of the same batches.
    """
    from vacnn_tf.config import keras_backend

    if keras_backend() != "tensorflow":
        from vacnn_tf.datasets.pydataset import ArrayBatches

        return ArrayBatches(images, labels, bovw, batch_size=batch_size, shuffle=shuffle, seed=seed, repeat=repeat,
                            epoch=epoch, masking=masking, mixup=mixup, num_classes=num_classes,
                            class_weights=class_weights)
    images, labels, bovw = checked_inputs(images, labels, bovw, batch_size, mixup, num_classes, repeat, epoch)
    weights = checked_class_weights(class_weights, labels, num_classes)
    per_batch_seeds = masking is not None or bool(mixup)
    ds = _index_batches(len(images), batch_size, shuffle, seed, repeat, epoch, per_batch_seeds)
    return _map_batches(ds, _batch_gather(images, labels, bovw, masking, mixup, num_classes, weights),
                        stateful=epoch is not None)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, ``n / (classes x n_class)``, of the classes ``labels`` holds
    (1.0 for a class they lack: it has no sample to weight), as float32 ``(num_classes,)``."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def checked_class_weights(class_weights: Any, labels: np.ndarray, num_classes: Optional[int]) -> Optional[np.ndarray]:
    """``class_weights`` as float32, checked to be finite, non-negative and one per class (None stays None)."""
    if class_weights is None:
        return None
    weights = np.asarray(class_weights, dtype=np.float32)
    if (weights.ndim != 1 or (len(labels) and labels.max() >= len(weights))
            or (num_classes is not None and len(weights) != num_classes)):
        raise ValueError(f"class_weights must have one entry per class (num_classes={num_classes!r}, above every "
                         f"label). Received: shape={weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"class_weights must be finite and non-negative. Received: {weights.tolist()}")
    return weights


def _batch_gather(images: np.ndarray, labels: np.ndarray, bovw: Optional[np.ndarray], masking: Optional[Masking],
                  mixup: float, num_classes: Optional[int], class_weights: Optional[np.ndarray] = None) -> Any:
    """The map from a batch of indices (and its seed) to ``(features, label)``, as :func:`make_dataset` describes."""
    import tensorflow as tf

    # Index-based pipeline: the arrays are captured once and gathered per batch, which keeps
    # shuffling cheap (a permutation of ints, not of images) and the images uint8 until the map.
    image_t = tf.constant(images)
    label_t = tf.constant(labels)
    bovw_t = tf.constant(bovw) if bovw is not None else None
    weight_t = tf.constant(class_weights) if class_weights is not None else None

    def gather(idx: Any, batch_seed: Any = None) -> Any:
        x = tf.cast(tf.gather(image_t, idx), tf.float32)[..., None]
        if masking is not None:
            x = _augment_batch(x, batch_seed, masking)
        feats = {"logmel": x}
        if bovw_t is not None:
            feats["bovw"] = tf.gather(bovw_t, idx)
        label = tf.gather(label_t, idx)
        if mixup:
            feats, label = _mix_batch(feats, label, batch_seed, float(mixup), int(num_classes))
        if weight_t is None:
            return feats, label
        # a blended label's weight: the same blend of its two classes' weights
        return feats, label, tf.linalg.matvec(label, weight_t) if mixup else tf.gather(weight_t, label)

    return gather


def _map_batches(ds: Any, gather: Any, stateful: bool) -> Any:
    """``ds`` mapped by ``gather`` in order, prefetched; ``stateful``: the pipeline reads a variable (``epoch``)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    # A pipeline that reads a variable is stateful, and TensorFlow's op determinism (set_seed)
    # then runs its maps one call at a time anyway, rewriting them with an error-level log
    # line; asking for that directly keeps the log clean. Prefetch still overlaps the map
    # with training, and a batch's gather costs milliseconds against a step's hundreds.
    if stateful:
        ds = ds.map(gather)
    else:
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def checked_inputs(images: Any, labels: Any, bovw: Any, batch_size: int, mixup: Any, num_classes: Optional[int],
                   repeat: bool = False, epoch: Any = None) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """``make_dataset``'s arrays as uint8 images, int32 labels and float32 histograms, every argument checked
    (for the tf.data pipeline and :class:`~vacnn_tf.datasets.pydataset.ArrayBatches` alike)."""
    if epoch is not None and repeat:
        raise ValueError("epoch keys one epoch's draws; it cannot be combined with repeat.")
    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int32)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"images must be uint8 of shape (N, H, W). Received: dtype={images.dtype}, shape={images.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(f"labels must have one entry per image. Received: {len(labels)} labels, {len(images)} images")
    if bovw is not None:
        bovw = np.asarray(bovw, dtype=np.float32)
        if bovw.ndim != 2 or len(bovw) != len(images):
            raise ValueError(f"bovw must have shape (N, k) with N={len(images)}. Received: shape={bovw.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
    if isinstance(mixup, bool) or not isinstance(mixup, (int, float)) or mixup < 0:
        raise ValueError(f"mixup must be a number >= 0 (0: off). Received: mixup={mixup!r}")
    if mixup and (num_classes is None or num_classes < 1 or (len(labels) and labels.max() >= num_classes)):
        raise ValueError(f"mixup needs num_classes above every label. Received: num_classes={num_classes!r}")
    return images, labels, bovw


def _index_batches(n: int, batch_size: int, shuffle: bool, seed: int, repeat: bool, epoch: Any,
                   per_batch_seeds: bool) -> Any:
    """Batches of image indices (zipped with a stateless seed per batch when asked), keyed to
    ``epoch`` when given, else to the pass count (see :func:`make_dataset`)."""
    import tensorflow as tf

    if epoch is not None:
        # from_tensors(0).flat_map defers the read of `epoch` to the start of each iterator.
        ds = tf.data.Dataset.from_tensors(0).flat_map(
            lambda _: _epoch_batches(n, batch_size, shuffle, seed, tf.cast(tf.convert_to_tensor(epoch), tf.int64),
                                     per_batch_seeds))
        return ds.apply(tf.data.experimental.assert_cardinality(batch_count(n, batch_size)))  # Keras sizes its epochs by it
    ds = tf.data.Dataset.range(n)
    if shuffle and n > 1:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if per_batch_seeds:
        # One stateless seed per batch, new each pass and a function of `seed` only.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
    return ds


def _augment_batch(x: Any, seed: Any, masking: Masking) -> Any:
    """Warp, shift and mask a float32 batch ``(B, H, W, 1)`` as ``masking`` asks, all drawn from ``seed``."""
    if masking.warp:
        x = _warp_batch(x, seed, float(masking.warp), masking.low_freq_at_bottom)
    if masking.time_shift:
        x = _shift_batch(x, seed, masking.time_shift)
    return _mask_batch(x, seed, masking)


def pipeline_throughput(dataset: Any, batches: int = 200) -> float:
    """Samples per second the pipeline alone delivers (iterate ``batches`` batches, no model).

    Compare with training samples/s to check the pipeline is never the bottleneck.
    """
    count = 0
    it = iter(dataset)
    next(it)  # first batch pays tracing and buffer warm-up
    start = time.perf_counter()
    for _ in range(batches):
        try:
            feats, _ = next(it)
        except StopIteration:
            break
        count += int(feats["logmel"].shape[0])
    elapsed = time.perf_counter() - start
    return count / elapsed if elapsed > 0 else float("inf")
