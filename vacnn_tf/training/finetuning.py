"""Fine-tuning: the cross-validation of one variant on a target corpus (sections 4.3-4.4).

* :func:`finetune` (``vacnn finetune``) runs the folds of ``config.protocol`` for one variant:
  ``finetuned`` (from the pretrained checkpoint, frozen through VA block 1, Figure 3), ``pure``
  (the same architecture from random initialisation with nothing frozen, Table 3) or ``linear``
  (not the paper's: logistic regression on per-mel-band statistics plus the BOVW histogram).
  Each fold fits its BOVW vocabulary on its training part only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.corpora.labels import PRETRAIN_CLASSES
from vacnn_tf.datasets.folds import LEAKAGE_CAVEAT, Fold, check_protocol, folds_from_json, make_folds, pretrain_exclusions
from vacnn_tf.datasets.loading import CorpusData, describe, load_corpus
from vacnn_tf.evaluation.metrics import sample_std
from vacnn_tf.models.runtime import configure_runtime
from vacnn_tf.storage import bovw_cache_dir, read_json, write_json
from vacnn_tf.training.claims import Claims, UnitsHeld
from vacnn_tf.training.pretraining import check_pretraining_excludes, pretrain, pretrained_model_path
from vacnn_tf.training.progress import Progress, fold_label, unit_key
from vacnn_tf.training.run_dirs import (Manifest, RunExistsError, finetune_dir, finetune_key, is_done, mark_done,
                                       prepare_run_dir, run_key)
from vacnn_tf.training.stage import claim_guard, claimed, evaluate, no_force_with_claims, train_and_test, write_common, write_fold

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("finetuned", "pure", "linear")
TARGETS: tuple[str, ...] = ("ravdess", "emodb", "savee")


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


def _fold_bovw(config: RunConfig, descriptors: list[np.ndarray], fold: Fold, fold_dir: Path) -> np.ndarray:
    """Fit (or reload) the fold's vocabulary on its training part only; histograms for every row."""
    from vacnn_tf.features.bovw import BovwVocabulary, fit_fold_vocabulary

    path = fold_dir / "vocabulary.npz"
    if path.is_file():
        vocab = BovwVocabulary.load(path, expected=config.bovw)
    else:
        vocab = fit_fold_vocabulary(descriptors, fold.train, config.bovw, seed=config.seed + fold.index)
        vocab.save(path)
    return vocab.histograms(descriptors)


def _linear_fold(config: RunConfig, data: CorpusData, fold: Fold, stats: np.ndarray, bovw: Optional[np.ndarray],
                 stage_dir: Path) -> dict[str, Any]:
    """The ``linear`` variant on one fold: fitted on training + validation, no epochs to select."""
    from vacnn_tf.models.linear import fit_predict

    x = stats if bovw is None else np.concatenate([stats, bovw], axis=1)
    fit_rows = np.concatenate([fold.train, fold.val])
    probs = fit_predict(x[fit_rows], data.y[fit_rows], x[fold.test], len(data.classes), config.model.linear_c,
                        config.seed + fold.index)
    return write_fold(data, fold, probs, stage_dir, {"best_epoch": None, "best_val_accuracy": None, "epochs_run": 0,
                                                     "stopped_early": False})


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
        out_dir: Run directory; default :func:`~vacnn_tf.training.run_dirs.finetune_dir`.
        variant: ``finetuned`` (from the pretrained checkpoint), ``pure`` (random init, nothing
            frozen) or ``linear`` (not the paper's: logistic regression on per-mel-band statistics
            plus the BOVW histogram, :mod:`vacnn_tf.models.linear`, a reference for what no network reaches).
        pretrained: A pretraining run dir or ``.keras`` file used for every fold; None pretrains as
            needed (one shared pretraining, or one per fold for a RAVDESS target under ``speaker``).
        resume: Continue an unfinished run (finished folds are skipped) or return a finished one.
        force: Delete the run directory and start over.
        callbacks: Extra Keras callbacks for every fit (tests simulate crashes with one).
        progress: The grid whose units are this run's folds and pretrainings (reports each start);
            None reports nothing.
        claims: This worker's claims when other workers share the run (:mod:`vacnn_tf.training.workers`):
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
    no_force_with_claims(force, claims)
    run_dir = Path(out_dir) if out_dir is not None else finetune_dir(config, target, variant, pretrained)
    run_dir, finished = prepare_run_dir(run_dir, config, resume=resume, force=force, key=finetune_key(pretrained))
    if finished:
        return RunSummary.load(run_dir)
    run = _FinetuneRun.open(config, target, variant, run_dir, pretrained=pretrained, callbacks=list(callbacks or []),
                            progress=progress or Progress.quiet(), claims=claims)
    if pretrained is not None:  # before any fold trains: a leak found at fold 3 would waste folds 0-2
        required: dict[str, list[str]] = {}
        for fold in run.folds:
            for corpus, speakers in pretrain_exclusions(target, config.protocol.name, fold).items():
                required.setdefault(corpus, []).extend(speakers)
        check_pretraining_excludes(pretrained, required)
    held = []
    for fold in run.folds:
        try:
            run.fold(fold)
        except UnitsHeld as err:
            held.append(err)
    if held:
        run.manifest.save()
        raise UnitsHeld.merge(held)
    return claimed(claims, run_dir, run.finish)


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
        from vacnn_tf.features.bovw import descriptors_for
        from vacnn_tf.models.linear import band_statistics

        extra = {"target": target, "variant": variant}
        if rest.get("pretrained") is not None:
            extra["config_key"] = run_key(config, rest["pretrained"])
        manifest = Manifest.open(run_dir, config, "finetune", extra)
        with manifest.stage("load"):
            data = load_corpus(config, target)
        manifest.data["data"] = describe(data)
        folds_path = run_dir / "folds.json"
        if folds_path.is_file():  # a resumed run keeps its split, even if fold code changed since
            folds = folds_from_json(read_json(folds_path), data.table)
        else:
            folds = make_folds(data.table, config.protocol, config.seed, config.train.val_fraction, corpus=target)
        write_common(run_dir, config, data, folds)
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
        claimed(self.claims, fold_dir, lambda: self._train(fold, fold_dir, source))

    def _source(self, fold: Fold) -> Optional[Path]:
        """The pretrained model a ``finetuned`` fold starts from, pretrained here first where needed."""
        if self.variant != "finetuned":
            return None
        if self.pretrained is not None:
            return pretrained_model_path(self.pretrained)
        exclude = pretrain_exclusions(self.target, self.config.protocol.name, fold)
        with self.manifest.stage("pretrain"):
            run = pretrain(self.config, exclude_speakers=exclude, resume=True, progress=self.progress, claims=self.claims)
        return pretrained_model_path(run)

    def _train(self, fold: Fold, fold_dir: Path, source: Optional[Path]) -> None:
        if is_done(fold_dir):
            self.progress.skip(unit_key(fold_dir))
            return
        if self.pretrained is not None:
            check_one_pretraining(self.manifest.data.get("pretrained") or {}, source, self.manifest.path.parent)
        fold_dir.mkdir(parents=True, exist_ok=True)
        if source is not None:
            self.manifest.data.setdefault("pretrained", {})[str(fold.index)] = str(Path(source).resolve())
        self.progress.start(unit_key(fold_dir),
                            fold_label(self.config, self.target, self.variant, fold.index, self.folds[-1].index + 1))
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

        from vacnn_tf.models.finetuned import build_finetuned
        from vacnn_tf.models.networks import adapt_input_norm, build_model, check_image_size, is_baseline
        from vacnn_tf.training.distribute import strategy_scope
        from vacnn_tf.training.fitting import set_seed

        config = self.config
        # here, not earlier: a worker that trains no network (the linear reference, or a worker
        # whose folds are all held elsewhere) leaves threads and XLA flags to whoever does
        configure_runtime(config.train)
        model_cfg = config.model if self.variant == "finetuned" else replace(config.model, freeze_through="none")
        set_seed(config.seed + fold.index)  # per fold, so a resumed fold starts as it would have
        with strategy_scope(config.train):
            if source is not None:
                base = keras.models.load_model(source, compile=False)
                check_image_size(base, config, source)
            else:
                base = build_model(config.model.architecture, len(PRETRAIN_CLASSES), config.model,
                                   config.features.image_size)
            model = build_finetuned(base, len(self.data.classes), model_cfg, use_bovw=config.model.use_bovw,
                                    bovw_size=config.bovw.k, bovw_train=bovw[fold.train] if bovw is not None else None)
            if self.variant == "pure":
                model.trainable = True  # nothing frozen: the fine-tuned architecture trained from scratch
                adapt_input_norm(model, self.data.images[fold.train])
            epochs = config.train.epochs_for(is_baseline(config.model.architecture), pretraining=False)
            metrics = train_and_test(config, model, self.data, fold, bovw, fold_dir, epochs,
                                     [*self.callbacks, *claim_guard(self.claims, fold_dir)])
        keras.backend.clear_session()
        return metrics

    def finish(self) -> RunSummary:
        """Every fold is finished: the run's tables, ``summary.json`` and ``DONE``."""
        if is_done(self.run_dir):  # finished by another worker
            return RunSummary.load(self.run_dir)
        with self.manifest.stage("evaluate"):
            evaluate(self.run_dir)
        summary = _summary(self.run_dir, self.config, self.target, self.variant, self.data.classes,
                           [fold.index for fold in self.folds])
        write_json(self.run_dir / "summary.json", asdict(summary))
        self.manifest.data["result"] = {"accuracy_mean": summary.accuracy_mean, "uar_mean": summary.uar_mean}
        self.manifest.save()
        mark_done(self.run_dir)
        return summary


def _summary(run_dir: Path, config: RunConfig, target: str, variant: str, classes: Sequence[str],
             fold_indices: Sequence[int]) -> RunSummary:
    per_fold = [read_json(run_dir / f"fold_{k}" / "metrics.json") for k in fold_indices]
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


def check_one_pretraining(recorded: dict[str, str], source: Optional[Path], run_dir: Path) -> None:
    """Refuse to add a fold fine-tuned from ``source`` (``--pretrained``) to a run whose folds started
    from another model. A resumed run's stored config cannot name the model it started from, so its key
    check cannot tell two pretrainings apart; without this a run would mix two of them in one table."""
    def same(a: str | Path, b: str | Path) -> bool:
        try:
            return Path(a).samefile(b)
        except OSError:
            return str(a) == str(b)

    others = sorted({path for path in recorded.values() if source is None or not same(path, source)})
    if others:
        raise RunExistsError(
            f"{run_dir} holds folds fine-tuned from {', '.join(others)}; this command names {source}. A run's folds "
            "start from one pretrained model: pass --out for a new run, or --force to start this one over.")
