"""Models: the Keras layers and networks of the paper, the linear reference, and how a model runs.

- :mod:`~vacnn_tf.models.layers`: channel / spatial / visual attention, CBAM, Luong context attention;
- :mod:`~vacnn_tf.models.normalization`: per-band input standardisation, the serving graph's GroupNormalization;
- :mod:`~vacnn_tf.models.layer_checks`: the registration package and argument checks the layers share;
- :mod:`~vacnn_tf.models.networks`: the VACNN and baseline builders and their registry;
- :mod:`~vacnn_tf.models.finetuned`: the fine-tuned VACNN + BOVW (Figure 3) on a pretrained copy;
- :mod:`~vacnn_tf.models.optimization`: the training recipe's compile step (Adam, step decay, loss);
- :mod:`~vacnn_tf.models.linear`: logistic regression on per-mel-band statistics (not the paper's);
- :mod:`~vacnn_tf.models.runtime`: threads, precision policy, XLA fusion and the fast ``predict``.
"""
