"""A linear reference: logistic regression on per-mel-band statistics (+ the BOVW histogram).

Not the paper's. It answers the question every small-corpus result invites: how much of the
accuracy does a model with no convolution at all reach on the same images and folds? Each
image row (a mel band) is summarised over time by its mean, standard deviation and 90th
percentile (3 x 224 numbers); with ``model.use_bovw`` the fold's BOVW histogram is appended.
The features are standardised on the training part and a multinomial logistic regression
with an L2 penalty (``model.linear_c``, scikit-learn's ``C``) is fitted on training +
validation (it has no epochs to select). ``vacnn finetune --variant linear`` runs it through
the same folds, metrics and reports as the networks (docs/results.md).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

PERCENTILE = 90


def band_statistics(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per-row mean, standard deviation and 90th percentile of `(N, H, W)` images 0-255 -> `(N, 3H)`.

    Values are rescaled to 0-1 first, as the networks see them; read in chunks so a large
    corpus needs no float copy of every image at once.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"band_statistics needs a non-empty (N, H, W) array of images. Received: shape={images.shape}")
    parts = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].astype(np.float32) / 255.0
        parts.append(np.concatenate([x.mean(axis=2), x.std(axis=2), np.percentile(x, PERCENTILE, axis=2)], axis=1))
    return np.concatenate(parts).astype(np.float32)


def fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, c: float, seed: int
) -> np.ndarray:
    """Standardise, fit the logistic regression on the training rows, return test probabilities `(n, num_classes)`.

    Classes absent from the training rows get probability 0, so the columns always follow the
    corpus's class order.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
        raise ValueError(f"Config key 'model.linear_c' must be a positive number. Received: model.linear_c={c!r}")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=5000, random_state=seed))
    pipeline.fit(train_x, train_y)
    probs = np.zeros((len(test_x), num_classes), dtype=np.float32)
    probs[:, pipeline.classes_] = pipeline.predict_proba(test_x)
    return probs

