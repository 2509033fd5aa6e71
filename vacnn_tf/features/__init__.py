"""Features: audio -> the log-mel image, and the image -> KAZE descriptors -> bag-of-visual-words histogram.

- :mod:`~vacnn_tf.features.logmel`: audio loading and the 224x224 log-mel image, cached per file;
- :mod:`~vacnn_tf.features.logmel_graph`: the same log-mel image in TensorFlow ops (the SavedModel's waveform signatures);
- :mod:`~vacnn_tf.features.kaze`: KAZE keypoints and 64-d descriptors, cached per image;
- :mod:`~vacnn_tf.features.bovw`: the visual-word vocabulary (K-means) and the histograms.
"""
