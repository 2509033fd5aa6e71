"""Corpora: the four speech-emotion corpora read from their folders, their labels, and a synthetic stand-in.

- :mod:`~vacnn_tf.corpora.readers`: a corpus folder -> a table of path, label, speaker (``read_corpus``);
- :mod:`~vacnn_tf.corpora.labels`: each corpus's classes and the 7 pretraining labels;
- :mod:`~vacnn_tf.corpora.synth`: a seeded synthetic corpus in the official layouts (``vacnn synth``).
"""
