"""The input pipeline for Keras backends other than TensorFlow: :func:`~vacnn_tf.datasets.pipeline.make_dataset`'s
batches as a ``keras.utils.PyDataset`` computed in NumPy.

Under JAX or PyTorch ``make_dataset`` returns an :class:`ArrayBatches` over the same in-memory
arrays: the same elements and batches, the same per-epoch shuffling, and the same augmentations
(:class:`~vacnn_tf.datasets.pipeline.Masking`'s warp, time shift and masks, then mixup) drawn from
the same distributions. The draws come from NumPy generators keyed to (seed, epoch, batch), so a
run is reproducible and a resumed fit sees what an unbroken one saw; they are not the numbers the
tf.data pipeline draws.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Optional

import keras
import numpy as np

from vacnn_tf.datasets.pipeline import Masking, batch_count, checked_class_weights, checked_inputs

__all__ = ["ArrayBatches"]


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    # SeedSequence takes non-negative words only; a negative seed maps to one of them
    return np.random.default_rng((int(seed) % (1 << 63), int(epoch), int(stream)))


def _gather(x: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """Per image of ``x`` (B, H, W, 1), rows (``axis=1``) or columns (``axis=2``) at ``index`` (B, size);
    an index off the image reads 0, the floor."""
    size = x.shape[axis]
    shape = (len(index), -1, 1, 1) if axis == 1 else (len(index), 1, -1, 1)
    picked = np.take_along_axis(x, np.clip(index, 0, size - 1).reshape(shape), axis=axis)
    return np.where(((index >= 0) & (index < size)).reshape(shape), picked, 0.0)


def _warped(x: np.ndarray, rng: np.random.Generator, warp: float, low_freq_at_bottom: bool) -> np.ndarray:
    batch, height, width = x.shape[:3]
    factors = rng.uniform(1.0 - warp, 1.0 + warp, (batch, 2))
    # output index i, counted from the anchor edge, reads input index i / factor
    rows = np.rint(np.arange(height)[None, :] / factors[:, :1]).astype(np.int64)
    cols = np.rint(np.arange(width)[None, :] / factors[:, 1:]).astype(np.int64)
    if low_freq_at_bottom:
        rows = (height - 1 - rows)[:, ::-1]
    return _gather(_gather(x, rows, 1), cols, 2)


def _shifted(x: np.ndarray, rng: np.random.Generator, widest: int) -> np.ndarray:
    shift = rng.integers(-widest, widest + 1, len(x))
    return _gather(x, np.arange(x.shape[2])[None, :] - shift[:, None], 2)


def _masked(x: np.ndarray, rng: np.random.Generator, masking: Masking) -> np.ndarray:
    keep = np.ones(x.shape[:3], dtype=bool)
    for _ in range(masking.masks):
        for axis, widest in ((1, masking.freq_width), (2, masking.time_width)):
            if widest == 0:
                continue
            size = x.shape[axis]
            span = np.minimum(rng.integers(0, widest + 1, len(x)), size)
            start = (rng.random(len(x)) * (size - span + 1)).astype(np.int64)
            at = np.arange(size)[None, :]
            hit = (at >= start[:, None]) & (at < (start + span)[:, None])
            keep &= ~(hit[:, :, None] if axis == 1 else hit[:, None, :])
    return np.where(keep[..., None], x, 0.0)


def augmented(x: np.ndarray, rng: np.random.Generator, masking: Masking) -> np.ndarray:
    """``x`` float32 (B, H, W, 1) warped, shifted and masked as ``masking`` describes, in that order."""
    if masking.warp:
        x = _warped(x, rng, float(masking.warp), masking.low_freq_at_bottom)
    if masking.time_shift:
        x = _shifted(x, rng, masking.time_shift)
    return _masked(x, rng, masking).astype(np.float32)


def mixed(features: dict[str, np.ndarray], labels: np.ndarray, rng: np.random.Generator, alpha: float,
          num_classes: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mixup of a batch with its mirror image by weights from Beta(alpha, alpha); labels as blended one-hot rows."""
    weight = rng.beta(alpha, alpha, len(labels)).astype(np.float32)

    def blend(value: np.ndarray) -> np.ndarray:
        w = weight.reshape((-1,) + (1,) * (value.ndim - 1))
        return (w * value + (1.0 - w) * value[::-1]).astype(np.float32)

    rows = np.eye(num_classes, dtype=np.float32)[labels]
    return {name: blend(value) for name, value in features.items()}, blend(rows)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of ``({"logmel": float32 (B, H, W, 1)[, "bovw": float32 (B, k)]}, label)`` from in-memory arrays.

    The arguments and what each batch holds are :func:`~vacnn_tf.datasets.pipeline.make_dataset`'s.
    An epoch's order is a permutation drawn from (seed, epoch) and each batch's augmentations
    from (seed, epoch, batch index), so any batch can be made alone and in any order. With
    ``epoch`` (an int, or anything ``int()`` reads when a batch is made: fit_resumable's epoch
    counter) that value is the epoch; without it, the number of passes begun before this one
    (Keras begins one per epoch through ``on_epoch_begin``, and so does iterating the set).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, bovw: Optional[np.ndarray] = None, *,
                 batch_size: int = 8, shuffle: bool = False, seed: int = 0, repeat: bool = False, epoch: Any = None,
                 masking: Optional[Masking] = None, mixup: float = 0.0, num_classes: Optional[int] = None,
                 class_weights: Optional[np.ndarray] = None) -> None:
        super().__init__()
        self.images, self.labels, self.bovw = checked_inputs(images, labels, bovw, batch_size, mixup, num_classes,
                                                             repeat, epoch)
        self.class_weights = checked_class_weights(class_weights, self.labels, num_classes)
        self.batch_size, self.shuffle, self.seed, self.repeat, self.epoch = batch_size, shuffle, seed, repeat, epoch
        self.masking, self.mixup, self.num_classes = masking, float(mixup), num_classes
        self._per_pass = batch_count(len(self.images), batch_size)
        self._passes_begun = 0
        self._order: tuple[int, np.ndarray] = (-1, np.arange(0))

    def __len__(self) -> int:
        return self._per_pass

    @property
    def num_batches(self) -> Optional[int]:
        return None if self.repeat else self._per_pass  # None: Keras reads batches until told to stop

    def on_epoch_begin(self) -> None:
        self._passes_begun += 1

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        self.on_epoch_begin()
        for index in itertools.count() if self.repeat else range(self._per_pass):
            yield self[index]

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:  # one permutation an epoch, drawn once
            n = len(self.images)
            order = _rng(self.seed, epoch, 0).permutation(n) if self.shuffle and n > 1 else np.arange(n)
            self._order = (epoch, order)
        return self._order[1]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        if index < 0 or (not self.repeat and index >= self._per_pass):
            raise IndexError(f"batch {index} of a set of {self._per_pass} batches")
        epoch = int(self.epoch) if self.epoch is not None else max(self._passes_begun - 1, 0)
        epoch, batch = epoch + index // self._per_pass, index % self._per_pass
        rows = self._epoch_order(epoch)[batch * self.batch_size:(batch + 1) * self.batch_size]
        rng = _rng(self.seed, epoch, batch + 1)
        x = self.images[rows].astype(np.float32)[..., None]
        features = {"logmel": augmented(x, rng, self.masking) if self.masking is not None else x}
        if self.bovw is not None:
            features["bovw"] = self.bovw[rows]
        if self.mixup:
            features, labels = mixed(features, self.labels[rows], rng, self.mixup, int(self.num_classes))
        else:
            labels = self.labels[rows]
        if self.class_weights is None:
            return features, labels
        # a blended label's weight: the same blend of its two classes' weights
        weights = labels @ self.class_weights if self.mixup else self.class_weights[labels]
        return features, labels, weights.astype(np.float32)
