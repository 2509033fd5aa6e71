"""Datasets: a corpus with its features in memory, split into folds, fed to Keras as ``tf.data``.

- :mod:`~vacnn_tf.datasets.loading`: a corpus table with its log-mel images and label ids (``load_corpus``);
- :mod:`~vacnn_tf.datasets.folds`: the train / validation / test splits of each protocol, stored as data;
- :mod:`~vacnn_tf.datasets.pipeline`: arrays -> batched ``tf.data.Dataset`` with augmentation (``make_dataset``).
"""
