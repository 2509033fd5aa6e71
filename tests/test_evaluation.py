"""Metrics against scikit-learn on fixed predictions; tables and figures are written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

from vacnn_tf.evaluation.metrics import (
    accuracy,
    confusion_counts,
    evaluate_predictions,
    fold_metrics,
    mean_per_class,
    normalize_rows,
    per_class_table,
    predictions_frame,
    summarize_folds,
    uar,
)

CLASSES = ["neutral", "happy", "sad", "angry"]
RNG = np.random.default_rng(0)
Y_TRUE = RNG.integers(0, 4, 60)
Y_PRED = np.where(RNG.random(60) < 0.6, Y_TRUE, RNG.integers(0, 4, 60))
Y_PRED[Y_PRED == 3] = 2  # a class never predicted: precision 0/0 must be 0, as sklearn's zero_division=0


def test_against_sklearn():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(accuracy_score(Y_TRUE, Y_PRED))
    assert uar(Y_TRUE, Y_PRED, CLASSES) == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    p, r, f, s = precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=range(4), zero_division=0)
    table = per_class_table(Y_TRUE, Y_PRED, CLASSES)
    np.testing.assert_allclose(table["precision"], p)
    np.testing.assert_allclose(table["recall"], r)
    np.testing.assert_allclose(table["f1"], f)
    np.testing.assert_array_equal(table["support"], s)
    cm = confusion_counts(Y_TRUE, Y_PRED, CLASSES)
    np.testing.assert_array_equal(cm.to_numpy(), confusion_matrix(Y_TRUE, Y_PRED, labels=range(4)))
    np.testing.assert_allclose(
        normalize_rows(cm).to_numpy(), confusion_matrix(Y_TRUE, Y_PRED, labels=range(4), normalize="true")
    )


def test_fold_summary_mean_and_std():
    m1 = fold_metrics([0, 1, 1, 0], [0, 1, 0, 0], CLASSES)
    m2 = fold_metrics([2, 3, 3], [2, 3, 3], CLASSES)
    df = summarize_folds([m1, m2])
    assert df.loc["mean", "accuracy"] == pytest.approx((0.75 + 1.0) / 2)
    assert df.loc["std", "accuracy"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert df.loc["fold_0", "uar"] == pytest.approx(0.75)  # classes absent from y_true do not count
    assert df.loc["mean", "n"] == 7


def test_per_class_mean_leaves_out_folds_without_the_class():
    # a perfect classifier over two folds, the second without any 'angry' test utterance
    m1 = fold_metrics([0, 1, 2, 3], [0, 1, 2, 3], CLASSES)
    m2 = fold_metrics([0, 1, 2], [0, 1, 2], CLASSES)
    table = mean_per_class([m1, m2])
    assert table.loc["angry", "recall_mean"] == pytest.approx(1.0)
    assert table.loc["angry", "f1_std"] == pytest.approx(0.0)
    assert table.loc["sad", "f1_mean"] == pytest.approx(1.0)


def test_bad_ids_are_named():
    with pytest.raises(ValueError, match="Class ids must lie"):
        confusion_counts([0, 5], [0, 1], CLASSES)


def test_tables_and_figures_written(tmp_path):
    frames = []
    for k in range(2):
        idx = slice(k * 30, (k + 1) * 30)
        probs = np.eye(4)[Y_PRED[idx]] * 0.7 + 0.075
        frames.append(predictions_frame([f"f{i}" for i in range(30)], Y_TRUE[idx], probs, CLASSES))
    tables = evaluate_predictions(frames, CLASSES, tmp_path / "metrics", title="t", caveat="leaks")
    assert tables["summary"].loc["mean", "accuracy"] == pytest.approx(
        np.mean([accuracy_score(Y_TRUE[:30], Y_PRED[:30]), accuracy_score(Y_TRUE[30:], Y_PRED[30:])])
    )
    np.testing.assert_array_equal(tables["confusion"].to_numpy(), confusion_matrix(Y_TRUE, Y_PRED, labels=range(4)))
    for name in ("summary", "per_class", "per_class_pooled", "confusion", "confusion_normalized"):
        assert (tmp_path / "metrics" / f"{name}.csv").is_file()
        assert "|" in (tmp_path / "metrics" / f"{name}.md").read_text()
    assert (tmp_path / "metrics" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(tmp_path / "metrics" / "summary.csv", index_col=0).shape[0] == 4
