"""The training stages: corpus tables -> feature cache -> folds -> pretraining -> fine-tuning -> metrics.

Public entry points (``vacnn pretrain | finetune | evaluate`` call them; so do the
``reproduce.tableN`` scripts):

* :func:`pretrain` trains the VACNN (or a baseline) on TESS + RAVDESS with the 7 pretraining
  labels (section 4.2). Its run directory is keyed by the settings that shape it
  (:func:`pretrain_dir`), so every table and fold that needs the same pretraining reuses it.
* :func:`finetune` runs the cross-validation on a target corpus for one variant:
  ``finetuned`` (from the pretrained checkpoint, frozen through VA block 1, Figure 3) or
  ``pure`` (the same architecture from random initialisation with nothing frozen, Table 3).
* :func:`evaluate` rebuilds a run's tables from its per-fold predictions.
* :func:`run_specs` runs a list of :class:`RunSpec` (what a table needs), sharing pretraining
  and the feature cache.

Run directory layout (export and reproduce rely on it)::

    RUN/config.yaml  manifest.json  labels.json  folds.json  summary.json  DONE
    RUN/fold_K/model.keras  vocabulary.npz  metrics.json  predictions.csv  history.csv
    RUN/fold_K/selection.json  logs/  DONE  (best.weights.h5 and backup/ only while the fold runs)
    RUN/metrics/summary|per_class|per_class_pooled|confusion|confusion_normalized .csv/.md, confusion*.png
    PRETRAIN/pretrain/model.keras  metrics.json  predictions.csv ...  (a pretraining run)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import numpy as np
import pandas as pd

from vacnn_tf.claims import Claims, UnitsHeld
from vacnn_tf.config import RunConfig, replace
from vacnn_tf.corpus_data import CorpusData, describe, load_corpus
from vacnn_tf.evaluation import sample_std
from vacnn_tf.folds import (
    LEAKAGE_CAVEAT,
    Fold,
    check_protocol,
    folds_from_json,
    folds_to_json,
    holdout_split,
    make_folds,
    pretrain_exclusions,
    pretrain_table,
)
from vacnn_tf.labels import PRETRAIN_CLASSES, classes_for
from vacnn_tf.progress import Progress, fold_label, plan_finetune, pretrain_label, unit_key
from vacnn_tf.runtime import configure_runtime
from vacnn_tf.runs import DONE, Manifest, is_done, key_tree, mark_done, neutral_config, prepare_run_dir, run_key
from vacnn_tf.storage import atomic_write, bovw_cache_dir, read_json, write_json

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("finetuned", "pure", "linear")
TARGETS: tuple[str, ...] = ("ravdess", "emodb", "savee")
PRETRAIN_STAGE = "pretrain"


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run a table needs: target, variant and config overrides (dotted keys)."""

    target: str
    variant: str = "finetuned"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    """What a finished fine-tuning run reports (also ``RUN/summary.json``)."""

    run_dir: str
    target: str
    variant: str
    protocol: str
    architecture: str
    use_bovw: bool
    classes: list[str]
    folds: list[dict[str, Any]]
    accuracy_mean: float
    accuracy_std: float
    uar_mean: float
    uar_std: float
    caveat: str = ""
    audit: Optional[dict[str, Any]] = None  # train.audit_test: what selecting on the test fold would report (leaky)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunSummary":
        return cls(**read_json(Path(run_dir) / "summary.json"))


def _check(value: str, allowed: Sequence[str], key: str) -> str:
    if value not in allowed:
        raise ValueError(f"`{key}` must be one of {list(allowed)}. Received: {key}={value!r}")
    return value


# --- run directories -------------------------------------------------------------------------

def pretrain_key(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """Hash of what shapes a pretraining: data, features, architecture, recipe, seed, exclusions.

    The protocol name itself is not part of it: the paper protocol and the speaker protocol for
    EmoDB / SAVEE targets pretrain on the same data and share one pretraining.
    """
    neutral = neutral_config(config)
    parts = {
        "seed": config.seed,
        "data_root": neutral.data.data_root,
        "synth_per_class": config.data.synth_per_class if config.data.data_root is None else None,
        "features": asdict(config.features),
        "model": {k: v for k, v in asdict(config.model).items() if k not in ("use_bovw", "freeze_through", "state_pooling", "head_dropout")},
        # verbosity and scheduling (how the same steps run) do not change what a pretraining learns
        "train": key_tree(config)["train"],
        "folds": config.protocol.folds,
        "subsample": config.protocol.subsample,
        "exclude": {k: sorted(v) for k, v in sorted((exclude or {}).items()) if v},
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrain_dir(config: RunConfig, exclude: Optional[Mapping[str, Sequence[str]]] = None) -> Path:
    """Default pretraining directory: ``{out}/pretrain/{architecture}-s{seed}-{key}``."""
    return Path(config.out) / "pretrain" / f"{config.model.architecture}-s{config.seed}-{pretrain_key(config, exclude)}"


def finetune_dir(config: RunConfig, target: str, variant: str) -> Path:
    """Default run directory: ``{out}/{target}/{protocol}/{variant}-{architecture}-{bovw}-s{seed}-{key}``."""
    bovw = "bovw" if config.model.use_bovw else "nobovw"
    name = f"{variant}-{config.model.architecture}-{bovw}-s{config.seed}-{run_key(config)[:8]}"
    return Path(config.out) / target / config.protocol.name / name


# --- one fold / one stage ---------------------------------------------------------------------

def _datasets(
    config: RunConfig, data: CorpusData, fold: Fold, bovw: Optional[np.ndarray], seed: int, bs: int,
    replicas: int = 1,
) -> tuple[Callable[[Any], Any], Optional[Any], Any]:
    """Train (a function of the epoch-index variable: its draws follow the epoch, for resume), validation,
    test, in batches of ``bs`` rows (over all ``replicas``, none of which gets an empty batch)."""
    from vacnn_tf.data import Masking, make_dataset
    from vacnn_tf.distribute import eval_batch_size, without_short_batch

    masking = Masking.from_train_config(config.train, config.features.low_freq_at_bottom)

    def part(idx: np.ndarray, train: bool, epoch: Any = None, batch: int = bs) -> Any:
        return make_dataset(
            data.images[idx], data.y[idx], bovw[idx] if bovw is not None else None,
            batch_size=batch, shuffle=train, seed=seed, epoch=epoch,
            masking=masking if train else None, mixup=config.train.mixup if train else 0.0,
            num_classes=len(data.classes),
        )

    def train(epoch: Any) -> Any:
        return without_short_batch(part(fold.train, True, epoch), len(fold.train), bs, replicas)

    val = part(fold.val, False, batch=eval_batch_size(len(fold.val), bs, replicas)) if len(fold.val) else None
    return train, val, part(fold.test, False)  # the test part is predicted outside the strategy


def _train_and_test(
    config: RunConfig, model: Any, data: CorpusData, fold: Fold, bovw: Optional[np.ndarray],
    stage_dir: Path, epochs: int, callbacks: Optional[list[Any]] = None,
) -> dict[str, Any]:
    """Compile, fit with resume, save the selected model, predict the test part, write metrics.

    Called inside the :func:`vacnn_tf.distribute.strategy_scope` the model was built in; its
    batches hold ``train.batch_size`` rows per replica or in all (``train.batch_per``).
    """
    from vacnn_tf.distribute import global_batch_size, train_steps
    from vacnn_tf.evaluation import accuracy
    from vacnn_tf.fitting import audit_facts, cleanup_fold, fit_resumable
    from vacnn_tf.models import compile_model
    from vacnn_tf.runtime import predict

    seed = config.seed + 1000 * (fold.index + 1)
    strategy = getattr(model, "distribute_strategy", None)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    batch = global_batch_size(config.train, replicas)
    train_ds, val_ds, test_ds = _datasets(config, data, fold, bovw, seed, batch, replicas)
    steps = train_steps(len(fold.train), batch, replicas)
    compile_model(model, config.train, steps_per_epoch=steps)
    audit = (lambda: accuracy(data.y[fold.test], predict(model, test_ds).argmax(axis=1))) if config.train.audit_test else None
    state = fit_resumable(
        model, train_ds, val_ds, stage_dir, epochs=epochs, patience=config.train.patience,
        verbose=config.train.verbose, extra_callbacks=callbacks, select_on=config.train.select_on, audit=audit,
    )
    atomic_write(stage_dir / "model.keras", model.save, suffix=".keras")
    probs = predict(model, test_ds)
    metrics = _write_fold(data, fold, probs, stage_dir, {
        "best_epoch": (state.get("best") or {}).get("epoch"), "best_val_accuracy": (state.get("best") or {}).get("acc"),
        "epochs_run": state["epochs_run"], "stopped_early": bool(state.get("stopped")), **audit_facts(state),
    })
    cleanup_fold(stage_dir)  # after DONE: a kill in between leaves a spare backup, never a lost fold
    return metrics


def _write_fold(data: CorpusData, fold: Fold, probs: np.ndarray, stage_dir: Path, training: dict[str, Any]) -> dict[str, Any]:
    """Write the test part's predictions and metrics (plus ``training``'s facts), then mark the stage done."""
    from vacnn_tf.evaluation import fold_metrics, predictions_frame

    classes = list(data.classes)
    preds = predictions_frame(data.table["path"].to_numpy()[fold.test], data.y[fold.test], probs, classes)
    atomic_write(stage_dir / "predictions.csv", lambda p: preds.to_csv(p, index=False))
    metrics = fold_metrics(data.y[fold.test], probs.argmax(axis=1), classes)
    metrics.update({
        "fold": fold.index, "train": len(fold.train), "val": len(fold.val), "test": len(fold.test),
        "test_speakers": list(fold.test_speakers), "val_speakers": list(fold.val_speakers), **training,
    })
    write_json(stage_dir / "metrics.json", metrics)
    mark_done(stage_dir, f"accuracy={metrics['accuracy']:.4f} uar={metrics['uar']:.4f}")
    return metrics


def _linear_fold(config: RunConfig, data: CorpusData, fold: Fold, stats: np.ndarray, bovw: Optional[np.ndarray],
                 stage_dir: Path) -> dict[str, Any]:
    """The ``linear`` variant on one fold: fitted on training + validation, no epochs to select."""
    from vacnn_tf.linear import fit_predict

    x = stats if bovw is None else np.concatenate([stats, bovw], axis=1)
    fit_rows = np.concatenate([fold.train, fold.val])
    probs = fit_predict(x[fit_rows], data.y[fit_rows], x[fold.test], len(data.classes), config.model.linear_c,
                        config.seed + fold.index)
    return _write_fold(data, fold, probs, stage_dir, {"best_epoch": None, "best_val_accuracy": None, "epochs_run": 0,
                                                      "stopped_early": False})


def _write_common(run_dir: Path, config: RunConfig, data: CorpusData, folds: list[Fold]) -> None:
    write_json(run_dir / "labels.json", {"classes": list(data.classes), "corpus": data.name})
    if not (run_dir / "folds.json").is_file():
        write_json(run_dir / "folds.json", folds_to_json(folds, data.table, config.protocol.name, config.seed))


# --- pretraining -----------------------------------------------------------------------------

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
        out_dir: Run directory; default :func:`pretrain_dir` (shared by every run that needs it).
        exclude_speakers: Per corpus, speakers pretraining must not see (the speaker protocol's
            RAVDESS test actors).
        resume: Reuse a finished pretraining, continue an unfinished one.
        force: Delete and redo.
        callbacks: Extra Keras callbacks (tests).
        progress: The grid this pretraining is a unit of (reports its start); None reports nothing.
        claims: This worker's claims when other workers share the folder (:mod:`vacnn_tf.workers`):
            the pretraining is trained only by the worker that claims it; None claims nothing.

    Returns:
        The pretraining run directory; the model is ``RUN/pretrain/model.keras``.

    Raises:
        UnitsHeld: another live worker holds this pretraining (only with ``claims``).
    """
    _no_force_with_claims(force, claims)
    run_dir = Path(out_dir) if out_dir is not None else pretrain_dir(config, exclude_speakers)
    progress = progress or Progress.quiet()
    return _claimed(claims, run_dir, lambda: _pretrain(config, run_dir, exclude_speakers, resume=resume, force=force,
                                                       callbacks=[*(callbacks or []), *_guard(claims, run_dir)],
                                                       progress=progress))


def _pretrain(config: RunConfig, run_dir: Path, exclude_speakers: Optional[Mapping[str, Sequence[str]]], *,
              resume: bool, force: bool, callbacks: list[Any], progress: Progress) -> Path:
    from vacnn_tf.distribute import strategy_scope
    from vacnn_tf.fitting import set_seed
    from vacnn_tf.models import adapt_input_norm, build_model

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
        tables = {name: load_corpus(config, name).table for name in ("tess", "ravdess")}
        table = pretrain_table(tables, exclude)
        data = load_corpus(config, "pretrain", table=table, classes=PRETRAIN_CLASSES)
    folds_path = run_dir / "folds.json"
    if folds_path.is_file():
        split = folds_from_json(read_json(folds_path), data.table)[0]
    else:
        split = holdout_split(data.table, 1.0 / config.protocol.folds, config.train.val_fraction, config.seed)
    _write_common(run_dir, config, data, [split])
    manifest.data["data"] = {**describe(data), "train": len(split.train), "val": len(split.val), "test": len(split.test)}
    stage_dir = run_dir / PRETRAIN_STAGE
    if is_done(stage_dir):
        progress.skip(unit_key(run_dir))
    else:
        progress.start(unit_key(run_dir), pretrain_label(config, exclude))
        with manifest.stage("pretrain"):
            set_seed(config.seed)
            with strategy_scope(config.train):
                model = build_model(config.model.architecture, len(PRETRAIN_CLASSES), config.model)
                adapt_input_norm(model, data.images[split.train])
                epochs = config.train.pretrain_epochs or config.train.epochs
                _train_and_test(config, model, data, split, None, stage_dir, epochs, callbacks)
        progress.finish(unit_key(run_dir))
    with manifest.stage("evaluate"):
        evaluate(run_dir)
    mark_done(run_dir)
    return run_dir


T = TypeVar("T")


def _claimed(claims: Optional[Claims], unit: Path, work: Callable[[], T]) -> T:
    """``work()`` while holding ``unit``'s claim (no claim without ``claims``, or for a finished unit,
    whose work only reads it back).

    Raises:
        UnitsHeld: another live worker holds ``unit``.
    """
    if claims is None or is_done(unit):
        return work()
    with claims.hold(unit, is_done) as mine:
        if mine:
            return work()
    if is_done(unit):  # finished by another worker just now
        return work()
    raise UnitsHeld([unit_key(unit)], waiting=False)


def _guard(claims: Optional[Claims], unit: Path) -> list[Any]:
    """A callback that stops a fit whose unit another worker took over (none without claims)."""
    if claims is None:
        return []
    from vacnn_tf.fitting import ClaimGuard

    return [ClaimGuard(lambda: claims.holds(unit), str(unit))]


def _no_force_with_claims(force: bool, claims: Optional[Claims]) -> None:
    if force and claims is not None:
        raise ValueError("force deletes runs other workers may be training: it takes no claims (clear the runs "
                         "first, then start the workers). Received: force=True with claims")


def _pretrained_model_path(pretrained: str | Path) -> Path:
    path = Path(pretrained)
    if path.is_dir():
        path = path / PRETRAIN_STAGE / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No pretrained model at {path}; pass a pretraining run dir or a .keras file.")
    return path


# --- fine-tuning -----------------------------------------------------------------------------

def _fold_bovw(config: RunConfig, descriptors: list[np.ndarray], fold: Fold, fold_dir: Path) -> np.ndarray:
    """Fit (or reload) the fold's vocabulary on its training part only; histograms for every row."""
    from vacnn_tf.bovw import BovwVocabulary, fit_fold_vocabulary

    path = fold_dir / "vocabulary.npz"
    if path.is_file():
        vocab = BovwVocabulary.load(path, expected=config.bovw)
    else:
        vocab = fit_fold_vocabulary(descriptors, fold.train, config.bovw, seed=config.seed + fold.index)
        vocab.save(path)
    return vocab.histograms(descriptors)


def finetune(
    config: RunConfig,
    target: str,
    out_dir: str | Path | None = None,
    variant: str = "finetuned",
    pretrained: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    callbacks: Optional[list[Any]] = None,
    progress: Optional[Progress] = None,
    claims: Optional[Claims] = None,
) -> RunSummary:
    """Cross-validate one variant on a target corpus under ``config.protocol``.

    Args:
        config: Run configuration.
        target: ``ravdess``, ``emodb`` or ``savee``.
        out_dir: Run directory; default :func:`finetune_dir`.
        variant: ``finetuned`` (from the pretrained checkpoint), ``pure`` (random init, nothing
            frozen) or ``linear`` (not the paper's: logistic regression on per-mel-band statistics
            plus the BOVW histogram, :mod:`vacnn_tf.linear`, a reference for what no network reaches).
        pretrained: A pretraining run dir or ``.keras`` file used for every fold; None pretrains as
            needed (one shared pretraining, or one per fold for a RAVDESS target under ``speaker``).
        resume: Continue an unfinished run (finished folds are skipped) or return a finished one.
        force: Delete the run directory and start over.
        callbacks: Extra Keras callbacks for every fit (tests simulate crashes with one).
        progress: The grid whose units are this run's folds and pretrainings (reports each start);
            None reports nothing.
        claims: This worker's claims when other workers share the run (:mod:`vacnn_tf.workers`):
            each fold, each pretraining and the run's summary are done by the worker that claims
            them; None claims nothing.

    Returns:
        The run's :class:`RunSummary` (also in ``RUN/summary.json``).

    Raises:
        UnitsHeld: with ``claims``, folds left that other live workers hold, or whose pretraining
            they hold; this worker has trained every fold it could take.
    """
    _check(target, TARGETS, "target")
    _check(variant, VARIANTS, "variant")
    check_protocol(config.protocol.name)
    if variant != "finetuned" and pretrained is not None:
        raise ValueError(f"The '{variant}' variant uses no pretrained model. Received: pretrained={pretrained!r}")
    _no_force_with_claims(force, claims)
    run_dir = Path(out_dir) if out_dir is not None else finetune_dir(config, target, variant)
    run_dir, finished = prepare_run_dir(run_dir, config, resume=resume, force=force)
    if finished:
        return RunSummary.load(run_dir)
    run = _FinetuneRun.open(config, target, variant, run_dir, pretrained=pretrained, callbacks=list(callbacks or []),
                            progress=progress or Progress.quiet(), claims=claims)
    held = []
    for fold in run.folds:
        try:
            run.fold(fold)
        except UnitsHeld as err:
            held.append(err)
    if held:
        run.manifest.save()
        raise UnitsHeld.merge(held)
    return _claimed(claims, run_dir, run.finish)


@dataclass
class _FinetuneRun:
    """A fine-tuning run being worked on: what its folds share, and each stage of one fold."""

    config: RunConfig
    target: str
    variant: str
    run_dir: Path
    data: CorpusData
    folds: list[Fold]
    manifest: Manifest
    descriptors: Optional[list[np.ndarray]]
    stats: Optional[np.ndarray]  # the linear reference's features, computed once for every fold
    pretrained: str | Path | None
    callbacks: list[Any]
    progress: Progress
    claims: Optional[Claims]

    @classmethod
    def open(cls, config: RunConfig, target: str, variant: str, run_dir: Path, **rest: Any) -> "_FinetuneRun":
        """Load the corpus, make (or read back) the folds, compute what every fold reads."""
        from vacnn_tf.bovw import descriptors_for
        from vacnn_tf.linear import band_statistics

        manifest = Manifest.open(run_dir, config, "finetune", {"target": target, "variant": variant})
        with manifest.stage("load"):
            data = load_corpus(config, target)
        manifest.data["data"] = describe(data)
        folds_path = run_dir / "folds.json"
        if folds_path.is_file():  # a resumed run keeps its split, even if fold code changed since
            folds = folds_from_json(read_json(folds_path), data.table)
        else:
            folds = make_folds(data.table, config.protocol, config.seed, config.train.val_fraction, corpus=target)
        _write_common(run_dir, config, data, folds)
        descriptors = None
        if config.model.use_bovw:
            with manifest.stage("descriptors"):
                descriptors = descriptors_for(
                    data.images, config.bovw, cache_dir=bovw_cache_dir(config),
                    progress=config.train.verbose > 0, workers=config.data.workers,
                )
        stats = band_statistics(data.images) if variant == "linear" else None
        return cls(config, target, variant, run_dir, data, folds, manifest, descriptors, stats, **rest)

    def fold(self, fold: Fold) -> None:
        """Train ``fold`` unless it is finished.

        Raises:
            UnitsHeld: another worker holds the fold, or the pretraining it starts from.
        """
        fold_dir = self.run_dir / f"fold_{fold.index}"
        if is_done(fold_dir):
            self.progress.skip(unit_key(fold_dir))
            return
        try:
            source = self._source(fold)  # a fold starts only once its pretraining is finished
        except UnitsHeld:
            raise UnitsHeld([unit_key(fold_dir)], waiting=True) from None
        _claimed(self.claims, fold_dir, lambda: self._train(fold, fold_dir, source))

    def _source(self, fold: Fold) -> Optional[Path]:
        """The pretrained model a ``finetuned`` fold starts from, pretrained here first where needed."""
        if self.variant != "finetuned":
            return None
        if self.pretrained is not None:
            return _pretrained_model_path(self.pretrained)
        exclude = pretrain_exclusions(self.target, self.config.protocol.name, fold)
        with self.manifest.stage("pretrain"):
            run = pretrain(self.config, exclude_speakers=exclude, resume=True, progress=self.progress, claims=self.claims)
        return _pretrained_model_path(run)

    def _train(self, fold: Fold, fold_dir: Path, source: Optional[Path]) -> None:
        if is_done(fold_dir):
            self.progress.skip(unit_key(fold_dir))
            return
        fold_dir.mkdir(parents=True, exist_ok=True)
        if source is not None:
            self.manifest.data.setdefault("pretrained", {})[str(fold.index)] = str(source)
        self.progress.start(unit_key(fold_dir),
                            fold_label(self.config, self.target, self.variant, fold.index, len(self.folds)))
        with self.manifest.stage(f"fold_{fold.index}"):
            bovw = _fold_bovw(self.config, self.descriptors, fold, fold_dir) if self.descriptors is not None else None
            if self.stats is not None:
                metrics = _linear_fold(self.config, self.data, fold, self.stats, bovw, fold_dir)
            else:
                metrics = self._network_fold(fold, fold_dir, source, bovw)
            log.info("fold %d: accuracy %.4f, UAR %.4f", fold.index, metrics["accuracy"], metrics["uar"])
        self.progress.finish(unit_key(fold_dir))

    def _network_fold(self, fold: Fold, fold_dir: Path, source: Optional[Path], bovw: Optional[np.ndarray]) -> dict[str, Any]:
        import keras

        from vacnn_tf.distribute import strategy_scope
        from vacnn_tf.fitting import set_seed
        from vacnn_tf.models import adapt_input_norm, build_finetuned, build_model

        config = self.config
        # here, not earlier: a worker that trains no network (the linear reference, or a worker
        # whose folds are all held elsewhere) leaves threads and XLA flags to whoever does
        configure_runtime(config.train)
        model_cfg = config.model if self.variant == "finetuned" else replace(config.model, freeze_through="none")
        set_seed(config.seed + fold.index)  # per fold, so a resumed fold starts as it would have
        with strategy_scope(config.train):
            if source is not None:
                base = keras.models.load_model(source, compile=False)
            else:
                base = build_model(config.model.architecture, len(PRETRAIN_CLASSES), config.model)
            model = build_finetuned(base, len(self.data.classes), model_cfg, use_bovw=config.model.use_bovw,
                                    bovw_size=config.bovw.k, bovw_train=bovw[fold.train] if bovw is not None else None)
            if self.variant == "pure":
                model.trainable = True  # nothing frozen: the fine-tuned architecture trained from scratch
                adapt_input_norm(model, self.data.images[fold.train])
            metrics = _train_and_test(config, model, self.data, fold, bovw, fold_dir, config.train.epochs,
                                      [*self.callbacks, *_guard(self.claims, fold_dir)])
        keras.backend.clear_session()
        return metrics

    def finish(self) -> RunSummary:
        """Every fold is finished: the run's tables, ``summary.json`` and ``DONE``."""
        if is_done(self.run_dir):  # finished by another worker
            return RunSummary.load(self.run_dir)
        with self.manifest.stage("evaluate"):
            evaluate(self.run_dir)
        summary = _summary(self.run_dir, self.config, self.target, self.variant, self.data.classes, len(self.folds))
        write_json(self.run_dir / "summary.json", asdict(summary))
        self.manifest.data["result"] = {"accuracy_mean": summary.accuracy_mean, "uar_mean": summary.uar_mean}
        self.manifest.save()
        mark_done(self.run_dir)
        return summary


def _summary(run_dir: Path, config: RunConfig, target: str, variant: str, classes: Sequence[str], n_folds: int) -> RunSummary:
    per_fold = [read_json(run_dir / f"fold_{k}" / "metrics.json") for k in range(n_folds)]
    acc = np.array([m["accuracy"] for m in per_fold])
    uar = np.array([m["uar"] for m in per_fold])
    return RunSummary(
        run_dir=str(run_dir), target=target, variant=variant, protocol=config.protocol.name,
        architecture=config.model.architecture, use_bovw=config.model.use_bovw, classes=list(classes),
        folds=[{k: m[k] for k in ("fold", "accuracy", "uar", "test", "test_speakers", "best_epoch", "epochs_run")} for m in per_fold],
        accuracy_mean=float(acc.mean()), accuracy_std=sample_std(acc), uar_mean=float(uar.mean()), uar_std=sample_std(uar),
        caveat=LEAKAGE_CAVEAT if config.protocol.name == "paper" else "",
        audit=_audit_summary(per_fold),
    )


AUDIT_NOTE = ("Leak audit (train.audit_test): the test accuracy of the epoch best on the TEST fold, what choosing "
              "the checkpoint on the test fold would report. Not a result: the selected models' accuracy is above.")


def _audit_summary(per_fold: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not per_fold or not all("audit_best_test_accuracy" in m for m in per_fold):
        return None
    best = np.array([m["audit_best_test_accuracy"] for m in per_fold])
    return {"best_test_accuracy_mean": float(best.mean()), "best_test_accuracy_std": sample_std(best),
            "per_fold": [{"fold": m["fold"], "best_test_accuracy": m["audit_best_test_accuracy"],
                          "epoch": m["audit_best_test_epoch"]} for m in per_fold],
            "note": AUDIT_NOTE}


# --- evaluation and many runs -----------------------------------------------------------------

def evaluate(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Rebuild ``RUN/metrics/`` from the per-fold ``predictions.csv`` files and return the tables.

    Works on fine-tuning runs (``fold_K/``) and pretraining runs (``pretrain/``). Only finished
    folds (with ``DONE``) are used, so a partial run can be inspected.
    """
    from vacnn_tf.evaluation import evaluate_predictions

    run_dir = Path(run_dir)
    if not (run_dir / "labels.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no labels.json).")
    classes = read_json(run_dir / "labels.json")["classes"]
    stages = sorted((p for p in run_dir.glob("fold_*") if is_done(p)), key=lambda p: int(p.name.split("_")[1]))
    if is_done(run_dir / PRETRAIN_STAGE):
        stages = [run_dir / PRETRAIN_STAGE]
    if not stages:
        raise FileNotFoundError(f"{run_dir} has no finished fold yet (fold_K/{DONE}).")
    frames = [pd.read_csv(p / "predictions.csv") for p in stages]
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    caveat = LEAKAGE_CAVEAT if manifest.get("protocol") == "paper" and manifest.get("kind") == "finetune" else ""
    title = f"{manifest.get('target', 'pretrain')} {manifest.get('variant', '')} ({manifest.get('protocol', '')})".strip()
    return evaluate_predictions(frames, classes, run_dir / "metrics", title=title, caveat=caveat)


def run_specs(config: RunConfig, specs: Iterable[RunSpec], *, resume: bool = True, force: bool = False) -> list[RunSummary]:
    """Run (or reuse) every spec. Pretraining and features are shared through their caches.

    Logs one line as each training (pretraining or fold) starts, with the time left
    (:mod:`vacnn_tf.progress`).

    Example: Table 3 needs ``[RunSpec(t, v, o) for t in TARGETS for v, o in
    (("pure", {}), ("finetuned", {}), ("finetuned", {"model.architecture": "vacnn-cbam"}))]``.
    """
    runs = [(replace(config, **dict(spec.overrides)), spec) for spec in specs]
    tables: dict[tuple[object, ...], pd.DataFrame] = {}
    progress = Progress([unit for cfg, spec in runs
                         for unit in plan_finetune(cfg, spec.target, spec.variant, force=force, tables=tables)])
    return [finetune(cfg, spec.target, variant=spec.variant, resume=resume, force=force, progress=progress)
            for cfg, spec in runs]
