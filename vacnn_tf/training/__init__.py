"""Training: pretraining and fine-tuning runs, from the corpus to a run directory of models and metrics.

- :mod:`~vacnn_tf.training.pretraining`: ``pretrain`` (``vacnn pretrain``);
- :mod:`~vacnn_tf.training.finetuning`: ``finetune`` (``vacnn finetune``);
- :mod:`~vacnn_tf.training.stage`: what a pretraining and each fold share: train, test, record; ``evaluate``;
- :mod:`~vacnn_tf.training.fitting`: one resumable ``model.fit`` with model selection and early stopping;
- :mod:`~vacnn_tf.training.run_dirs`: run directories: their names and keys, resume / force, manifest, ``DONE``;
- :mod:`~vacnn_tf.training.distribute`: the devices one training uses;
- :mod:`~vacnn_tf.training.progress`, :mod:`~vacnn_tf.training.claims`, :mod:`~vacnn_tf.training.workers`:
  a grid of trainings, shared by worker processes;
- :mod:`~vacnn_tf.training.seeds`: one recipe over several seeds (``vacnn seeds``).
"""
