"""The input pipeline, tf.data and the NumPy PyDataset alike: element structure, dtypes, seeded shuffling,
order kept for evaluation, augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from vacnn_tf.datasets.pipeline import Masking, make_dataset, pipeline_throughput
from vacnn_tf.datasets.pydataset import ArrayBatches

# make_dataset builds tf.data under TensorFlow and an ArrayBatches under any other Keras backend:
# both take the same arguments and must give batches of the same kind
PIPELINES = pytest.mark.parametrize("make", [make_dataset, ArrayBatches], ids=["tf.data", "pydataset"])


def _arrays(n=20):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 224, 224), dtype=np.uint8)
    return images, np.arange(n) % 3, rng.random((n, 128)).astype(np.float32)


@PIPELINES
def test_elements_with_and_without_bovw(make):
    images, labels, bovw = _arrays()
    feats, y = next(iter(make(images, labels, bovw, batch_size=8)))
    assert feats["logmel"].shape == (8, 224, 224, 1) and feats["logmel"].dtype.name == "float32"
    assert feats["bovw"].shape == (8, 128)
    np.testing.assert_array_equal(np.asarray(feats["logmel"])[..., 0], images[:8].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(y), labels[:8])
    feats, _ = next(iter(make(images, labels, None, batch_size=4)))
    assert set(feats) == {"logmel"}


@PIPELINES
def test_class_weights_weigh_each_sample_by_its_class_and_a_mixed_one_by_the_blend(make):
    from vacnn_tf.datasets.pipeline import balanced_class_weights

    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    weights = balanced_class_weights(labels, 4)  # class 3 absent: weight 1, nothing to weigh
    np.testing.assert_allclose(weights, [10 / 18, 10 / 6, 10 / 6, 1.0], rtol=1e-6)
    images = np.zeros((10, 6, 5), np.uint8)
    for feats, y, w in make(images, labels, batch_size=4, shuffle=True, seed=1, class_weights=weights):
        np.testing.assert_allclose(np.asarray(w), weights[np.asarray(y)], rtol=1e-6)
    seen = 0
    for feats, rows, w in make(images, labels, batch_size=4, shuffle=True, seed=1, mixup=0.4, num_classes=4,
                               class_weights=weights):
        rows = np.asarray(rows)
        np.testing.assert_allclose(np.asarray(w), rows @ weights, rtol=1e-5)
        seen += int(((rows > 1e-3) & (rows < 1 - 1e-3)).any(axis=1).sum())
    assert seen  # some samples were blended across two classes of different weight
    assert len(next(iter(make(images, labels, batch_size=4)))) == 2  # no weights: (features, label) as ever
    with pytest.raises(ValueError, match="one entry per class"):
        make(images, labels, batch_size=4, class_weights=np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        make(images, labels, batch_size=4, class_weights=np.array([1.0, -1.0, 1.0]))


@PIPELINES
def test_shuffle_is_seeded_and_complete(make):
    images, labels, bovw = _arrays()

    def order(seed):
        ds = make(images, np.arange(20), bovw, batch_size=8, shuffle=True, seed=seed)
        return [int(v) for _, y in ds for v in np.asarray(y)]

    a = order(1)
    assert sorted(a) == list(range(20)) and a != list(range(20))
    assert a == order(1) and a != order(2)


@PIPELINES
def test_bad_input_is_named(make):
    images, labels, _ = _arrays()
    with pytest.raises(ValueError, match="uint8"):
        make(images.astype(np.float32), labels)
    with pytest.raises(ValueError, match="bovw must have shape"):
        make(images, labels, np.zeros((3, 128)))


@PIPELINES
def test_draws_keyed_to_the_epoch_variable_follow_its_value_not_the_pass_count(make):
    """What resume needs: epoch e's order, masks and mixup weights depend on (seed, e) alone."""
    import tensorflow as tf

    images, labels = np.full((10, 16, 12), 200, np.uint8), np.arange(10)
    epoch = tf.Variable(0, dtype=tf.int64)
    ds = make(images, labels, batch_size=4, shuffle=True, seed=3, epoch=epoch,
              masking=Masking(masks=1, freq_width=4, time_width=4), mixup=0.3, num_classes=10)
    assert (len(ds) if isinstance(ds, ArrayBatches) else int(ds.cardinality())) == 3  # 4 + 4 + 2: Keras sizes the epoch by it

    def draw(e: int) -> list[tuple[np.ndarray, np.ndarray]]:
        epoch.assign(e)
        return [(np.asarray(f["logmel"]), np.asarray(y)) for f, y in ds]

    first = {e: draw(e) for e in (0, 1, 2)}
    for e in (2, 0, 1, 2):  # any number of passes in any order: the value decides
        for (x, y), (x0, y0) in zip(draw(e), first[e], strict=True):
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, y0)
    soft = {e: np.concatenate([y for _, y in first[e]]) for e in first}
    assert not np.array_equal(soft[0], soft[1])  # new order, masks and weights each epoch
    assert all(np.allclose(v.sum(axis=1), 1.0) and (v.max(axis=0) > 0).all() for v in soft.values())  # every utterance, once a blend
    with pytest.raises(ValueError, match="repeat"):
        make(images, labels, shuffle=True, epoch=epoch, repeat=True)


@PIPELINES
def test_pipeline_throughput_is_positive(make):
    images, labels, bovw = _arrays()
    ds = make(images, labels, bovw, batch_size=8, shuffle=True, repeat=True)
    assert pipeline_throughput(ds, batches=10) > 0


def _epoch(ds) -> np.ndarray:
    return np.concatenate([np.asarray(feats["logmel"])[..., 0] for feats, _ in ds])


@PIPELINES
def test_masking_zeroes_bands_and_spans_per_epoch_and_is_seeded(make):
    images = np.full((6, 32, 40), 200, np.uint8)
    labels = np.arange(6)
    masking = Masking(masks=2, freq_width=5, time_width=7)
    ds = make(images, labels, batch_size=4, shuffle=True, seed=3, masking=masking)
    first, second = _epoch(ds), _epoch(ds)
    again = _epoch(make(images, labels, batch_size=4, shuffle=True, seed=3, masking=masking))
    np.testing.assert_array_equal(first, again)  # a function of the seed only
    assert (first != second).any()  # new masks each epoch
    assert set(np.unique(first)) <= {0.0, 200.0} and (first == 0).any()
    for image in first:
        zero = image == 0
        # every masked pixel lies in a fully masked row band or column span, at most 2 x width each
        rows, cols = zero.all(axis=1), zero.all(axis=0)
        assert (zero == (rows[:, None] | cols[None, :])).all()
        assert rows.sum() <= 2 * 5 and cols.sum() <= 2 * 7
    # without masking the pixels pass through untouched
    assert (_epoch(make(images, labels, batch_size=4, shuffle=True, seed=3)) == 200).all()


@PIPELINES
def test_time_shift_moves_whole_images_and_fills_with_the_floor(make):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, size=(8, 6, 30), dtype=np.uint8)  # no zero pixel before shifting
    labels = np.arange(8)
    shift_only = Masking(masks=0, time_shift=4)
    ds = make(images, labels, batch_size=4, shuffle=False, seed=5, masking=shift_only)
    first, second = _epoch(ds), _epoch(ds)
    np.testing.assert_array_equal(first, _epoch(make(images, labels, batch_size=4, seed=5, masking=shift_only)))
    shifts = []
    for image, source in zip(first, images.astype(np.float32)):
        found = [s for s in range(-4, 5) if np.array_equal(image, _shifted(source, s))]
        assert found, "each image is its source shifted by at most 4 columns, the gap at 0"
        shifts.append(found[0])
    assert len(set(shifts)) > 1 and (first != second).any()  # shifts differ per image and per epoch


def _shifted(image: np.ndarray, shift: int) -> np.ndarray:
    out = np.zeros_like(image)
    if shift >= 0:
        out[:, shift:] = image[:, :image.shape[1] - shift]
    else:
        out[:, :shift] = image[:, -shift:]
    return out


@PIPELINES
def test_warp_rescales_frequency_from_the_lowest_band_and_time_from_the_first_frame(make):
    height, width = 40, 50
    rows = np.arange(height)[::-1, None] * 5 + 10  # value grows with distance from the bottom edge
    cols = np.arange(width)[None, :]
    images = np.repeat((rows + cols)[None].astype(np.uint8), 8, axis=0)
    labels = np.arange(8)
    warp_only = Masking(masks=0, warp=0.2)
    ds = make(images, labels, batch_size=4, seed=7, masking=warp_only)
    first, second = _epoch(ds), _epoch(ds)
    np.testing.assert_array_equal(first, _epoch(make(images, labels, batch_size=4, seed=7, masking=warp_only)))
    assert (first != second).any()
    freq_scales, time_scales = set(), set()
    for image in first:
        assert image[-1, 0] == images[0, -1, 0]  # the anchor: lowest band, first frame
        # the lowest band read along time gives the time factor, the first frame the frequency one
        bottom, left = image[-1], image[::-1, 0]
        kept_t, kept_f = bottom[bottom > 0] - 10, (left[left > 0] - 10) / 5
        time_scales.add(round(float(np.polyfit(np.arange(len(kept_t)), kept_t, 1)[0]), 1))
        freq_scales.add(round(float(np.polyfit(np.arange(len(kept_f)), kept_f, 1)[0]), 1))
        assert all(0.75 <= 1 / f <= 1.25 for f in time_scales | freq_scales)
        # outside the source (a squeezed image) only the floor remains
        assert ((image == 0) | (image >= 10)).all()
    assert len(time_scales) > 1 and len(freq_scales) > 1
    flipped = Masking(masks=0, warp=0.2, low_freq_at_bottom=False)
    top_anchored = _epoch(make(images[:, ::-1].copy(), labels, batch_size=4, seed=7, masking=flipped))
    np.testing.assert_array_equal(top_anchored, first[:, ::-1])
    with pytest.raises(ValueError, match="warp"):
        Masking(warp=0.5)


def test_masking_rejects_negative_widths():
    with pytest.raises(ValueError, match="freq_width"):
        Masking(freq_width=-1)
    with pytest.raises(ValueError, match="time_shift"):
        Masking(time_shift=-2)


@PIPELINES
def test_mixup_blends_images_histograms_and_labels_alike_and_is_seeded(make):
    n, classes = 8, 4
    labels = np.arange(n) % classes
    value = 10.0 * (np.arange(n) + 1)  # each image constant, its own value
    images = np.repeat(value.astype(np.uint8)[:, None, None], 6, 1).repeat(5, 2)
    bovw = np.eye(n, dtype=np.float32)  # one-hot per utterance: a blended row shows who was mixed, and how much
    build = lambda: make(images, labels, bovw, batch_size=4, shuffle=True, seed=2, mixup=0.4, num_classes=classes)
    weights = []
    for (feats, rows), (_, rows_again) in zip(build(), build()):
        np.testing.assert_array_equal(np.asarray(rows), np.asarray(rows_again))
        rows, x, h = np.asarray(rows), np.asarray(feats["logmel"])[..., 0], np.asarray(feats["bovw"])
        assert rows.shape == (4, classes)
        for i in range(4):
            mixed = np.flatnonzero(h[i] > 1e-7)
            assert len(mixed) <= 2 and abs(h[i].sum() - 1) < 1e-6
            np.testing.assert_allclose(x[i], sum(h[i, u] * value[u] for u in mixed), rtol=1e-5)
            expected = np.zeros(classes)
            for u in mixed:
                expected[labels[u]] += h[i, u]
            np.testing.assert_allclose(rows[i], expected, atol=1e-5)
            weights.append(float(h[i].max()))
    assert len({round(w, 4) for w in weights}) > 2  # a weight per sample
    with pytest.raises(ValueError, match="num_classes"):
        make(images, labels, batch_size=4, mixup=0.2)
    with pytest.raises(ValueError, match="mixup"):
        make(images, labels, batch_size=4, mixup=-1.0, num_classes=classes)
