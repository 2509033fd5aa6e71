"""What a pretraining and every fold of a fine-tuning run share, and the run's tables.

One *stage* is a pretraining or one fold: :func:`train_and_test` compiles, fits with resume,
saves the selected model, predicts the test part and writes its predictions and metrics
(:func:`write_fold`), then marks the stage done. :func:`claimed` and :func:`claim_guard` hold a
stage's claim while other workers share the folder (:mod:`vacnn_tf.training.workers`).
:func:`evaluate` (``vacnn evaluate``) rebuilds a run's tables from its per-fold predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import pandas as pd

from vacnn_tf.config import RunConfig
from vacnn_tf.datasets.folds import LEAKAGE_CAVEAT, Fold, folds_to_json
from vacnn_tf.datasets.loading import CorpusData
from vacnn_tf.storage import atomic_write, read_json, write_json
from vacnn_tf.training.claims import Claims, UnitsHeld
from vacnn_tf.training.progress import unit_key
from vacnn_tf.training.run_dirs import DONE, PRETRAIN_STAGE, is_done, mark_done


# --- one stage -------------------------------------------------------------------------------

def _datasets(
    config: RunConfig, data: CorpusData, fold: Fold, bovw: Optional[np.ndarray], seed: int, bs: int,
    replicas: int = 1,
) -> tuple[Callable[[Any], Any], Optional[Any], Any]:
    """Train (a function of the epoch-index variable: its draws follow the epoch, for resume), validation,
    test, in batches of ``bs`` rows (over all ``replicas``, none of which gets an empty batch)."""
    from vacnn_tf.datasets.pipeline import Masking, balanced_class_weights, make_dataset
    from vacnn_tf.training.distribute import eval_batch_size, without_short_batch

    masking = Masking.from_train_config(config.train, config.features.low_freq_at_bottom)
    weights = (balanced_class_weights(data.y[fold.train], len(data.classes))
               if config.train.class_weight == "balanced" else None)

    def part(idx: np.ndarray, train: bool, epoch: Any = None, batch: int = bs) -> Any:
        return make_dataset(
            data.images[idx], data.y[idx], bovw[idx] if bovw is not None else None,
            batch_size=batch, shuffle=train, seed=seed, epoch=epoch,
            masking=masking if train else None, mixup=config.train.mixup if train else 0.0,
            num_classes=len(data.classes), class_weights=weights if train else None,
        )

    def train(epoch: Any) -> Any:
        return without_short_batch(part(fold.train, True, epoch), len(fold.train), bs, replicas)

    val = part(fold.val, False, batch=eval_batch_size(len(fold.val), bs, replicas)) if len(fold.val) else None
    return train, val, part(fold.test, False)  # the test part is predicted outside the strategy


def train_and_test(
    config: RunConfig, model: Any, data: CorpusData, fold: Fold, bovw: Optional[np.ndarray],
    stage_dir: Path, epochs: int, callbacks: Optional[list[Any]] = None,
) -> dict[str, Any]:
    """Compile, fit with resume, save the selected model, predict the test part, write metrics.

    Called inside the :func:`vacnn_tf.training.distribute.strategy_scope` the model was built in; its
    batches hold ``train.batch_size`` rows per replica or in all (``train.batch_per``).
    """
    from vacnn_tf.evaluation.metrics import accuracy
    from vacnn_tf.models.optimization import compile_model
    from vacnn_tf.models.runtime import predict
    from vacnn_tf.training.distribute import global_batch_size, train_steps
    from vacnn_tf.training.fitting import audit_facts, cleanup_fold, fit_resumable

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
    metrics = write_fold(data, fold, probs, stage_dir, {
        "best_epoch": (state.get("best") or {}).get("epoch"), "best_val_accuracy": (state.get("best") or {}).get("acc"),
        "epochs_run": state["epochs_run"], "stopped_early": bool(state.get("stopped")), **audit_facts(state),
    })
    cleanup_fold(stage_dir)  # after DONE: a kill in between leaves a spare backup, never a lost fold
    return metrics


def write_fold(data: CorpusData, fold: Fold, probs: np.ndarray, stage_dir: Path, training: dict[str, Any]) -> dict[str, Any]:
    """Write the test part's predictions and metrics (plus ``training``'s facts), then mark the stage done."""
    from vacnn_tf.evaluation.metrics import fold_metrics, predictions_frame

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


def write_common(run_dir: Path, config: RunConfig, data: CorpusData, folds: list[Fold]) -> None:
    """``labels.json``, and ``folds.json`` unless the run holds it already (a resumed run keeps its split)."""
    write_json(run_dir / "labels.json", {"classes": list(data.classes), "corpus": data.name})
    if not (run_dir / "folds.json").is_file():
        write_json(run_dir / "folds.json", folds_to_json(folds, data.table, config.protocol.name, config.seed))


# --- claims ----------------------------------------------------------------------------------

T = TypeVar("T")


def claimed(claims: Optional[Claims], unit: Path, work: Callable[[], T]) -> T:
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


def claim_guard(claims: Optional[Claims], unit: Path) -> list[Any]:
    """A callback that stops a fit whose unit another worker took over (none without claims)."""
    if claims is None:
        return []
    from vacnn_tf.training.fitting import ClaimGuard

    return [ClaimGuard(lambda: claims.holds(unit), str(unit))]


def no_force_with_claims(force: bool, claims: Optional[Claims]) -> None:
    if force and claims is not None:
        raise ValueError("force deletes runs other workers may be training: it takes no claims (clear the runs "
                         "first, then start the workers). Received: force=True with claims")


# --- a run's tables ---------------------------------------------------------------------------

def evaluate(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Rebuild ``RUN/metrics/`` from the per-fold ``predictions.csv`` files and return the tables.

    Works on fine-tuning runs (``fold_K/``) and pretraining runs (``pretrain/``). Only finished
    folds (with ``DONE``) are used, so a partial run can be inspected.
    """
    from vacnn_tf.evaluation.metrics import evaluate_predictions

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
    names = None if stages[0].name == PRETRAIN_STAGE else [p.name for p in stages]
    return evaluate_predictions(frames, classes, run_dir / "metrics", title=title, caveat=caveat, names=names)
