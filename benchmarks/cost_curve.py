"""The cost curve: how the wall time of a cross-validation grows with corpus size and with workers.

Usage (from the repository root, environment installed, on an otherwise idle machine)::

    .venv/bin/python benchmarks/cost_curve.py --json cost-curve.json     # 250, 500, 1000, 2000 utterances x 1, 2 workers
    .venv/bin/python benchmarks/cost_curve.py --sizes 35,70 --epochs 1 --image-size 64   # smoke run, minutes

One measurement is one fresh process, ``vacnn finetune --target emodb --variant pure --protocol
paper``, on the synthetic EmoDB corpus with about N utterances (round(N / 7) per class, EmoDB having
7 classes; the count printed is the one the run read, from its
``folds.json``), trained briefly (``--epochs``, 2 by default, no early stopping) on the first two
of five folds (``protocol.max_folds=2``, so that two workers get one fold each), with
``--jobs W`` for each W of ``--workers``. Each measurement starts cold in a folder of its own
(its own ``out`` and ``data.cache_dir``), so log-mel extraction, the KAZE descriptors, the BOVW
vocabulary, training and evaluation are all inside the timed wall, as is the start of Python and
TensorFlow; it runs pinned to ``--cores`` CPU cores (2 by default) with feature extraction on as
many processes (``data.workers``), as on a machine with that many cores. The synthetic audio is
generated before the clock starts (the time it took is printed beside the figures, not in them):
only the EmoDB tree is written, into a data root of its own that the run reads with
``--data-root``, as it reads a user's corpus.
Sizes below 32 are refused: five stratified folds need five utterances of each class.

Printed: the CPU model, then per (utterances, workers) the wall time, seconds per 1000
utterances, the wall time against the fewest workers at that size and against the previous size
with the same workers, as plain text and as a Markdown table for docs/performance.md. ``--json``
also writes every figure, each run's stage times (``manifest.json``'s ``stages_seconds``, which
add up over workers) and the machine. The exit status is 1 when a run fails (its log's end is
printed). Figures are printed, never asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vacnn_tf.bench import machine_info, pinned  # noqa: E402
from vacnn_tf.config import load_config  # noqa: E402
from vacnn_tf.corpora.labels import classes_for  # noqa: E402
from vacnn_tf.corpora.synth import generate, plan  # noqa: E402

TARGET = "emodb"
FOLDS, MAX_FOLDS = 5, 2
PATIENCE = 10_000  # no early stopping: every run trains exactly --epochs epochs per fold


def int_list(text: str) -> list[int]:
    """``"250,500"`` -> ``[250, 500]`` (for argparse)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers. Received: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers. Received: {text!r}")
    return values


def per_class_for(size: int) -> int:
    """Synthetic utterances per class for about ``size`` EmoDB utterances."""
    return max(1, round(size / len(classes_for(TARGET))))


def smallest_size() -> int:
    """The smallest ``--sizes`` value that gives every class one utterance per fold."""
    return next(n for n in range(1, 10_000) if per_class_for(n) >= FOLDS)


def overrides(folder: Path, size: int, args: argparse.Namespace) -> list[str]:
    """The ``--set`` texts of one measurement: its own folders, a fixed short training."""
    return [
        f"out={folder / 'runs'}",
        f"data.cache_dir={folder / 'cache'}",
        # Left at 0 the extractors start os.cpu_count() processes, every core of the machine
        # rather than the pinned ones.
        f"data.workers={args.cores}",
        f"features.image_size={args.image_size}",
        f"train.epochs={args.epochs}",
        f"train.patience={PATIENCE}",
        "train.verbose=2",
        f"protocol.folds={FOLDS}",
        f"protocol.max_folds={MAX_FOLDS}",
    ]


def write_corpus(folder: Path, size: int) -> float:
    """Generate the synthetic EmoDB tree of ``size`` into ``folder``; returns the seconds it took."""
    start = time.perf_counter()
    generate(folder, per_class=per_class_for(size), seed=load_config().seed, corpora=(TARGET,))
    return time.perf_counter() - start


def finetune_command(data_root: Path, run_dir: Path, workers: int, sets: list[str]) -> list[str]:
    command = [sys.executable, "-m", "vacnn_tf", "finetune", "--target", TARGET, "--variant", "pure",
               "--protocol", "paper", "--data-root", str(data_root), "--out", str(run_dir), "--jobs", str(workers)]
    for text in sets:
        command += ["--set", text]
    return command


def measure(folder: Path, corpus: Path, size: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One cold ``vacnn finetune`` in ``folder``; its wall time, utterance count and outcome."""
    folder.mkdir(parents=True)
    sets = overrides(folder, size, args)
    run_dir, log_path = folder / "run", folder / "log.txt"
    command = pinned(finetune_command(corpus, run_dir, workers, sets), args.cores)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # cwd is the measurement's folder, so nothing the run writes lands in the repository.
        status = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    return {"requested": size, "per_class": per_class_for(size), "workers": workers, "wall_s": round(wall, 2),
            "exit": status, "utterances": utterances(run_dir), "stages_s": stage_seconds(run_dir),
            "log": str(log_path)}


def utterances(run_dir: Path) -> Optional[int]:
    """The number of files the run split into folds (None when it wrote no folds.json)."""
    path = run_dir / "folds.json"
    return int(json.loads(path.read_text())["files"]) if path.is_file() else None


def stage_seconds(run_dir: Path) -> dict[str, float]:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text()).get("stages_seconds", {}) if path.is_file() else {}


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Per result: seconds per 1000 utterances, wall against the fewest workers at its size and
    against the previous size with its workers (None where there is nothing to compare)."""
    ok = {(r["requested"], r["workers"]): r for r in results if r["exit"] == 0 and r["utterances"]}
    sizes = sorted({r["requested"] for r in results})
    fewest = min(r["workers"] for r in results)
    for r in results:
        r["s_per_1000"] = r["vs_fewest_workers"] = r["vs_previous_size"] = None
        if (r["requested"], r["workers"]) not in ok:
            continue
        r["s_per_1000"] = round(1000 * r["wall_s"] / r["utterances"], 1)
        base = ok.get((r["requested"], fewest))
        if base is not None and r["workers"] != fewest:
            r["vs_fewest_workers"] = round(r["wall_s"] / base["wall_s"], 2)
        index = sizes.index(r["requested"])
        previous = ok.get((sizes[index - 1], r["workers"])) if index else None
        if previous is not None:
            r["vs_previous_size"] = round(r["wall_s"] / previous["wall_s"], 2)
            r["utterances_vs_previous"] = round(r["utterances"] / previous["utterances"], 2)


def _cells(r: dict[str, Any], fewest: int) -> list[str]:
    def num(value: Optional[float], fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    growth = "-"
    if r["vs_previous_size"] is not None:
        growth = f"{r['vs_previous_size']:.2f}x (utterances {r['utterances_vs_previous']:.2f}x)"
    wall = f"{r['wall_s']:.1f}" if r["exit"] == 0 else f"FAILED (exit {r['exit']})"
    count = num(r["utterances"], "d") if r["utterances"] else f"{r['requested']} requested"
    return [count, str(r["workers"]), wall, num(r["s_per_1000"], ".1f"),
            num(r["vs_fewest_workers"], ".2f") + ("x" if r["vs_fewest_workers"] is not None else ""), growth]


def headers(fewest: int) -> list[str]:
    return ["utterances", "workers", "wall s", "s / 1000 utt.", f"vs {fewest} worker{'s' * (fewest != 1)}",
            "vs previous size"]


def text_table(results: list[dict[str, Any]]) -> str:
    fewest = min(r["workers"] for r in results)
    rows = [headers(fewest)] + [_cells(r, fewest) for r in results]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def markdown_table(results: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    fewest = min(r["workers"] for r in results)
    lines = [f"`benchmarks/cost_curve.py --sizes {','.join(map(str, args.sizes))} --workers "
             f"{','.join(map(str, args.workers))} --epochs {args.epochs} --image-size {args.image_size}`: "
             f"{info['cpu']}, pinned to {args.cores} cores; `vacnn finetune --target emodb --variant pure`, "
             f"{MAX_FOLDS} of {FOLDS} folds, {args.epochs} epoch(s) each, {args.image_size}x{args.image_size} images, "
             f"cold caches, synthetic corpus generated beforehand (not timed).", "",
             "| " + " | ".join(headers(fewest)) + " |", "|" + "---:|" * len(headers(fewest))]
    lines += ["| " + " | ".join(_cells(r, fewest)) + " |" for r in results]
    return "\n".join(lines)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the figures are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int_list, default=[250, 500, 1000, 2000], help="utterances (default 250,500,1000,2000)")
    p.add_argument("--workers", type=int_list, default=[1, 2], help="--jobs values (default 1,2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per fold (default 2)")
    p.add_argument("--cores", type=int, default=2, help="CPU cores each run is pinned to (default 2)")
    p.add_argument("--image-size", type=int, default=224, help="log-mel image side (default 224, the paper's)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures here")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="keep every run's folder (runs, caches, logs) under DIR, a new folder")
    args = p.parse_args(argv)
    problems = check_args(args)
    if problems:
        p.error("; ".join(problems))
    return args


def check_args(args: argparse.Namespace) -> list[str]:
    """What is wrong with the options, found before any run starts."""
    problems = []
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not 1 <= args.cores <= available:
        problems.append(f"--cores must be between 1 and {available}. Received: --cores {args.cores}")
    if max(args.workers) > args.cores:  # vacnn finetune refuses more workers than cores
        problems.append(f"--workers may not exceed --cores {args.cores}. Received: --workers {args.workers}")
    for size in args.sizes:
        try:
            plan(TARGET, per_class_for(size))
        except ValueError as err:
            problems.append(f"--sizes {size}: {err}")
        if per_class_for(size) < FOLDS:  # stratified folds need one utterance of each class per fold
            problems.append(f"--sizes {size}: {per_class_for(size)} utterances per class, fewer than the {FOLDS} "
                            f"folds need; the smallest size is {smallest_size()}")
    if args.epochs < 1:
        problems.append(f"--epochs must be at least 1. Received: --epochs {args.epochs}")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        problems.append(f"--keep {args.keep} is not empty: every run must start cold")
    try:
        load_config(None, [f"features.image_size={args.image_size}"])
    except Exception as err:  # the config's own message names the allowed sizes
        problems.append(str(err))
    return problems


def run_all(base: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for size in args.sizes:
        corpus = base / f"corpus-{size}"
        seconds = write_corpus(corpus, size)
        print(f"{size} utterances requested ({per_class_for(size)} per class): corpus generated in {seconds:.1f} s "
              "(not timed)", flush=True)
        for workers in args.workers:
            result = measure(base / f"n{size}-w{workers}", corpus, size, workers, args)
            result["corpus_generation_s"] = round(seconds, 2)
            results.append(result)
            report_run(result)
        shutil.rmtree(corpus)
    return results


def report_run(result: dict[str, Any]) -> None:
    stages = ", ".join(f"{name} {s:.1f}" for name, s in result["stages_s"].items())
    count = result["utterances"] or f"{result['requested']} requested"
    print(f"  {count} utterances, {result['workers']} worker(s): {result['wall_s']:.1f} s, "
          f"exit status {result['exit']}" + (f"; stages (s, summed over workers): {stages}" if stages else ""),
          flush=True)
    if result["exit"] != 0:
        print(Path(result["log"]).read_text()[-3000:], flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    print(f"CPU: {info['cpu']} ({info['cores']} visible, pinned to {args.cores}); load {info['load_average_1_5_15']}"
          + (" (the machine is not idle: the wall times overstate)" if info["load_average_1_5_15"][0] > 0.5 else ""),
          flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run_all(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="vacnn-cost-curve-") as tmp:
            results = run_all(Path(tmp), args)
    if args.keep is None:  # their folders are gone
        for r in results:
            r.pop("log")
    add_ratios(results)
    print("\n" + text_table(results) + "\n\n" + markdown_table(results, info, args))
    failed = [r for r in results if r["exit"] != 0]
    if args.json:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        write_json_atomic(args.json, {"machine": {**info, "load_average_end": machine_info()["load_average_1_5_15"]},
                                      "settings": {**settings, "folds": FOLDS, "max_folds": MAX_FOLDS},
                                      "results": results})
    for r in failed:
        where = f"see {r['log']}" if "log" in r else "its log's end is printed above"
        print(f"PROBLEM: {r['requested']} utterances, {r['workers']} worker(s) exited {r['exit']}: {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
