"""Serving: a finished run -> a SavedModel, and the SavedModel -> emotion labels, locally or over HTTP.

- :mod:`~vacnn_tf.serving.export`: the SavedModel with its signatures and assets (``vacnn export``);
- :mod:`~vacnn_tf.serving.classifier`: ``EmotionClassifier`` (a file in, a label out) and the TF Serving client;
- :mod:`~vacnn_tf.serving.server`: the HTTP server (``vacnn serve``);
- :mod:`~vacnn_tf.serving.rest`: TF Serving's REST protocol (request parsing, signatures, answers).
"""
