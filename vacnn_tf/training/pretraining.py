"""Pretraining (section 4.2): the VACNN, or a baseline, on TESS + RAVDESS with the 7 pretraining labels.

:func:`pretrain` (``vacnn pretrain``) writes one run directory keyed by the settings that shape
it (:func:`vacnn_tf.training.run_dirs.pretrain_dir`), so every table and fold that needs the same
pretraining reuses it. A stratified hold-out is evaluated for Table 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.corpora.labels import PRETRAIN_CLASSES, PRETRAIN_CORPORA
from vacnn_tf.datasets.folds import folds_from_json, holdout_split, pretrain_table
from vacnn_tf.datasets.loading import describe, load_corpus
from vacnn_tf.models.runtime import configure_runtime
from vacnn_tf.storage import read_json
from vacnn_tf.training.claims import Claims
from vacnn_tf.training.progress import Progress, pretrain_label, unit_key
from vacnn_tf.training.run_dirs import (PRETRAIN_STAGE, Manifest, is_done, mark_done, prepare_run_dir, pretrain_dir,
                                       pretrain_key, pretrained_model_path)
from vacnn_tf.training.stage import claim_guard, claimed, evaluate, no_force_with_claims, train_and_test, write_common


def pretrain(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    exclude_speakers: Optional[Mapping[str, Sequence[str]]] = None,
    resume: bool = True,
    force: bool = False,
    callbacks: Optional[list[Any]] = None,
    progress: Optional[Progress] = None,
    claims: Optional[Claims] = None,
) -> Path:
    """Pretrain ``config.model.architecture`` on TESS + RAVDESS with the 7 pretraining labels.

    A stratified hold-out (1 / ``protocol.folds`` of the data) is kept out of training and
    evaluated for Table 2; the validation split for early stopping is carved from the rest.

    Args:
        config: Run configuration (data, features, model, train; ``train.pretrain_epochs``).
        out_dir: Run directory; default :func:`~vacnn_tf.training.run_dirs.pretrain_dir` (shared by every run that needs it).
        exclude_speakers: Per corpus, speakers pretraining must not see (the speaker protocol's
            RAVDESS test actors).
        resume: Reuse a finished pretraining, continue an unfinished one.
        force: Delete and redo.
        callbacks: Extra Keras callbacks (tests).
        progress: The grid this pretraining is a unit of (reports its start); None reports nothing.
        claims: This worker's claims when other workers share the folder (:mod:`vacnn_tf.training.workers`):
            the pretraining is trained only by the worker that claims it; None claims nothing.

    Returns:
        The pretraining run directory; the model is ``RUN/pretrain/model.keras``.

    Raises:
        UnitsHeld: another live worker holds this pretraining (only with ``claims``).
    """
    no_force_with_claims(force, claims)
    run_dir = Path(out_dir) if out_dir is not None else pretrain_dir(config, exclude_speakers)
    progress = progress or Progress.quiet()
    return claimed(claims, run_dir, lambda: _pretrain(config, run_dir, exclude_speakers, resume=resume, force=force,
                                                      callbacks=[*(callbacks or []), *claim_guard(claims, run_dir)],
                                                      progress=progress))


def _pretrain(config: RunConfig, run_dir: Path, exclude_speakers: Optional[Mapping[str, Sequence[str]]], *,
              resume: bool, force: bool, callbacks: list[Any], progress: Progress) -> Path:
    from vacnn_tf.models.networks import adapt_input_norm, build_model, is_baseline
    from vacnn_tf.training.distribute import strategy_scope
    from vacnn_tf.training.fitting import set_seed

    run_dir, finished = prepare_run_dir(
        run_dir, config, resume=resume, force=force, key=lambda c: pretrain_key(c, exclude_speakers)
    )
    if finished:
        progress.skip(unit_key(run_dir))
        return run_dir
    configure_runtime(config.train)  # before any model is built: the precision policy applies to new layers
    exclude = {k: sorted(map(str, v)) for k, v in (exclude_speakers or {}).items()}
    manifest = Manifest.open(run_dir, config, "pretrain", {"exclude_speakers": exclude})
    with manifest.stage("load"):
        tables = {name: load_corpus(config, name).table for name in PRETRAIN_CORPORA}
        table = pretrain_table(tables, exclude)
        data = load_corpus(config, "pretrain", table=table, classes=PRETRAIN_CLASSES)
    folds_path = run_dir / "folds.json"
    if folds_path.is_file():
        split = folds_from_json(read_json(folds_path), data.table)[0]
    else:
        split = holdout_split(data.table, 1.0 / config.protocol.folds, config.train.val_fraction, config.seed)
    write_common(run_dir, config, data, [split])
    manifest.data["data"] = {**describe(data), "train": len(split.train), "val": len(split.val), "test": len(split.test)}
    stage_dir = run_dir / PRETRAIN_STAGE
    if is_done(stage_dir):
        progress.skip(unit_key(run_dir))
    else:
        progress.start(unit_key(run_dir), pretrain_label(config, exclude))
        with manifest.stage("pretrain"):
            set_seed(config.seed)
            with strategy_scope(config.train):
                model = build_model(config.model.architecture, len(PRETRAIN_CLASSES), config.model,
                                    config.features.image_size)
                adapt_input_norm(model, data.images[split.train])
                epochs = config.train.epochs_for(is_baseline(config.model.architecture), pretraining=True)
                staged = replace(config, train=config.train.for_pretraining())
                train_and_test(staged, model, data, split, None, stage_dir, epochs, callbacks)
        progress.finish(unit_key(run_dir))
    with manifest.stage("evaluate"):
        evaluate(run_dir)
    mark_done(run_dir)
    return run_dir


def check_pretraining_excludes(pretrained: str | Path, required: Mapping[str, Sequence[str]]) -> None:
    """Refuse a given pretraining (``--pretrained``) that may have seen a speaker of ``required``
    (per corpus, the speakers it must have left out: every test speaker of the folds it is to serve).

    Which speakers a pretraining left out is recorded only in its run's ``manifest.json``, so a bare
    ``.keras`` file cannot show it and is refused too.

    Raises:
        ValueError: the pretraining saw one of the speakers, or does not record what it left out.
    """
    required = {corpus: sorted(set(map(str, speakers))) for corpus, speakers in required.items() if speakers}
    if not required:
        return
    model = pretrained_model_path(pretrained)
    manifest = model.parent.parent / "manifest.json"
    if model.parent.name != PRETRAIN_STAGE or not manifest.is_file():
        raise ValueError(
            f"{pretrained} is not a pretraining run directory, so nothing records which speakers it left out; "
            f"the folds test {required}, which their pretraining must not have seen. Pass the run directory of a "
            "pretraining that excluded them, or leave out --pretrained to pretrain per fold.")
    excluded = read_json(manifest).get("exclude_speakers") or {}
    for corpus, speakers in required.items():
        seen = sorted(set(speakers) - set(excluded.get(corpus, [])))
        if seen:
            raise ValueError(
                f"{manifest.parent} was pretrained on {corpus} speakers {seen}, which this fold tests: under the "
                f"speaker protocol each {corpus} fold starts from a pretraining without its test speakers. Leave out "
                "--pretrained to pretrain per fold, or run one fold at a time with the matching pretraining.")
