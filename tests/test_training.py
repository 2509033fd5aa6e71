"""Training stages on the synthetic corpus: end to end, resume after a crash, determinism, run-dir rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.training.run_dirs import RunExistsError


class Crash(RuntimeError):
    pass


def _crash_at(epoch: int):
    import keras

    class CrashAt(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            if e == epoch:
                raise Crash(f"simulated kill at epoch {e}")

    return CrashAt()


@pytest.fixture(scope="module")
def cache(module_tmp) -> Path:
    """One synthetic corpus and feature cache for the whole module."""
    return module_tmp / "cache"


def tiny(cache: Path, out: Path, **changes) -> RunConfig:
    base = {
        "out": str(out), "data.cache_dir": str(cache), "data.workers": 1, "train.verbose": 0,
        "train.epochs": 2, "train.patience": 5, "protocol.max_folds": 1, "protocol.subsample": None,
        "data.synth_per_class": 6, "model.use_bovw": True, "bovw.k": 16,
        "train.xla_fusion": False,  # compiling clusters would cost more than 2 tiny epochs gain
        "features.image_size": 64,  # a twelfth of the paper's pixels: these tests check bookkeeping
    }
    return replace(RunConfig(), **{**base, **changes})


def test_resume_after_a_crash_redoes_no_finished_fold(cache, tmp_path):
    # masks, mixup, class weights and dropout on: the resumed epoch must draw the order, seeds and masks the
    # unbroken one drew
    cfg = tiny(cache, tmp_path, **{"protocol.max_folds": 2, "train.augment": True, "train.mixup": 0.2,
                                   "model.head_dropout": 0.3, "train.class_weight": "balanced"})
    run = tmp_path / "run"
    from vacnn_tf.training.finetuning import finetune

    # Fold 0 finishes; fold 1 is killed at the start of its second epoch.
    crash = _crash_at(1)
    with pytest.raises(Crash):
        finetune(cfg, "emodb", run, variant="pure", callbacks=[_OnlyFold(run / "fold_1", crash)])
    assert (run / "fold_0" / "DONE").is_file() and not (run / "fold_1" / "DONE").is_file()
    assert len(json.loads((run / "fold_1" / "selection.json").read_text())["history"]) == 1
    done_0 = (run / "fold_0" / "DONE").read_text()
    with pytest.raises(RunExistsError, match="unfinished run"):
        finetune(cfg, "emodb", run, variant="pure")
    summary = finetune(cfg, "emodb", run, variant="pure", resume=True)
    assert (run / "fold_0" / "DONE").read_text() == done_0  # not redone
    history = pd.read_csv(run / "fold_1" / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # epoch 0 before the crash, only epoch 1 after it
    # Fold 1 alone, unbroken: a fold's seed follows its index, so it trains as it did above.
    unbroken = finetune(replace(cfg, protocol=replace(cfg.protocol, first_fold=1)), "emodb", tmp_path / "unbroken",
                        variant="pure")
    pd.testing.assert_frame_equal(history, pd.read_csv(tmp_path / "unbroken" / "fold_1" / "history.csv"), rtol=1e-5)
    assert [f["accuracy"] for f in summary.folds[1:]] == [f["accuracy"] for f in unbroken.folds]
    assert len(summary.folds) == 2 and (run / "DONE").is_file()
    with pytest.raises(RunExistsError, match="finished run"):
        finetune(cfg, "emodb", run, variant="pure")
    assert finetune(cfg, "emodb", run, variant="pure", resume=True).accuracy_mean == summary.accuracy_mean
    with pytest.raises(RunExistsError, match="another configuration"):
        finetune(replace(cfg, seed=1), "emodb", run, variant="pure", resume=True)


class _OnlyFold:
    """Wrap a callback so it acts only inside one fold's directory (the fold being fitted)."""

    def __new__(cls, fold_dir: Path, inner):
        import keras

        class Only(keras.callbacks.Callback):
            def on_epoch_begin(self, e, logs=None):
                if fold_dir.is_dir() and not (fold_dir / "DONE").is_file():
                    inner.on_epoch_begin(e, logs)

        return Only()


# Slow: two more trainings. In CI the resume test checks the same identity (a resumed run and an
# unbroken one of the same seed give the same histories and metrics).
@pytest.mark.slow
def test_same_seed_same_metrics(cache, tmp_path):
    from vacnn_tf.training.finetuning import finetune

    from vacnn_tf.cli import main
    from vacnn_tf.training.finetuning import RunSummary

    # band input norm on (ours): its statistics are fitted per fold, deterministically too
    cfg = tiny(cache, tmp_path, **{"train.epochs": 1, "model.input_norm": "band"})
    a = finetune(cfg, "savee", tmp_path / "a", variant="pure")
    # The second run goes through the CLI with the same settings: same split, same weights.
    sets = [f"{k}={v}" for k, v in {
        "out": tmp_path, "data.cache_dir": cache, "data.workers": 1, "train.verbose": 0, "train.epochs": 1,
        "train.patience": 5, "protocol.max_folds": 1, "data.synth_per_class": 6, "bovw.k": 16,
        "model.input_norm": "band", "features.image_size": 64}.items()]
    argv = ["finetune", "--target", "savee", "--variant", "pure", "--out", str(tmp_path / "b"), "--protocol", "paper"]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 0
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 2  # finished: refuses without --resume/--force
    assert main(["evaluate", "--run", str(tmp_path / "b")]) == 0
    b = RunSummary.load(tmp_path / "b")
    pa = pd.read_csv(tmp_path / "a" / "fold_0" / "predictions.csv")
    pb = pd.read_csv(tmp_path / "b" / "fold_0" / "predictions.csv")
    probs = [c for c in pa.columns if c.startswith("prob_")]
    np.testing.assert_allclose(pa[probs].to_numpy(), pb[probs].to_numpy(), rtol=1e-5, atol=1e-6)
    assert a.folds[0]["accuracy"] == b.folds[0]["accuracy"]
    import keras

    norm = keras.models.load_model(tmp_path / "a" / "fold_0" / "model.keras").get_layer("stem_band_norm")
    assert 0.0 < float(norm.mean.numpy().mean()) < 1.0 and not np.allclose(norm.std.numpy(), 1.0)  # adapted, not the identity
    assert json.loads((tmp_path / "a" / "folds.json").read_text())["folds"] == json.loads(
        (tmp_path / "b" / "folds.json").read_text())["folds"]


@pytest.mark.slow  # two trainings of a diagnostic that never feeds a result
def test_leak_audit_scores_the_test_fold_without_changing_training(cache, tmp_path):
    from vacnn_tf.training.finetuning import RunSummary, finetune

    # augmentation, mixup and weight averaging on: every random and swapped path the audit sits beside
    changes = {"train.epochs": 2, "train.augment": True, "train.mixup": 0.2, "train.ema": 0.9}
    plain = finetune(tiny(cache, tmp_path, **changes), "emodb", tmp_path / "plain", variant="pure")
    audited = finetune(tiny(cache, tmp_path, **changes, **{"train.audit_test": True}), "emodb", tmp_path / "audit",
                       variant="pure")
    pa = pd.read_csv(tmp_path / "plain" / "fold_0" / "predictions.csv")
    pb = pd.read_csv(tmp_path / "audit" / "fold_0" / "predictions.csv")
    probs = [c for c in pa.columns if c.startswith("prob_")]
    np.testing.assert_allclose(pa[probs].to_numpy(), pb[probs].to_numpy(), rtol=1e-5, atol=1e-6)
    assert plain.audit is None
    history = json.loads((tmp_path / "audit" / "fold_0" / "selection.json").read_text())["history"]
    scores = [h["audit_test_accuracy"] for h in history]
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    metrics = json.loads((tmp_path / "audit" / "fold_0" / "metrics.json").read_text())
    # the audit scored the very weights selection kept (EMA-swapped): same accuracy at the selected epoch
    assert scores[metrics["best_epoch"]] == pytest.approx(metrics["accuracy"])  # epochs count from 0, as Keras
    assert metrics["audit_best_test_accuracy"] == max(scores) >= metrics["accuracy"]
    assert metrics["audit_best_test_epoch"] == scores.index(max(scores))
    assert "audit_test_accuracy" in pd.read_csv(tmp_path / "audit" / "fold_0" / "history.csv").columns
    loaded = RunSummary.load(tmp_path / "audit")
    assert loaded.audit["best_test_accuracy_mean"] == pytest.approx(max(scores))
    assert "Not a result" in loaded.audit["note"]


def test_pretraining_is_keyed_by_what_it_excludes(cache, tmp_path):
    from vacnn_tf.training.run_dirs import finetune_dir, pretrain_dir

    cfg = tiny(cache, tmp_path)
    assert pretrain_dir(cfg) != pretrain_dir(cfg, {"ravdess": ["01", "02"]})
    # The protocol alone does not change a pretraining (EmoDB/SAVEE targets share it).
    assert pretrain_dir(cfg) == pretrain_dir(replace(cfg, **{"protocol.name": "speaker"}))
    assert pretrain_dir(cfg) == pretrain_dir(replace(cfg, **{"train.verbose": 2}))
    assert finetune_dir(cfg, "emodb", "pure") != finetune_dir(replace(cfg, **{"model.architecture": "vacnn-cbam"}), "emodb", "pure")


def test_runs_with_and_without_bovw_reuse_one_pretraining(cache, tmp_path):
    """Table 10's VACNN and VACNN + BOVW rows differ only in fine-tuning settings: the second
    must reuse the first one's finished pretraining, not refuse it as another configuration."""
    from vacnn_tf.training.run_dirs import RunExistsError, mark_done, prepare_run_dir
    from vacnn_tf.training.run_dirs import pretrain_dir, pretrain_key

    with_bovw = tiny(cache, tmp_path)
    without = replace(with_bovw, **{"model.use_bovw": False, "model.state_pooling": "gap"})
    assert pretrain_dir(with_bovw) == pretrain_dir(without)
    path, finished = prepare_run_dir(pretrain_dir(without), without, key=pretrain_key)
    assert not finished
    mark_done(path)
    assert prepare_run_dir(path, with_bovw, resume=True, key=pretrain_key) == (path, True)
    # a fine-tuning run keeps the strict key: another setting is another run
    with pytest.raises(RunExistsError, match="another configuration"):
        prepare_run_dir(path, with_bovw, resume=True)


def test_fine_tuning_settings_leave_the_pretraining_alone(cache, tmp_path):
    """A fine-tuning that trains longer, more patiently or with other augmentation must reuse the
    pretraining it shares, not start hours of pretraining again; the pretraining's own values key it."""
    from vacnn_tf.training.run_dirs import pretrain_key, run_key

    own = {"train.pretrain_epochs": 3, "train.pretrain_patience": 2, "train.pretrain_augment": False,
           "train.pretrain_mixup": 0.0, "train.pretrain_decay_every": 20}
    cfg = tiny(cache, tmp_path, **own)
    fine_tuning = {"train.epochs": 9, "train.patience": 7, "train.augment": True, "train.mixup": 0.2,
                   "train.decay_every": 5}
    assert pretrain_key(cfg) == pretrain_key(replace(cfg, **fine_tuning))
    for key, other in (("train.pretrain_epochs", 4), ("train.pretrain_patience", 3), ("train.pretrain_augment", True),
                       ("train.pretrain_mixup", 0.4), ("train.pretrain_decay_every", 30)):
        assert pretrain_key(cfg) != pretrain_key(replace(cfg, **{key: other})), key
    # a pretraining runs with its own values, 0.0 and False included
    staged = replace(cfg, **fine_tuning).train.for_pretraining()
    assert (staged.epochs, staged.patience, staged.augment, staged.mixup, staged.decay_every) == (3, 2, False, 0.0, 20)
    # unset, a pretraining follows the fine-tuning's value, which then keys it
    shared = replace(cfg, **{name: None for name in own})
    assert shared.train.for_pretraining() == shared.train
    for key, other in fine_tuning.items():
        assert pretrain_key(shared) != pretrain_key(replace(shared, **{key: other})), key
    # the same recipe spelled either way is one pretraining, and one fine-tuning run
    spelled = replace(shared, **{"train.pretrain_patience": shared.train.patience,
                                 "train.pretrain_augment": shared.train.augment, "train.pretrain_mixup": shared.train.mixup,
                                 "train.pretrain_decay_every": shared.train.decay_every})
    assert pretrain_key(spelled) == pretrain_key(shared) and run_key(spelled) == run_key(shared)
    assert run_key(cfg) != run_key(replace(cfg, **{"train.pretrain_patience": 4}))
    # class weights are a fine-tuning's alone: they key its run, never the pretraining it shares
    weighted = replace(cfg, **{"train.class_weight": "balanced"})
    assert weighted.train.for_pretraining().class_weight == "none"
    assert pretrain_key(weighted) == pretrain_key(cfg) and run_key(weighted) != run_key(cfg)


def test_a_model_key_added_later_keys_a_pretraining_only_off_its_default():
    """Pretrainings on disk are named by this key: a new model setting at its default must not rename them."""
    from vacnn_tf.config import RunConfig
    from vacnn_tf.training.run_dirs import pretrain_key

    cfg = RunConfig()
    assert pretrain_key(cfg) == "a29e3d03b4c5"  # the default config's key before model.baseline_image_size existed
    resnet = replace(cfg, **{"model.architecture": "resnet"})
    assert pretrain_key(resnet) != pretrain_key(replace(resnet, **{"model.baseline_image_size": 128}))
    assert pretrain_key(cfg) != pretrain_key(replace(cfg, **{"model.residual": True}))
    assert pretrain_key(cfg) == pretrain_key(replace(cfg, **{"model.finetune_fc": False}))  # read by fine-tuning only
    for key, other in (("model.bovw_input", "standardize"), ("model.linear_c", 1.0)):  # fine-tuning only, keyed as ever
        assert pretrain_key(cfg) == pretrain_key(replace(cfg, **{key: other})), key
    assert pretrain_key(cfg) == pretrain_key(replace(cfg, **{"model.attention_gate_bias": 1.0}))


def test_a_pretraining_stored_under_another_name_is_found_by_its_settings(cache, tmp_path):
    """Runs keyed by an older naming keep being reused: found by their stored config, exclusions included."""
    from vacnn_tf.config import to_yaml
    from vacnn_tf.storage import write_json
    from vacnn_tf.training.run_dirs import pretrain_dir

    cfg = tiny(cache, tmp_path)
    exclude = {"ravdess": ["01", "02"]}
    fresh = pretrain_dir(cfg, exclude)
    old = fresh.parent / f"{cfg.model.architecture}-s{cfg.seed}-0123456789ab"
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(to_yaml(cfg))
    write_json(old / "manifest.json", {"exclude_speakers": exclude})
    assert pretrain_dir(cfg, exclude) == old
    assert pretrain_dir(cfg) != old  # other exclusions: another run
    assert pretrain_dir(replace(cfg, **{"train.pretrain_epochs": 5}), exclude) != old
    (old / "manifest.json").write_text("{not json")  # unreadable: never reused, never an error
    assert pretrain_dir(cfg, exclude) == fresh


def test_a_corpus_root_spelled_two_ways_is_one_run(cache, tmp_path, monkeypatch):
    """Resuming with --data-root /abs/corpora a run started with --data-root ../corpora must match."""
    from vacnn_tf.training.run_dirs import pretrain_key
    from vacnn_tf.training.run_dirs import run_key

    (tmp_path / "corpora").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    relative = tiny(cache, tmp_path, **{"data.data_root": "../corpora"})
    absolute = replace(relative, **{"data.data_root": str(tmp_path / "corpora")})
    other = replace(relative, **{"data.data_root": str(tmp_path / "work")})
    assert run_key(relative) == run_key(absolute) != run_key(other)
    assert pretrain_key(relative) == pretrain_key(absolute) != pretrain_key(other)


@pytest.mark.parametrize("bad, message", [({"target": "tess"}, "target"), ({"variant": "frozen"}, "variant")])
def test_bad_arguments_are_named(cache, tmp_path, bad, message):
    from vacnn_tf.training.finetuning import finetune

    args = {"target": "emodb", "variant": "pure", **bad}
    with pytest.raises(ValueError, match=message):
        finetune(tiny(cache, tmp_path), args["target"], tmp_path / "x", variant=args["variant"])


def test_end_to_end_pretrain_then_finetune_writes_the_run_layout(cache, tmp_path, monkeypatch):
    """Pretrain on synthetic TESS + RAVDESS, fine-tune on synthetic EmoDB (2 folds): every file appears."""
    from vacnn_tf.training import fitting
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.pretraining import pretrain
    from vacnn_tf.training.stage import evaluate

    patience, fit = [], fitting.fit_resumable
    monkeypatch.setattr(fitting, "fit_resumable", lambda *a, **kw: patience.append(kw["patience"]) or fit(*a, **kw))
    cfg = tiny(cache, tmp_path, **{"protocol.max_folds": 2, "train.pretrain_epochs": 1, "train.pretrain_patience": 3})
    pre = pretrain(cfg)
    for name in ("config.yaml", "manifest.json", "labels.json", "folds.json", "DONE", "pretrain/model.keras",
                 "pretrain/predictions.csv", "metrics/summary.csv", "metrics/confusion.png"):
        assert (pre / name).is_file(), name
    summary = finetune(cfg, "emodb")
    run = Path(summary.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["protocol"] == "paper" and "leakage_caveat" in manifest and summary.caveat
    assert {"tensorflow", "keras", "numpy", "opencv", "librosa", "scikit-learn"} <= set(manifest["packages"])
    assert {"load", "descriptors", "fold_0", "fold_1", "evaluate"} <= set(manifest["stages_seconds"])
    assert manifest["pretrained"]["0"].startswith(str(pre))  # the shared pretraining was reused
    for k in range(2):
        for name in ("model.keras", "vocabulary.npz", "metrics.json", "predictions.csv", "DONE"):
            assert (run / f"fold_{k}" / name).is_file(), (k, name)
        # model.keras holds the selected weights: the resume-only copies would double a run's disk use
        assert not (run / f"fold_{k}" / "best.weights.h5").exists() and not (run / f"fold_{k}" / "backup").exists()
    assert len(summary.folds) == 2 and 0.0 <= summary.accuracy_mean <= 1.0
    assert evaluate(run)["summary"].loc["mean", "accuracy"] == pytest.approx(summary.accuracy_mean)
    assert patience == [3, 5, 5]  # each stage stops on its own patience


@pytest.mark.slow
def test_end_to_end_learns_well_above_chance(tmp_path):
    """Pretrain + fine-tune on a larger synthetic corpus: mean accuracy at least twice chance (7 classes)."""
    from vacnn_tf.training.finetuning import finetune

    cfg = tiny(tmp_path / "cache", tmp_path, **{
        "data.synth_per_class": 20, "protocol.max_folds": 2, "train.epochs": 20, "train.pretrain_epochs": 15,
        "train.patience": 20, "train.val_fraction": 0.15, "bovw.k": 32,
    })
    summary = finetune(cfg, "emodb")
    assert summary.accuracy_mean >= 2 / 7, summary


def test_a_run_of_the_later_folds_alone_keeps_their_indices(cache, tmp_path):
    """``protocol.first_fold``: fold 1 run alone is reported as fold 1, in the summary and the tables."""
    from vacnn_tf.training.finetuning import finetune

    cfg = tiny(cache, tmp_path, **{"protocol.first_fold": 1, "protocol.max_folds": 2})
    summary = finetune(cfg, "emodb", tmp_path / "later", variant="linear")
    assert [f["fold"] for f in summary.folds] == [1]
    assert not (tmp_path / "later" / "fold_0").exists()
    table = (tmp_path / "later" / "metrics" / "summary.csv").read_text()
    assert "fold_1," in table and "fold_0," not in table


def test_a_given_pretraining_that_saw_a_folds_test_actors_is_refused(cache, tmp_path):
    """--pretrained under the speaker protocol on RAVDESS: the pretraining must have left out the
    fold's test actors, as its manifest records; a bare .keras file records nothing."""
    from vacnn_tf.storage import write_json
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.pretraining import check_pretraining_excludes

    run = tmp_path / "pre"
    (run / "pretrain").mkdir(parents=True)
    (run / "pretrain" / "model.keras").write_bytes(b"k")
    write_json(run / "manifest.json", {"exclude_speakers": {"ravdess": ["03", "07"]}})
    check_pretraining_excludes(run, {"ravdess": ["07", "03"]})
    with pytest.raises(ValueError, match=r"pretrained on ravdess speakers \['11'\], which this fold tests"):
        check_pretraining_excludes(run, {"ravdess": ["03", "11"]})
    bare = tmp_path / "bare.keras"
    bare.write_bytes(b"k")
    with pytest.raises(ValueError, match="bare.keras is not a pretraining run directory"):
        check_pretraining_excludes(bare, {"ravdess": ["03"]})
    write_json(run / "manifest.json", {"exclude_speakers": {}})  # an ordinary, shared pretraining
    cfg = tiny(cache, tmp_path, **{"protocol.name": "speaker"})
    with pytest.raises(ValueError, match="which this fold tests"):
        finetune(cfg, "ravdess", tmp_path / "ft", pretrained=run)
    assert not list((tmp_path / "ft").glob("fold_*"))  # refused before any fold trained


def test_a_run_refuses_folds_from_a_second_pretrained_model(tmp_path):
    """A resumed run's stored config cannot name its pretrained model: resuming with another model must stop, not mix."""
    from vacnn_tf.training.finetuning import check_one_pretraining
    from vacnn_tf.training.run_dirs import RunExistsError

    first, second = tmp_path / "a.keras", tmp_path / "b.keras"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    check_one_pretraining({}, first, tmp_path)  # nothing recorded yet
    check_one_pretraining({"0": str(first), "1": str(tmp_path / "." / "a.keras")}, first, tmp_path)  # one file, two spellings
    with pytest.raises(RunExistsError, match=r"holds folds fine-tuned from .*a\.keras; this command names .*b\.keras"):
        check_one_pretraining({"0": str(first)}, second, tmp_path)


def test_a_given_pretraining_keys_a_run_by_its_model_not_the_profiles_pretraining_recipe(cache, tmp_path):
    """With --pretrained the profile's ``train.pretrain_*`` trains nothing: changing it neither renames the
    run nor stops its resume, while another pretrained model (not another path to the same one) renames it."""
    from vacnn_tf.training.run_dirs import finetune_dir, finetune_key, prepare_run_dir, run_key

    cfg = tiny(cache, tmp_path)
    first, copy_of_first, second = tmp_path / "a.keras", tmp_path / "copy.keras", tmp_path / "b.keras"
    first.write_bytes(b"weights a")
    copy_of_first.write_bytes(b"weights a")
    second.write_bytes(b"weights b")
    longer = replace(cfg, **{"train.pretrain_epochs": 60, "train.pretrain_decay_every": 20})
    assert run_key(longer) != run_key(cfg)  # pretraining here: the recipe is the run's
    assert run_key(longer, first) == run_key(cfg, first) == run_key(cfg, copy_of_first)
    assert len({run_key(cfg), run_key(cfg, first), run_key(cfg, second)}) == 3
    assert run_key(replace(cfg, **{"train.epochs": 3}), first) != run_key(cfg, first)  # fine-tuning's own recipe is keyed
    assert finetune_dir(longer, "emodb", "finetuned", first) == finetune_dir(cfg, "emodb", "finetuned", first)
    assert finetune_dir(cfg, "emodb", "finetuned", first) != finetune_dir(cfg, "emodb", "finetuned")
    path, _ = prepare_run_dir(tmp_path / "run", cfg, key=finetune_key(first))
    (path / "fold_0").mkdir()
    assert prepare_run_dir(path, longer, resume=True, key=finetune_key(first)) == (path, False)
    with pytest.raises(RunExistsError, match="another configuration"):
        prepare_run_dir(path, longer, resume=True)
    with pytest.raises(FileNotFoundError, match="No pretrained model"):
        run_key(cfg, tmp_path / "missing")


def test_class_weights_reach_a_fine_tunings_training_batches_only(cache, tmp_path):
    """``train.class_weight=balanced``: the training part's batches carry each sample's weight from the fold's
    own class counts; validation and test are scored unweighted, and a pretraining's recipe drops it."""
    import dataclasses

    from vacnn_tf.datasets.folds import make_folds
    from vacnn_tf.datasets.loading import load_corpus
    from vacnn_tf.datasets.pipeline import balanced_class_weights
    from vacnn_tf.training.stage import _datasets

    cfg = tiny(cache, tmp_path, **{"train.class_weight": "balanced"})
    data = load_corpus(cfg, "emodb")
    keep = np.concatenate([np.flatnonzero(data.y == 0), np.flatnonzero(data.y != 0)[::2]])  # class 0 whole, the rest halved
    fold = make_folds(data.table, cfg.protocol, cfg.seed, cfg.train.val_fraction, corpus="emodb")[0]
    fold = dataclasses.replace(fold, train=np.intersect1d(fold.train, keep))
    expected = balanced_class_weights(data.y[fold.train], len(data.classes))
    assert len(set(np.round(expected, 4))) > 1
    train, val, test = _datasets(cfg, data, fold, None, seed=1, bs=4)
    for _, y, w in train(0):
        np.testing.assert_allclose(np.asarray(w), expected[np.asarray(y)], rtol=1e-6)
    assert len(next(iter(val))) == 2 and len(next(iter(test))) == 2
    train, _, _ = _datasets(tiny(cache, tmp_path), data, fold, None, seed=1, bs=4)
    assert len(next(iter(train(0)))) == 2
