"""The reproduce.tableN modules on the demo profile at a tiny size: files, rows, columns."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reproduce import paper
from reproduce.tables import PERCENT, PROPORTION, SPECS, UNITS

TINY = ["--set", "data.synth_per_class=4", "--set", "protocol.folds=2", "--set", "protocol.max_folds=1",
        "--set", "train.epochs=1", "--set", "train.pretrain_epochs=1", "--set", "train.verbose=0",
        "--set", "features.image_size=64", "--set", "train.jobs=1"]


# Built in CI: one VACNN pretraining and one fine-tuning (RAVDESS) serve all three. The rest of
# Tables 2-9 (a CBAM pretraining and eight more fine-tunings) is the slow fixture's.
CI_TABLES = ("table2", "table4", "table7")


def _build(out: Path, tables: tuple[str, ...]) -> Path:
    from reproduce import all as reproduce_all

    assert reproduce_all.main(["--out", str(out), *TINY], tables=tables) == 0
    return out


@pytest.fixture(scope="module")
def results(module_tmp) -> Path:
    """Tables 2, 4 and 7 built once."""
    return _build(module_tmp / "results", CI_TABLES)


@pytest.fixture(scope="module")
def full_results(module_tmp) -> Path:
    """Tables 2-9 built once (one VACNN pretraining, one VACNN-CBAM pretraining, 9 runs)."""
    from reproduce import all as reproduce_all

    return _build(module_tmp / "full_results", tuple(t for t in reproduce_all.TABLES if t != "table10"))


def test_all_with_force_clears_the_shared_runs_once_and_no_table_forces_them_again(tmp_path: Path, monkeypatch):
    from reproduce import all as reproduce_all
    from reproduce import common

    cleared, forced = [], []
    monkeypatch.setattr(common, "clear_runs", lambda config, needs, seeds: cleared.append([n.key for n in needs]))

    def fake_run_needs(config, needs, force=False, seeds=()):
        forced.append(force)
        return [common.Outcome(n, missing=("not run in this test",), seeds=tuple(seeds)) for n in needs]

    monkeypatch.setattr(common, "run_needs", fake_run_needs)
    reproduce_all.main(["--out", str(tmp_path / "res"), "--force", *TINY], tables=("table3", "table10"))
    assert len(cleared) == 2 and "finetuned" in cleared[0] and "vacnn_bovw" in cleared[1]
    assert forced == [False, False]  # cleared above; a table forcing again would retrain the shared runs


def _built(request: pytest.FixtureRequest, name: str) -> Path:
    return request.getfixturevalue("results" if name in CI_TABLES else "full_results")


def _slow_unless_ci(name: str, *values):
    """A parameter of a test over built tables: slow where the table needs the full grid."""
    return pytest.param(*(values or (name,)), marks=() if name in CI_TABLES else pytest.mark.slow)


def _csv(path: Path) -> pd.DataFrame:
    assert path.is_file(), path
    return pd.read_csv(path)


def _markdown_ok(path: Path) -> str:
    text = path.read_text()
    assert text.startswith("# Table") and "DEMO PROFILE" in text and "paper_" in text
    assert "| dataset" in text
    return text


# the figures a table compares with the paper's (paper_<figure> beside each); "ours"/"paper" in Tables 7-9
FIGURES = ("accuracy", "uar", "precision", "recall", "f1", "ours")


def _assert_units(df: pd.DataFrame, units: str) -> None:
    """Ours and the paper's figures within 0-100 (percent) or 0-1 (proportion); a paper's column
    in percent above 1 throughout, so a proportion left unconverted fails."""
    top = 100.0 if units == PERCENT else 1.0
    columns = [c for c in df.columns if c.removeprefix("paper_") in FIGURES or c == "paper"]
    assert columns, list(df.columns)
    for column in columns:
        values = df[column].dropna()
        assert values.between(0, top).all(), (column, values.tolist())
        if units == PERCENT and column.startswith("paper_"):
            assert values.gt(1).all(), (column, values.tolist())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_table_module_is_its_spec(name: str):
    """``reproduce.<name>`` runs its spec; the spec's paper keys name numbers in reproduce/paper.py."""
    from reproduce import all as reproduce_all

    spec, module = SPECS[name], importlib.import_module(f"reproduce.{name}")
    assert module.needs is spec.needs and callable(module.main) and module.render == spec.render
    assert spec.units in UNITS and name in reproduce_all.TABLES
    for key in spec.paper:
        attribute, item = re.fullmatch(r'(\w+)(?:\["(\w+)"\])?', key).groups()
        numbers = getattr(paper, attribute)
        assert numbers[item] if item else numbers, key
    number = int(name.removeprefix("table"))
    dataset = next((d for d, n in {**paper.TABLE_PRF_NUMBER, **paper.CONFUSION_TABLE_NUMBER}.items() if n == number), None)
    if dataset:  # the paper's numbering of Tables 4-9 and the registry agree
        assert spec.paper == ((f'TABLE_PRF["{dataset}"]',) if number < 7 else (f'CONFUSION["{dataset}"]',))
    assert tuple(reproduce_all.TABLES) == tuple(SPECS)


@pytest.mark.parametrize("name", [_slow_unless_ci(n) for n in SPECS if n != "table10"])
def test_every_built_table_is_in_its_units(request: pytest.FixtureRequest, name: str):
    _assert_units(_csv(_built(request, name) / f"{name}.csv"), SPECS[name].units)


def test_per_class_figures_are_percent_like_the_papers(tmp_path: Path):
    """A run's pooled precision of 0.5 is rendered 50 beside the paper's 77 (Table 4, angry)."""
    from reproduce.common import Need, Outcome

    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    classes = [c for c in paper.TABLE_PRF["ravdess"] if c != "average"]
    (run / "metrics" / "per_class_pooled.csv").write_text(
        ",precision,recall,f1\n" + "".join(f"{c},0.5,0.25,0.125\n" for c in [*classes, "macro avg"]))
    spec = SPECS["table4"]
    spec.render(_tiny_config(tmp_path), [Outcome(Need("vacnn_bovw", "ravdess"), run_dir=run)], tmp_path / "res")
    angry = _csv(tmp_path / "res" / "table4.csv").set_index("class").loc["angry"]
    assert (angry["precision"], angry["recall"], angry["f1"]) == (50.0, 25.0, 12.5)
    assert (angry["paper_precision"], angry["delta_precision"]) == (77.0, -27.0)
    assert spec.units == PERCENT and SPECS["table7"].units == PROPORTION


def test_table2_names_its_random_hold_out_under_the_speaker_protocol(tmp_path: Path):
    """The pretraining is scored on a random hold-out whatever --protocol says: not "speaker"."""
    from reproduce.common import Need, Outcome
    from vacnn_tf.config import ProtocolConfig, replace

    config = replace(_tiny_config(tmp_path), protocol=ProtocolConfig(name="speaker"))
    SPECS["table2"].render(config, [Outcome(Need("vacnn", "pretrain", "pretrain"), missing=("not run",))],
                           tmp_path / "res")
    assert set(_csv(tmp_path / "res" / "table2.csv")["protocol"]) == {"random hold-out"}
    notes = (tmp_path / "res" / "table2.md").read_text()
    assert "protocol: random hold-out" in notes and "not a speaker-independent figure" in notes


def test_a_single_fold_has_no_spread_in_the_tables(tmp_path: Path):
    from reproduce.common import summary_of

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "summary.csv").write_text("fold,accuracy,uar\nfold_0,0.5,0.4\nmean,0.5,0.4\nstd,0.0,0.0\n")
    one = summary_of(tmp_path)
    assert one["accuracy"] == 50.0 and np.isnan(one["accuracy_std"]) and np.isnan(one["uar_std"])
    (tmp_path / "metrics" / "summary.csv").write_text(
        "fold,accuracy,uar\nfold_0,0.5,0.4\nfold_1,0.7,0.6\nmean,0.6,0.5\nstd,0.1414,0.1414\n")
    assert summary_of(tmp_path)["accuracy_std"] == pytest.approx(14.14)


def test_table2_pretraining(results: Path):
    df = _csv(results / "table2.csv")
    assert list(df["class"])[:-1] == list(paper.TABLE2_PRF)
    assert {"precision", "recall", "f1", "paper_precision", "paper_recall", "paper_f1", "profile"} <= set(df.columns)
    assert df["precision"].notna().all() and (df["status"] == "ok").all()
    assert df.iloc[-1]["paper_precision"] == paper.TABLE2_ACCURACY
    _markdown_ok(results / "table2.md")


@pytest.mark.slow
def test_table3_variants(full_results: Path):
    df = _csv(full_results / "table3.csv")
    assert len(df) == 9
    assert set(zip(df["dataset"], df["method"])) == {(t, v) for t in paper.TARGETS for v in ("pure", "finetuned", "cbam")}
    for col in ("accuracy", "uar", "accuracy_std", "paper_accuracy", "delta", "protocol", "profile"):
        assert col in df.columns
    assert df["accuracy"].between(0, 100).all()
    assert np.allclose(df["delta"], df["accuracy"] - df["paper_accuracy"])
    _markdown_ok(full_results / "table3.md")


def _finetuned_runs(results: Path) -> dict[str, Path]:
    """Target -> run folder of the fine-tuned VACNN + BOVW the CI build trained (RAVDESS)."""
    runs = {o["run_dir"] for o in json.loads((results / "index.json").read_text())["tables"]["table4"]["runs"].values()}
    return {Path(r).parts[-3]: Path(r) for r in runs if r and "/finetuned-vacnn-bovw" in r}


def _outcomes_with(needs, key: str, finetuned: dict[str, Path]) -> list:
    """One outcome per need: the finished run where ``key`` and target match, the rest marked not run."""
    from reproduce.common import Outcome

    return [Outcome(need, run_dir=finetuned[need.target]) if need.key == key and need.target in finetuned
            else Outcome(need, missing=("not run in this test",)) for need in needs]


def test_table3_renders_a_finished_run_and_marks_the_rest(results: Path, tmp_path: Path):
    """Table 3 from the one fine-tuning CI trains: its row measured, the eight others marked."""
    spec, config = SPECS["table3"], _tiny_config(tmp_path)
    spec.render(config, _outcomes_with(spec.needs(config), "finetuned", _finetuned_runs(results)), tmp_path / "res")
    df = _csv(tmp_path / "res" / "table3.csv").set_index(["dataset", "method"])
    assert len(df) == 9 and df["paper_accuracy"].notna().all()
    assert df["accuracy"].notna().sum() == 1 and 0 <= df.loc[("ravdess", "finetuned"), "accuracy"] <= 100
    _assert_units(df.reset_index(), spec.units)


@pytest.mark.parametrize("number, dataset", [_slow_unless_ci(f"table{n}", n, d) for n, d in [(4, "ravdess"), (5, "emodb"), (6, "savee")]])
def test_per_class_tables(request: pytest.FixtureRequest, number: int, dataset: str):
    results = _built(request, f"table{number}")
    df = _csv(results / f"table{number}.csv")
    assert list(df["class"]) == list(paper.TABLE_PRF[dataset])
    assert df[["precision", "recall", "f1"]].notna().all().all()
    _markdown_ok(results / f"table{number}.md")


@pytest.mark.parametrize("number, dataset", [_slow_unless_ci(f"table{n}", n, d) for n, d in [(7, "ravdess"), (8, "emodb"), (9, "savee")]])
def test_confusion_tables(request: pytest.FixtureRequest, number: int, dataset: str):
    results = _built(request, f"table{number}")
    df = _csv(results / f"table{number}.csv")
    n = len(paper.CONFUSION_CLASSES[dataset])
    assert len(df) == n * n
    sums = df.groupby("true")["ours"].sum()
    assert np.allclose(sums[sums > 0], 1.0)
    png = results / f"table{number}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _markdown_ok(results / f"table{number}.md")


def test_results_index(results: Path):
    index = json.loads((results / "index.json").read_text())
    assert set(CI_TABLES) <= set(index["tables"])
    entry = index["tables"]["table4"]
    assert entry["profile"] == "demo" and entry["versions"]["tensorflow"]
    readme = (results / "README.md").read_text()
    assert "## table4" in readme and "Caveats of the `paper` protocol" in readme


def test_table10_rows_and_columns(results: Path):
    """Table 10's rendering with every (dataset, method) row; baselines not run here are marked so.

    Training Inception v3 and ResNet50V2 on a CPU takes longer than the CI budget allows: the
    full demo run of Table 10 is the slow test below.
    """
    from reproduce import table10
    from reproduce.common import make_config, parser

    config = make_config(parser("").parse_args(["--out", str(results), *TINY]))
    table10.render(config, _outcomes_with(table10.needs(config), "vacnn_bovw", _finetuned_runs(results)), results)
    df = _csv(results / "table10.csv")
    ours = df[df["method"].isin(list(paper.TABLE10_METHODS))]
    assert len(ours) == 15
    for col in ("dataset", "method", "accuracy", "uar", "accuracy_std", "paper_accuracy", "delta", "protocol", "profile"):
        assert col in df.columns
    linear = df[df["method"] == table10.LINEAR]
    assert list(linear["dataset"]) == list(paper.TARGETS) and linear["paper_accuracy"].isna().all()
    cited = df[~df["method"].isin([*paper.TABLE10_METHODS, table10.LINEAR])]
    assert len(cited) == sum(len(v) for v in paper.TABLE10_LITERATURE.values())
    assert cited["accuracy"].isna().all() and (cited["status"] == "cited from the paper, not rerun").all()
    measured = ours[ours["accuracy"].notna()]
    assert list(zip(measured["dataset"], measured["method"])) == [("ravdess", "vacnn_bovw")]
    _assert_units(df, SPECS["table10"].units)


def test_missing_corpora_are_named(tmp_path: Path):
    from reproduce import table5

    (tmp_path / "data" / "emodb").mkdir(parents=True)
    code = table5.main(["--data-root", str(tmp_path / "data"), "--profile", "quick", "--out", str(tmp_path / "res")])
    assert code == 1
    df = _csv(tmp_path / "res" / "table5.csv")
    assert df["status"].str.contains("corpora missing under --data-root: tess, ravdess").all()
    assert df["precision"].isna().all()


@pytest.mark.slow
def test_table10_demo_end_to_end(tmp_path: Path):
    """The README's main job as a user runs it (several minutes on 2 cores)."""
    from reproduce import table10

    assert table10.main(["--out", str(tmp_path)]) == 0
    df = _csv(tmp_path / "table10.csv")
    ours = df[df["method"].isin(list(paper.TABLE10_METHODS))]
    assert len(ours) == 15 and ours["accuracy"].notna().all()


def _tiny_config(out: Path, *flags: str):
    from reproduce.common import make_config, parser

    return make_config(parser("").parse_args(["--out", str(out), *TINY, *flags]))


def test_a_set_for_the_whole_table_cannot_relabel_a_row(tmp_path: Path):
    """``--set model.use_bovw=false`` must not turn the row labelled VACNN + BOVW into a model without BOVW."""
    from reproduce import table3, table10
    from vacnn_tf.config import replace
    from vacnn_tf.training.run_dirs import finetune_dir

    default = _tiny_config(tmp_path)
    changed = _tiny_config(tmp_path, "--set", "model.use_bovw=false", "--set", "model.architecture=resnet")
    for module in (table3, table10):
        for a, b in zip(module.needs(default), module.needs(changed)):
            if a.variant == "finetuned" and a.key in ("vacnn_bovw", "finetuned", "cbam", "vacnn"):
                pinned = replace(changed, **dict(b.overrides))
                assert pinned.model.use_bovw == (a.key != "vacnn") and pinned.model.architecture.startswith("vacnn")
                assert finetune_dir(pinned, b.target, b.variant) == \
                    finetune_dir(replace(default, **dict(a.overrides)), a.target, a.variant)


def test_table10_grid_counts_22_trainings_and_a_finished_one_as_done(tmp_path: Path):
    """4 pretrainings (VACNN + BOVW shares the VACNN's), 15 one-fold fine-tunings, 3 linear references."""
    from reproduce import table10
    from reproduce.common import plan_needs
    from vacnn_tf.training.progress import Progress
    from vacnn_tf.training.run_dirs import mark_done

    config = _tiny_config(tmp_path)
    units = plan_needs(config, table10.needs(config), (config.seed,), force=False)
    progress = Progress(units, emit=None)
    assert (progress.total, progress.done) == (22, 0)
    assert [u.label for u in units[:4]] == [*(f"fit linear + BOVW on {t}, fold 1/1" for t in ("ravdess", "emodb", "savee")),
                                            "pretrain inception on TESS + RAVDESS"]
    assert units[-1].label == "fine-tune vacnn + BOVW on savee, fold 1/1"
    for unit in units[3:5]:  # a resumed grid: the Inception pretraining and its RAVDESS fold are there
        mark_done(unit.key)
    resumed = Progress(plan_needs(config, table10.needs(config), (config.seed,), force=False), emit=None)
    assert (resumed.total, resumed.done) == (22, 2)
    forced = Progress(plan_needs(config, table10.needs(config), (config.seed,), force=True), emit=None)
    assert forced.done == 1  # --force redoes the fine-tunings and reuses the pretrainings


def test_the_finished_table_is_printed_with_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """The terminal shows the table's own numbers (read back from its files) and where they are."""
    from reproduce import common, table10

    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / "summary.csv").write_text(",accuracy,uar\nfold_0,0.625,0.6\nmean,0.625,0.6\nstd,,\n")

    def fake_run_needs(config, needs, force=False, seeds=()):
        return [common.Outcome(n, run_dir=run, seeds=tuple(seeds)) if n.key == "vacnn_bovw"
                else common.Outcome(n, missing=("not run in this test",), seeds=tuple(seeds)) for n in needs]

    monkeypatch.setattr(common, "run_needs", fake_run_needs)
    assert table10.main(["--out", str(tmp_path / "res"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "Table 10: methods compared (demo profile, protocol paper; SYNTHETIC CORPUS" in out
    header = next(line for line in out.splitlines() if line.startswith("| dataset"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "dataset", "label", "accuracy", "uar", "paper_accuracy", "delta", "status"]
    bovw_savee = next(line for line in out.splitlines() if "| savee" in line and "VACNN + BOVW" in line)
    assert "62.50" in bovw_savee and "60.00" in bovw_savee and "75.00" in bovw_savee  # ours, UAR, the paper's
    for name in ("table10.csv", "table10.md", "index.json"):
        assert f"{tmp_path / 'res' / name}" in out
