"""Workers sharing a grid: --shard and --jobs, pretrainings before their folds, and the table they
assemble, the same as one process's (the linear reference on the synthetic corpus: no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.training.claims import Claims, UnitsHeld
from vacnn_tf.training.workers import (Shard, check_worker_options, child_argv, split_cores, until_done, visible_gpus,
                                      without_shard)


def test_shard_takes_i_of_n():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("4/4", "-1/2", "1", "a/b"):
        with pytest.raises(argparse.ArgumentTypeError, match="i/N"):
            Shard.parse(bad)


def test_cores_are_split_into_contiguous_shares():
    assert split_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert split_cores([4, 5], 2) == [[4], [5]]
    with pytest.raises(ValueError, match="a core per worker"):
        split_cores([0, 1], 3)


def test_worker_flags_that_do_not_fit_are_named():
    args = argparse.Namespace(jobs=2, shard=Shard(0, 2), force=False)
    assert "give one of them" in check_worker_options(args)
    args = argparse.Namespace(jobs=1, shard=Shard(0, 2), force=True)
    assert "--force with --shard" in check_worker_options(args)
    assert check_worker_options(argparse.Namespace(jobs=4, shard=None, force=True)) is None


def test_the_worker_count_is_the_flag_else_the_config_within_the_cores(monkeypatch: pytest.MonkeyPatch):
    from vacnn_tf.training import workers

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the cores decide
    monkeypatch.setattr(workers, "usable_cores", lambda: [0, 1])
    assert workers.jobs_for(3, 2, sharded=False) == 3  # a flag is taken as given (and checked where it is used)
    assert workers.jobs_for(None, 2, sharded=False) == 2
    assert workers.jobs_for(None, 8, sharded=False) == 2  # no more than the cores
    assert workers.jobs_for(None, 2, sharded=True) == 1  # a shard is one worker
    assert workers.jobs_for(None, 1, sharded=False) == 1
    monkeypatch.setattr(workers, "usable_cores", lambda: [0])
    assert workers.jobs_for(None, 2, sharded=False) == 1
    monkeypatch.setattr(workers, "usable_cores", lambda: list(range(16)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert workers.jobs_for(None, 2, sharded=False) == 1  # one GPU: one worker


def test_the_demo_profile_trains_on_two_workers_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch):
    from reproduce.common import checked_config, parser
    from vacnn_tf.training import workers

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(workers, "usable_cores", lambda: [0, 1])
    for argv, jobs in [([], 2), (["--jobs", "1"], 1), (["--set", "train.jobs=1"], 1), (["--shard", "0/2"], 1)]:
        cli = parser("")
        args = cli.parse_args(argv)
        assert checked_config(cli, args).train.jobs == (1 if "train.jobs=1" in argv else 2)
        assert args.jobs == jobs, argv


def test_a_worker_runs_the_command_without_force_as_its_shard():
    argv = ["--out", "res", "--force", "--jobs", "2"]
    assert child_argv(argv, Shard(1, 2)) == ["--out", "res", "--jobs", "2", "--jobs", "1", "--shard", "1/2"]
    assert without_shard(["--out", "res", "--shard", "1/2", "--jobs=3"]) == ["--out", "res"]


def test_each_worker_runs_on_its_share_of_the_cores_and_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]):
    import json
    import sys

    from vacnn_tf.training.workers import run_jobs, usable_cores

    cores = usable_cores()
    jobs = min(2, len(cores))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    report = "import json, os, sys; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'], " \
             "os.environ['CUDA_VISIBLE_DEVICES']]), file=open(sys.argv[1], 'w'))"
    codes = run_jobs(lambda shard: [sys.executable, "-c", report, str(tmp_path / f"{shard.index}.json")], jobs)
    assert codes == [0] * jobs
    seen = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(jobs)]
    assert [s[0] for s in seen] == split_cores(cores, jobs) and [s[2] for s in seen] == ["3", "5"][:jobs]
    assert all(s[1] == str(len(s[0])) for s in seen)
    assert "starting shard 0/%d on cores" % jobs in capsys.readouterr().out


def test_gpus_are_counted_by_the_backend_the_workers_train_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys
    import types

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # JAX is asked in a child process: a fake jax package on its path reports two GPUs and a CPU.
    fake = tmp_path / "jax"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "class _D:\n    def __init__(self, p): self.platform = p\n"
        "def devices(): return [_D('gpu'), _D('gpu'), _D('cpu')]\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # the backend is read from the environment
    assert visible_gpus() == ["0", "1"]
    (fake / "__init__.py").write_text("raise ImportError('no jax here')\n")
    assert visible_gpus() == []
    # PyTorch counts without a CUDA context; a fake module stands in for it.
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(device_count=lambda: 3))
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1")  # a mask set by the scheduler wins
    assert visible_gpus() == ["2"]


def test_more_workers_than_cores_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]):
    from reproduce import table3

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the cores decide
    with pytest.raises(SystemExit) as exit_:
        table3.main(["--out", str(tmp_path), "--jobs", "999"])
    assert exit_.value.code == 2
    assert "--jobs 999 needs a core per worker" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing started


def test_a_shard_stops_when_the_rest_is_held_and_waits_when_it_can_help():
    naps: list[float] = []
    held = iter([UnitsHeld(["fold"], waiting=True), UnitsHeld(["fold"], waiting=False)])

    def step() -> str:
        raise next(held)

    assert until_done(step, shard=Shard(0, 2), poll=5, sleep=naps.append, note=lambda _: None) is None
    assert naps == [5]  # waited once, for the pretraining its fold needed
    answers = iter([UnitsHeld(["fold"], waiting=False), "done"])

    def assemble() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert until_done(assemble, shard=None, poll=1, sleep=naps.append, note=lambda _: None) == "done"


def test_a_planned_pretraining_names_the_run_a_worker_trains_for_it(fake_emodb, tmp_path: Path):
    """Workers take pretrainings first, from the plan: its held-out speakers give back its directory."""
    from vacnn_tf.training.progress import plan_finetune
    from vacnn_tf.training.run_dirs import pretrain_dir

    config = replace(RunConfig(), **{"out": str(tmp_path), "protocol.name": "speaker", "protocol.folds": 2,
                                     "protocol.ravdess_actor_groups": 2, "model.use_bovw": False})
    pretrainings = [u for u in plan_finetune(config, "ravdess", "finetuned") if u.pretraining]
    assert len({u.key for u in pretrainings}) == 2 and all(u.exclude for u in pretrainings)
    assert [str(pretrain_dir(config, dict(u.exclude))) for u in pretrainings] == [u.key for u in pretrainings]


def test_a_fold_waits_for_the_pretraining_another_worker_holds(fake_emodb, tmp_path: Path):
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.run_dirs import finetune_dir, pretrain_dir

    config = replace(RunConfig(), **{"out": str(tmp_path), "protocol.folds": 2, "model.use_bovw": False,
                                     "train.verbose": 0})
    with Claims("other") as other, Claims("me") as me:
        assert other.claim(pretrain_dir(config))
        with pytest.raises(UnitsHeld) as held:
            finetune(config, "emodb", variant="finetuned", resume=True, claims=me)
        assert held.value.waiting  # the folds are free: this worker takes them once the pretraining is done
        run = finetune_dir(config, "emodb", "finetuned")
        assert {p.name for p in run.iterdir()} >= {"config.yaml", "folds.json"} and not list(run.glob("fold_*"))


def test_a_worker_trains_the_free_folds_and_leaves_the_held_one(fake_emodb, tmp_path: Path):
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.run_dirs import finetune_dir
    from vacnn_tf.training.run_dirs import is_done

    config = replace(RunConfig(), **{"out": str(tmp_path), "protocol.folds": 3, "model.use_bovw": False})
    run = finetune_dir(config, "emodb", "linear")
    with Claims("other") as other, Claims("me") as me:
        assert other.claim(run / "fold_1")
        with pytest.raises(UnitsHeld) as held:
            finetune(config, "emodb", variant="linear", resume=True, claims=me)
        assert not held.value.waiting
        assert is_done(run / "fold_0") and is_done(run / "fold_2") and not (run / "fold_1").exists()
        assert not (run / "summary.json").exists()
        other.release(run / "fold_1", finished=False)
        summary = finetune(config, "emodb", variant="linear", resume=True, claims=me)
    assert is_done(run) and len(summary.folds) == 3


# --- a whole table from shards, against one process ----------------------------------------------

LINEAR = ["--set", "data.synth_per_class=3", "--set", "protocol.folds=2", "--set", "protocol.max_folds=null",
          "--set", "model.use_bovw=false", "--set", "train.verbose=0", "--set", "data.workers=1", "--set", "train.jobs=1"]


def _linear_needs(config: RunConfig) -> list:
    """Table 3's EmoDB rows, each the linear reference at another strength: 3 runs, 6 folds, no network."""
    from reproduce.common import Need

    return [Need(key, "emodb", "linear", {"model.linear_c": c}) for key, c in (("pure", 0.1), ("finetuned", 1.0),
                                                                              ("cbam", 10.0))]


def _table(out: Path, cache: Path, *flags: str) -> int:
    from reproduce import table3
    from reproduce.common import main_for

    return main_for("table3", "", _linear_needs, table3.render, ["--out", str(out), *LINEAR,
                                                                  "--set", f"data.cache_dir={cache}", *flags])


def test_shards_then_assembling_give_the_single_process_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]):
    from reproduce.common import make_config, parser
    from vacnn_tf.training.run_dirs import finetune_dir
    from vacnn_tf.training.run_dirs import is_done

    monkeypatch.setattr("vacnn_tf.training.run_dirs.package_versions", lambda: {})
    monkeypatch.setattr("vacnn_tf.evaluation.metrics.plot_confusion", lambda *a, **k: None)  # figures are not the point
    cache = tmp_path / "cache"
    assert _table(tmp_path / "single", cache) == 0
    single = (tmp_path / "single" / "table3.csv").read_text()
    capsys.readouterr()

    out = tmp_path / "sharded"
    config = make_config(parser("").parse_args(["--out", str(out), *LINEAR, "--set", f"data.cache_dir={cache}"]))
    runs = [finetune_dir(replace(config, **dict(n.overrides)), n.target, n.variant) for n in _linear_needs(config)]
    with Claims("shard 1/2") as busy:  # shard 1 is training two folds while shard 0 runs
        assert busy.claim(runs[0] / "fold_1") and busy.claim(runs[2] / "fold_0")
        assert _table(out, cache, "--shard", "0/2") == 0
        first = capsys.readouterr().out
        assert "shard 0/2: 1 of 3 runs finished, 2 left to other workers" in first
        assert "writes the table: python -m reproduce.table3 --out" in first and "--shard" not in first.split("writes")[-1]
        assert not (out / "table3.csv").exists()  # a shard writes no table
        assert not (runs[0] / "fold_1").exists() and is_done(runs[0] / "fold_0")
    # shard 1 "crashed": its claims were released; the next shard picks the two folds up
    assert _table(out, cache, "--shard", "1/2") == 0
    second = capsys.readouterr().out
    assert second.count("fit linear on") == 2
    assert _table(out, cache) == 0
    assert "fit linear on" not in capsys.readouterr().out  # assembling trains nothing
    assert (out / "table3.csv").read_text() == single
    assert all(is_done(r) for r in runs) and not list(out.rglob(".*.claims"))


# --- Table 3 with networks, in separate processes (slow) -------------------------------------------

TINY = ["--set", "data.synth_per_class=4", "--set", "protocol.folds=2", "--set", "protocol.max_folds=1",
        "--set", "train.epochs=1", "--set", "train.pretrain_epochs=1", "--set", "train.verbose=0",
        "--set", "features.image_size=64", "--set", "train.jobs=1"]


def _started(output: str) -> list[str]:
    """The trainings a worker's progress lines say it started."""
    import re

    return re.findall(r"\brun \d+/\d+: (.+) \(elapsed", output)


@pytest.mark.slow
def test_table3_from_two_shards_and_from_jobs_is_the_single_process_table(tmp_path: Path):
    """Table 3 on the synthetic corpus (2 pretrainings, 9 one-fold runs) from one process, from two
    ``--shard`` processes at once followed by the assembling command, and from ``--jobs 2``."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    # one thread everywhere: a --jobs worker has one core of two, and oneDNN's sums may differ by thread count
    common = [*TINY, "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.intra_op_threads=1"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    def table3(out: str, *flags: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "reproduce.table3", "--out", str(tmp_path / out), *common, *flags],
                                cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finished(process: subprocess.Popen[str]) -> str:
        output = process.communicate(timeout=3600)[0]
        assert process.returncode == 0, output[-3000:]
        return output

    single = finished(table3("single"))
    assert len(_started(single)) == 11
    shards = [table3("sharded", "--shard", f"{k}/2") for k in range(2)]
    trained = [_started(finished(p)) for p in shards]
    assert all(trained) and sorted(trained[0] + trained[1]) == sorted(_started(single))  # each unit once
    assert not _started(finished(table3("sharded")))
    jobs = finished(table3("jobs", "--jobs", "2"))
    assert sorted(_started(jobs)) == sorted(_started(single))
    expected = (tmp_path / "single" / "table3.csv").read_text()
    assert (tmp_path / "sharded" / "table3.csv").read_text() == expected
    assert (tmp_path / "jobs" / "table3.csv").read_text() == expected


# --- the caches, filled once before the workers start ---------------------------------------------

def test_what_a_run_reads_is_cached_once_before_workers_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``--jobs`` fills the log-mel and KAZE caches first, so that no worker computes them again."""
    from vacnn_tf.datasets.loading import load_corpus
    from vacnn_tf.features import kaze, logmel
    from vacnn_tf.features.bovw import descriptors_for
    from vacnn_tf.storage import bovw_cache_dir
    from vacnn_tf.training.caches import cache_needs, fill_caches

    config = replace(RunConfig(), **{"data.cache_dir": str(tmp_path / "cache"), "data.synth_per_class": 2,
                                     "features.image_size": 64, "data.workers": 1, "train.verbose": 0})
    needs = cache_needs(config, "emodb", "finetuned")
    assert [(n.corpus, n.descriptors) for n in needs] == [("emodb", True), ("tess", False), ("ravdess", False)]
    given = cache_needs(config, "emodb", "finetuned", pretrained="PRETRAIN_RUN")
    assert [(n.corpus, n.descriptors) for n in given] == [("emodb", True)]  # no pretraining to run: TESS is not read
    assert [n.corpus for n in cache_needs(config, "pretrain", "pretrain")] == ["tess", "ravdess"]
    assert fill_caches(needs + given, note=lambda _: None) == 3  # the same rendering twice is filled once

    def computed(*args: object) -> object:
        if args[1]:  # _compute_all(names, todo, ...) with files to compute; extract_descriptors(image, ...)
            raise AssertionError("computed again: the cache was not filled")
        return iter(())

    monkeypatch.setattr(logmel, "_compute_all", computed)
    monkeypatch.setattr(kaze, "extract_descriptors", computed)
    for name in ("tess", "ravdess"):
        assert len(load_corpus(config, name).images) >= 14  # 2 per class, read back
    emodb = load_corpus(config, "emodb")
    assert len(descriptors_for(emodb.images, config.bovw, cache_dir=bovw_cache_dir(config), progress=False)) == 14


# --- the one pretraining of a fine-tuning run, before its workers ----------------------------------

def test_jobs_train_the_one_shared_pretraining_on_every_core_before_the_workers(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    """A lone pretraining left to the workers would run on one core while the other waits for it."""
    import subprocess

    from vacnn_tf.cli import main
    from vacnn_tf.config import load_config
    from vacnn_tf.training import workers
    from vacnn_tf.training.run_dirs import is_done, pretrain_dir

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(workers, "usable_cores", lambda: [0, 1])
    commands, pretrained_first = [], []

    real_run = subprocess.run

    def child(command: list[str], *args: object, **kwargs: object) -> subprocess.CompletedProcess:
        if list(command[1:3]) != ["-m", "vacnn_tf"]:  # git and the like
            return real_run(command, *args, **kwargs)
        commands.append(command[3:])  # run in this process: the same command, without a second TensorFlow start
        return subprocess.CompletedProcess(command, main(command[3:]))

    def jobs(command: object, count: int) -> list[int]:  # the workers find nothing left to do before this
        pretrained_first.append(is_done(pretrain_dir(config)))
        return [0] * count

    monkeypatch.setattr(subprocess, "run", child)
    monkeypatch.setattr(workers, "run_jobs", jobs)
    flags = ["--out", str(tmp_path / "run"), *TINY, "--set", f"out={tmp_path / 'runs'}", "--set", "model.use_bovw=false",
             "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.workers=1"]
    config = load_config(None, flags[3::2])  # what the command's --set flags make of it
    assert main(["finetune", "--target", "emodb", "--jobs", "2", *flags]) == 0
    assert [c[:2] for c in commands] == [["pretrain", "--config"]] and commands[0][-1] == "--resume"
    assert pretrained_first == [True]
    # found finished, it is not started again; a RAVDESS target under `speaker` leaves its pretrainings to the workers
    from vacnn_tf.training.progress import plan_finetune
    from vacnn_tf.training.workers import pretrain_before_workers

    def planned(cfg: RunConfig, target: str) -> list:
        return [(cfg, unit) for unit in plan_finetune(cfg, target)]

    monkeypatch.setattr(subprocess, "run", lambda command, *a, **k: commands.append(command[3:]) or
                        subprocess.CompletedProcess(command, 0))
    assert pretrain_before_workers(planned(config, "emodb"), 2) == []
    other = replace(config, **{"protocol.name": "speaker", "train.pretrain_epochs": 2})  # a pretraining not made yet
    assert pretrain_before_workers(planned(other, "ravdess"), 2) == []
    assert len(commands) == 1
    # EmoDB is not pretrained on: under `speaker` too its folds share one pretraining
    assert pretrain_before_workers(planned(other, "emodb"), 2) == [str(pretrain_dir(other))]
    assert len(commands) == 2


def test_only_pretrainings_fewer_than_the_workers_go_first(monkeypatch: pytest.MonkeyPatch):
    """As many pending pretrainings as workers keep every worker busy; fewer would leave cores idle."""
    import subprocess

    from vacnn_tf.training.progress import Unit
    from vacnn_tf.training.workers import pretrain_before_workers

    config = RunConfig()
    started: list[list[str]] = []
    codes = iter([0, 1, 0])
    monkeypatch.setattr(subprocess, "run", lambda command, *a, **k: started.append(command) or
                        subprocess.CompletedProcess(command, next(codes)))

    def pretraining(key: str, done: bool = False, exclude: tuple = ()) -> tuple[RunConfig, Unit]:
        return config, Unit(key, f"pretraining {key}", done=done, pretraining=True, exclude=exclude)

    fold = (config, Unit("run/fold_0", "fold 0"))
    # one pending pretraining (twice in the grid: two runs share it), one finished: trained first
    assert pretrain_before_workers([pretraining("a"), fold, pretraining("a"), pretraining("b", done=True)], 2) == ["a"]
    assert len(started) == 1 and started[0][-4:-2] == ["pretrain", "--config"] and started[0][-1] == "--resume"
    # as many as the workers: theirs
    assert pretrain_before_workers([pretraining("a"), pretraining("c")], 2) == []
    assert len(started) == 1
    # one that failed (exit 1) is left to the workers, the next still runs; one holding speakers out is theirs
    held_out = (("ravdess", ("01",)),)
    assert pretrain_before_workers([pretraining("a"), pretraining("c"), pretraining("d", exclude=held_out)], 4) == ["c"]
    assert len(started) == 3


def test_a_table_with_one_pretraining_trains_it_before_its_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tables 4-9 start from one pretraining per seed: ``--jobs`` hands every seed's units to the rule above."""
    from reproduce import common, table6
    from vacnn_tf.training import caches, workers

    handed: list[tuple[list, int]] = []
    monkeypatch.setattr(caches, "fill_caches", lambda needs, note: 0)
    monkeypatch.setattr(workers, "pretrain_before_workers", lambda planned, jobs, note: handed.append((planned, jobs)))
    monkeypatch.setattr(workers, "run_jobs", lambda command, jobs: [0] * jobs)
    config = replace(RunConfig(), **{"out": str(tmp_path / "runs"), "data.synth_per_class": 2, "protocol.folds": 2})
    args = argparse.Namespace(force=False, jobs=2)
    common.run_workers("reproduce.table6", [], args, [(config, table6.needs(config), (42, 43))])
    [(planned, jobs)] = handed
    assert jobs == 2
    pretrainings = {unit.key for _, unit in planned if unit.pretraining}
    assert len(pretrainings) == 2 and all(not unit.done for _, unit in planned)  # the seed is part of a pretraining's key
    assert sorted({cfg.seed for cfg, unit in planned if not unit.pretraining}) == [42, 43]
