"""Wall time of the main job, ``python -m reproduce.table10`` on the synthetic corpus, and what it learned.

Usage (from the repository root, environment installed, on an otherwise idle machine)::

    .venv/bin/python benchmarks/demo_wall_time.py                  # 3 runs, median against 10 minutes
    .venv/bin/python benchmarks/demo_wall_time.py --runs 1 --fresh-clone   # `make reproduce` in a fresh clone, install included

Each run starts cold, in a fresh folder of its own (its own runs, synthetic corpus and caches),
pinned to ``--cores`` CPU cores (2 by default). ``--fresh-clone`` instead clones this
repository's committed HEAD into a temporary folder and times ``make reproduce`` there, the
README's first command, virtual environment and install included (pip's wheel cache is used
as any machine would). Printed: the CPU model, each run's wall time, the median, and the
finished Table 10's rows (accuracy per target) with the demo's targets checked: both VACNN rows
at least 80% on every synthetic target and every row at least twice chance. The exit status
is 1 when a run fails, exceeds its budget or misses a target. Figures are printed, never
asserted by the test suite.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vacnn_tf.bench import machine_info, pinned  # noqa: E402
from vacnn_tf.corpora.labels import classes_for  # noqa: E402

VACNN_ROWS = ("VACNN + BOVW", "VACNN")
VACNN_FLOOR = 80.0


def one_run(folder: Path, cores: int, fresh_clone: bool) -> tuple[float, int, Path]:
    """Run the main job once in ``folder``; returns (wall seconds, exit status, table10.csv path)."""
    if fresh_clone:
        clone = folder / "vacnn-tf"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        command, cwd, table = ["make", "reproduce"], clone, clone / "results" / "table10.csv"
    else:
        out = folder / "results"
        command = [sys.executable, "-m", "reproduce.table10", "--out", str(out),
                   "--set", f"data.cache_dir={folder / 'cache'}"]
        cwd, table = ROOT, out / "table10.csv"
    start = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        status = subprocess.run(pinned(command, cores), cwd=cwd, stdout=log, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - start, status, table


def check_table(table: Path) -> list[str]:
    """Print the measured rows of Table 10; return the demo targets it misses."""
    misses = []
    with open(table, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("accuracy") not in ("", "nan", None)]
    for row in rows:
        target, label, acc = row["dataset"], row["label"], float(row["accuracy"])
        chance = 100.0 / len(classes_for(target))
        floor = VACNN_FLOOR if label in VACNN_ROWS else 2 * chance
        ok = acc >= floor
        print(f"  {target:8s} {label:14s} {acc:6.1f}%  (needs >= {floor:.1f}%){'' if ok else '  MISSED'}")
        if not ok:
            misses.append(f"{target} {label} {acc:.1f}% < {floor:.1f}%")
    if not rows:
        misses.append(f"no measured rows in {table}")
    return misses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--fresh-clone", action="store_true", help="time `make reproduce` in a fresh clone (install included)")
    p.add_argument("--budget-minutes", type=float, default=None, help="default 10, or 15 with --fresh-clone")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    args = p.parse_args(argv)
    budget = args.budget_minutes or (15.0 if args.fresh_clone else 10.0)
    info = machine_info()
    print(f"CPU: {info['cpu']} ({info['cores']} visible, pinned to {args.cores}); load {info['load_average_1_5_15']}")
    walls, failures = [], []
    for k in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="vacnn-demo-") as tmp:
            wall, status, table = one_run(Path(tmp), args.cores, args.fresh_clone)
            print(f"run {k + 1}/{args.runs}: {wall / 60:.2f} min, exit status {status}")
            if status != 0:
                failures.append(f"run {k + 1} exited {status}: see its log")
                print((Path(tmp) / "log.txt").read_text()[-3000:])
                continue
            walls.append(wall)
            failures += check_table(table)
    median = statistics.median(walls) if walls else float("nan")
    print(f"median wall {median / 60:.2f} min over {len(walls)} run(s); budget {budget:.0f} min")
    if walls and median > budget * 60:
        failures.append(f"median {median / 60:.2f} min over the {budget:.0f}-minute budget")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "walls_s": walls, "median_s": median,
                                               "fresh_clone": args.fresh_clone, "problems": failures}, indent=2))
    for problem in failures:
        print(f"PROBLEM: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
