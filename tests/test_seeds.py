"""Seeds and the seed ensemble: arithmetic on hand-made runs, refusals, the CLI, the reproduce flags."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.cli import main
from vacnn_tf.config import load_config, to_yaml
from vacnn_tf.evaluation.metrics import fold_metrics, predictions_frame, sample_std
from vacnn_tf.storage import write_json, write_text
from vacnn_tf.training.run_dirs import mark_done
from vacnn_tf.training.seeds import SeedRunsError, seed_report, write_seed_report

CLASSES = ["angry", "happy", "sad"]
TRUE = {"u1": 0, "u2": 1, "u3": 2, "u4": 0}
# Three seeds, each with its own two folds, scoring 2/4, 1/4 and 2/4; their averaged probabilities
# get all four right, so the ensemble differs from every single seed.
SEEDS = {
    1: [{"u1": [.40, .60, 0], "u2": [0, .90, .10]}, {"u3": [.20, .20, .60], "u4": [.45, 0, .55]}],
    2: [{"u1": [.90, .10, 0], "u3": [0, .60, .40]}, {"u2": [.60, .40, 0], "u4": [.45, .55, 0]}],
    3: [{"u1": [.45, 0, .55], "u4": [.90, .10, 0]}, {"u2": [0, .40, .60], "u3": [.05, .05, .90]}],
}


def fake_run(root: Path, seed: int, folds: Sequence[dict[str, list[float]]], overrides: Sequence[str] = (),
             variant: str = "finetuned", done: bool = True) -> Path:
    """A finished fine-tuning run's files, as finetuning.finetune writes them, from given probabilities."""
    from vacnn_tf.training.finetuning import RunSummary

    config = load_config(overrides=[f"seed={seed}", "data.data_root=/data", *overrides])
    run = root / f"{variant}-s{seed}-{len(list(root.glob('*')))}"
    write_text(run / "config.yaml", to_yaml(config))
    per_fold = []
    for k, fold in enumerate(folds):
        paths = [f"/data/emodb/{u}.wav" for u in fold]
        y = np.array([TRUE[u] for u in fold])
        probs = np.array(list(fold.values()), dtype=float)
        (run / f"fold_{k}").mkdir()
        predictions_frame(paths, y, probs, CLASSES).to_csv(run / f"fold_{k}" / "predictions.csv", index=False)
        metrics = fold_metrics(y, probs.argmax(axis=1), CLASSES)
        per_fold.append({"fold": k, "accuracy": metrics["accuracy"], "uar": metrics["uar"], "test": len(fold),
                         "test_speakers": [], "best_epoch": 1, "epochs_run": 1})
    acc = [f["accuracy"] for f in per_fold]
    uar = [f["uar"] for f in per_fold]
    summary = RunSummary(run_dir=str(run), target="emodb", variant=variant, protocol=config.protocol.name,
                         architecture=config.model.architecture, use_bovw=config.model.use_bovw, classes=CLASSES,
                         folds=per_fold, accuracy_mean=float(np.mean(acc)), accuracy_std=sample_std(acc),
                         uar_mean=float(np.mean(uar)), uar_std=sample_std(uar))
    write_json(run / "summary.json", asdict(summary))
    if done:
        mark_done(run)
    return run


@pytest.fixture()
def three(tmp_path: Path) -> list[Path]:
    return [fake_run(tmp_path, seed, folds) for seed, folds in SEEDS.items()]


def test_spread_over_seeds_and_folds(three: list[Path]):
    report = seed_report(three)
    fold_acc = {1: [.5, .5], 2: [.5, 0.0], 3: [.5, .5]}
    assert report.seeds == (1, 2, 3)
    assert [r.accuracy for r in report.runs] == pytest.approx([.5, .25, .5])
    # seed 2: fold {u1 right, u3 wrong} has UAR (1 + 0) / 2, fold {u2, u4 both wrong} 0
    assert report.runs[1].uar == pytest.approx(.25)
    assert report.accuracy_mean == pytest.approx(1.25 / 3)
    assert report.accuracy_std == pytest.approx(statistics.stdev([.5, .25, .5]))
    assert report.accuracy_fold_std == pytest.approx(statistics.stdev([a for v in fold_acc.values() for a in v]))
    assert [r.utterances for r in report.runs] == [4, 4, 4]


def test_the_ensemble_differs_from_every_seed(three: list[Path]):
    report = seed_report(three)
    ens = report.ensemble
    assert (ens.runs, ens.utterances, ens.tested_by_any, ens.complete, ens.coverage) == (3, 4, 4, True, "")
    assert ens.accuracy == 1.0 and ens.uar == 1.0 and ens.macro_f1 == 1.0
    assert all(r.accuracy < ens.accuracy for r in report.runs)
    table = report.predictions.set_index("path")
    # u1: angry (.40 + .90 + .45) / 3 against happy (.60 + .10 + 0) / 3
    assert table.loc["/data/emodb/u1.wav", "prob_angry"] == pytest.approx(1.75 / 3)
    assert list(table["pred"]) == ["angry", "happy", "sad", "angry"]
    assert list(table["pred_seed_2"]) == ["angry", "angry", "happy", "happy"]


def test_partial_runs_ensemble_what_all_tested(tmp_path: Path):
    runs = [fake_run(tmp_path, 1, [{"u1": [.9, .1, 0], "u2": [0, .9, .1]}], ["protocol.max_folds=1"]),
            fake_run(tmp_path, 2, [{"u1": [0, 1, 0], "u3": [0, 0, 1]}], ["protocol.max_folds=1"])]
    report = seed_report(runs)
    ens = report.ensemble
    assert (ens.utterances, ens.tested_by_any, ens.complete) == (1, 3, False)
    assert ens.coverage == "over 1 of 3 utterances, those all 2 runs tested"
    assert ens.accuracy == 0.0  # u1 (angry): angry (.9 + 0) / 2 against happy (.1 + 1) / 2
    assert [r.accuracy for r in report.runs] == [1.0, 0.5]


def test_no_common_utterance(tmp_path: Path):
    runs = [fake_run(tmp_path, 1, [{"u1": [1, 0, 0]}]), fake_run(tmp_path, 2, [{"u2": [0, 1, 0]}])]
    ens = seed_report(runs).ensemble
    assert (ens.utterances, ens.tested_by_any) == (0, 2)
    assert np.isnan(ens.accuracy) and ens.coverage == "no utterance was tested by all 2 runs (2 tested by some)"
    assert seed_report(runs).as_dict()["ensemble"]["accuracy"] is None  # JSON has no NaN
    synthetic = [fake_run(tmp_path, seed, [{u: [1, 0, 0]}], ["data.data_root=null"]) for seed, u in ((1, "u1"), (2, "u2"))]
    assert "the synthetic corpus is generated from the seed" in seed_report(synthetic).ensemble.coverage


@pytest.mark.parametrize("kind, message", [
    ("epochs", "train.epochs=3 (not 4); only `seed` may differ"),
    ("variant", "variant='pure' (not 'finetuned')"),
    ("seed", "seed 1 again"),
    ("unfinished", "not a finished fine-tuning run"),
    ("missing", "no such run directory"),
])
def test_refuses_runs_of_another_recipe(tmp_path: Path, kind: str, message: str):
    first = fake_run(tmp_path, 1, SEEDS[1], ["train.epochs=4"])
    other = {
        "epochs": lambda: fake_run(tmp_path, 2, SEEDS[2], ["train.epochs=3"]),
        "variant": lambda: fake_run(tmp_path, 2, SEEDS[2], ["train.epochs=4"], variant="pure"),
        "seed": lambda: fake_run(tmp_path, 1, SEEDS[2], ["train.epochs=4"]),
        "unfinished": lambda: fake_run(tmp_path, 2, SEEDS[2], ["train.epochs=4"], done=False),
        "missing": lambda: tmp_path / "nowhere",
    }[kind]()
    with pytest.raises(SeedRunsError) as err:
        seed_report([first, other])
    text = str(err.value)
    assert text.startswith(f"{other}: ") and message in text and "\n" not in text


def test_neutral_settings_and_paths_may_differ(tmp_path: Path):
    runs = [fake_run(tmp_path, 1, SEEDS[1], ["train.verbose=0", "out=a"]), fake_run(tmp_path, 2, SEEDS[2], ["out=b"])]
    assert seed_report(runs).seeds == (1, 2)


def test_write_seed_report(three: list[Path], tmp_path: Path):
    json_path, csv_path = write_seed_report(seed_report(three), tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["over_seeds"]["n"] == 3 and data["over_folds"]["n"] == 6
    assert data["ensemble"]["accuracy"] == 1.0 and data["ensemble"]["utterances"] == 4
    assert "ours, not the paper's" in data["ensemble"]["note"]
    assert [s["seed"] for s in data["seeds"]] == [1, 2, 3]
    table = pd.read_csv(csv_path)
    assert len(table) == 4 and {"path", "label", "pred", "prob_angry", "pred_seed_1"} <= set(table.columns)


# --- the CLI -----------------------------------------------------------------------------------

def test_cli_table(three: list[Path], tmp_path: Path, capsys):
    assert main(["seeds", *map(str, three), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("emodb finetuned vacnn + BOVW, protocol paper, 3 classes")
    assert [line.split()[:2] for line in out[2:5]] == [["1", "2"], ["2", "2"], ["3", "2"]]
    assert out[5].startswith("mean +- sd over 3 seeds: accuracy 0.4167 +- 0.1443")
    assert out[6].startswith("seed ensemble (3 runs, 4 utterances): accuracy 1.0000")
    assert (tmp_path / "out" / "seeds.json").is_file() and (tmp_path / "out" / "ensemble_predictions.csv").is_file()


def test_cli_json(three: list[Path], capsys):
    assert main(["seeds", *map(str, three), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ensemble"]["runs"] == 3


def test_cli_refusal_is_one_line_exit_2(three: list[Path], tmp_path: Path, capsys):
    other = fake_run(tmp_path, 4, SEEDS[1], ["train.epochs=3"])
    assert main(["seeds", str(three[0]), str(other)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"vacnn seeds: error: {other}: another recipe")
    with pytest.raises(SystemExit) as exit_:
        main(["seeds"])
    assert exit_.value.code == 2


# --- reproduce --seeds / --ensemble ---------------------------------------------------------------

def test_reproduce_table_over_two_seeds_with_ensemble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Table 3's machinery over seeds 1 and 2, on one row run with the linear reference (seconds,
    no TensorFlow training: what is tested is the seeds' bookkeeping, not a network).

    The corpus is generated once and passed as --data-root: the synthetic default is generated
    from the seed, so two seeds would share no utterance to ensemble.
    """
    from reproduce import table3
    from reproduce.common import Need
    from vacnn_tf.corpora.synth import generate

    generate(tmp_path / "data", per_class=4, seed=0, corpora=("emodb",))
    monkeypatch.setattr(table3, "needs", lambda config: [Need("pure", "emodb", "linear")])
    out = tmp_path / "results"
    tiny = ["--set", "protocol.folds=2", "--set", "train.epochs=1", "--set", "train.verbose=0"]
    assert table3.main(["--data-root", str(tmp_path / "data"), "--profile", "paper", "--out", str(out),
                        "--seeds", "1,2", "--ensemble", *tiny]) == 0
    table = pd.read_csv(out / "table3.csv")
    assert list(table["label"]) == ["Pure VACNN + BOVW", "Pure VACNN + BOVW (seed ensemble)"]
    row, ens = table.iloc[0], table.iloc[1]
    runs = json.loads((out / "index.json").read_text())["tables"]["table3"]
    assert runs["seeds"] == [1, 2] and runs["seed"] == 1
    run_dirs = runs["runs"]["pure/emodb"]["run_dirs"]
    summaries = [json.loads((Path(r) / "summary.json").read_text()) for r in run_dirs]
    assert [s["run_dir"] for s in summaries] == run_dirs and "-s1-" in run_dirs[0] and "-s2-" in run_dirs[1]
    means = [100 * s["accuracy_mean"] for s in summaries]
    assert row["accuracy"] == pytest.approx(np.mean(means)) and row["n_seeds"] == 2
    assert row["accuracy_std"] == pytest.approx(statistics.stdev(means))
    report = seed_report(run_dirs)
    # two folds per seed: every utterance tested once by each seed, so the ensemble covers the corpus
    assert ens["utterances"] == report.runs[0].utterances == report.runs[1].utterances
    assert ens["status"] == "ok" and ens["accuracy"] == pytest.approx(100 * report.ensemble.accuracy)
    assert np.isnan(ens["accuracy_std"])
    text = (out / "table3.md").read_text()
    assert "standard deviation over seeds" in text and "ours, not the paper's" in text
    assert "seeds 1, 2" in (out / "README.md").read_text()
    # one seed: the table as it always was, the same run reused
    assert table3.main(["--data-root", str(tmp_path / "data"), "--profile", "paper", "--out", str(out),
                        "--seed", "1", *tiny]) == 0
    single = pd.read_csv(out / "table3.csv")
    assert list(single.columns) == ["dataset", "method", "label", "accuracy", "uar", "accuracy_std", "uar_std",
                                    "paper_accuracy", "delta", "protocol", "profile", "status"]
    assert len(single) == 1 and single["accuracy"][0] == pytest.approx(100 * summaries[0]["accuracy_mean"])
    assert single["accuracy_std"][0] == pytest.approx(100 * summaries[0]["accuracy_std"])
    assert "seeds:" not in (out / "table3.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1,x"], "seeds are integers separated by commas"),
    (["--seeds", "1,1"], "each seed once"),
    (["--seed", "1", "--seeds", "1,2"], "not allowed with argument --seed"),
    (["--ensemble"], "--ensemble averages over seeds: give two or more with --seeds"),
    (["--seeds", "3", "--ensemble"], "give two or more"),
])
def test_reproduce_seed_flags_usage_errors(argv: list[str], message: str, tmp_path: Path, capsys):
    from reproduce import table3

    with pytest.raises(SystemExit) as exit_:
        table3.main([*argv, "--out", str(tmp_path / "results")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "results").exists()
