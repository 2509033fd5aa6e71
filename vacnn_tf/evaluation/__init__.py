"""Evaluation: predictions -> metrics and tables, and the figures and model cards that explain a run.

- :mod:`~vacnn_tf.evaluation.metrics`: accuracy, UAR, per-class P/R/F1, confusion matrices, fold summaries;
- :mod:`~vacnn_tf.evaluation.figures`: the figures of every stage (``vacnn figures``);
- :mod:`~vacnn_tf.evaluation.attention_figures`: the attention and Grad-CAM figure (re-exported by ``figures``);
- :mod:`~vacnn_tf.evaluation.plotting`: the Agg backend and atomic PNG write the figures share;
- :mod:`~vacnn_tf.evaluation.explain`: attention maps and Grad-CAM;
- :mod:`~vacnn_tf.evaluation.model_card`: the model card an export ships.
"""
