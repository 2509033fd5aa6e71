"""The linear reference (``--variant linear``): its features, its fit, and a run through the fold machinery."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.models.linear import band_statistics, fit_predict


def test_band_statistics_are_per_row_mean_std_and_p90_of_0_1_values():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 11), dtype=np.uint8)
    feats = band_statistics(images, chunk=2)  # two chunks: rows must not mix across them
    x = images / 255.0
    expected = np.concatenate([x.mean(axis=2), x.std(axis=2), np.percentile(x, 90, axis=2)], axis=1)
    assert feats.shape == (3, 15)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        band_statistics(images[:0])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        band_statistics(images[0])


def test_fit_predict_learns_separable_rows_and_keeps_the_class_order():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 2, 3], 20)  # class 1 never appears in training
    x = rng.normal(size=(60, 4)) + np.eye(4)[y] * 4
    probs = fit_predict(x[::2], y[::2], x[1::2], num_classes=4, c=1.0, seed=0)
    assert probs.shape == (30, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(probs[:, 1] == 0.0)
    assert (probs.argmax(axis=1) == y[1::2]).mean() > 0.9
    with pytest.raises(ValueError, match="model.linear_c"):
        fit_predict(x, y, x, 4, c=0, seed=0)


def test_linear_variant_runs_through_the_folds(tmp_path):
    from vacnn_tf.config import RunConfig, replace
    from vacnn_tf.training.finetuning import RunSummary, finetune

    cfg = replace(RunConfig(), **{
        "out": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"), "data.workers": 1, "train.verbose": 0,
        "data.synth_per_class": 6, "bovw.k": 16, "protocol.folds": 3,
    })
    summary = finetune(cfg, "savee", tmp_path / "run", variant="linear")
    assert len(summary.folds) == 3 and summary.variant == "linear"
    for k in range(3):
        metrics = json.loads((tmp_path / "run" / f"fold_{k}" / "metrics.json").read_text())
        preds = pd.read_csv(tmp_path / "run" / f"fold_{k}" / "predictions.csv")
        assert len(preds) == metrics["test"] and metrics["epochs_run"] == 0
        assert (tmp_path / "run" / f"fold_{k}" / "vocabulary.npz").is_file()  # the fold's own BOVW vocabulary
        assert not (tmp_path / "run" / f"fold_{k}" / "model.keras").exists()
    assert (tmp_path / "run" / "metrics" / "summary.md").is_file()
    assert RunSummary.load(tmp_path / "run").accuracy_mean == summary.accuracy_mean
    with pytest.raises(ValueError, match="'linear' variant uses no pretrained model"):
        finetune(cfg, "savee", tmp_path / "other", variant="linear", pretrained=tmp_path / "x.keras")
