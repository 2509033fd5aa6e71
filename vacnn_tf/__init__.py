"""vacnn-tf: visual-attention CNN + bag-of-visual-words speech emotion recognition in Keras 3."""

__version__ = "0.1.0"
