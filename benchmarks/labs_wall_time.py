"""Wall time of each teaching lab, run as a student would, against the 15-minute budget.

Usage (from the repository root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/labs_wall_time.py                 # all four labs
    .venv/bin/python benchmarks/labs_wall_time.py --labs 2,3 --out labs-timing.json
    .venv/bin/python benchmarks/labs_wall_time.py --dry-run       # print what each lab runs

Each lab runs in a fresh folder of its own (so its caches start cold, the slowest case),
pinned to ``--cores`` CPU cores (2 by default, as the labs promise): its handout's
```` ```bash ```` blocks in one shell with ``$LAB_SET`` empty, exactly as a student runs them,
then its assignment: ``vacnn lab start``, the instructor's solution copied in as if the
student had written it, ``vacnn lab grade``. Printed per lab: the wall time, the CPU time of
every process it started (user + system) and whether it fits the budget. The exit status is
1 when a lab fails or exceeds ``--budget-minutes``. The figure is printed, never asserted by
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vacnn_tf.labs import LABS, assignment_dir, lab, solutions_dir  # noqa: E402
from vacnn_tf.labs.handouts import handout_path, lab_script  # noqa: E402


def assignment_script(number: int) -> str:
    """Start lab ``number``'s assignment, put the solution in, grade it."""
    folder = assignment_dir(number)
    module = lab(number).module
    solution = solutions_dir(number) / module
    return "\n".join([
        f"vacnn lab start {number} {folder}",
        f"cp {shlex.quote(str(solution))} {folder}/{module}",
        f"vacnn lab grade {number} {folder}",
    ])


def lab_commands(number: int) -> str:
    return lab_script(handout_path(number)) + "\n" + assignment_script(number) + "\n"


def pin(cores: int) -> list[int] | None:
    """Run this process and its children on ``cores`` of the CPUs it may use; returns them
    (None where the system cannot pin processes, as macOS: then every core is used)."""
    if not hasattr(os, "sched_setaffinity"):
        print(f"this system cannot pin processes to CPUs: running on all {os.cpu_count()} of them", file=sys.stderr)
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise SystemExit(f"--cores {cores}: only {len(allowed)} CPUs are available ({allowed})")
    chosen = allowed[:cores]
    os.sched_setaffinity(0, chosen)
    return chosen


def run_lab(number: int, workdir: Path, timeout: float) -> dict:
    """Run lab ``number`` in ``workdir``; returns its timings and outcome."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"  # `python -m reproduce...` as from the repo root
    env["LAB_SET"] = ""  # what a student has
    env["MPLBACKEND"] = "Agg"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", lab_commands(number)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, output = None, f"stopped after {timeout:.0f} s\n{err.stdout or ''}{err.stderr or ''}"
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (workdir / "lab-output.txt").write_text(output if isinstance(output, str) else str(output))
    return {"lab": number, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "exit": code,
            "output": str(workdir / "lab-output.txt")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", default=",".join(map(str, LABS)), help="comma-separated lab numbers (default: all)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to run on (default 2)")
    parser.add_argument("--budget-minutes", type=float, default=15.0, help="wall-time budget per lab (default 15)")
    parser.add_argument("--workdir", default=None, help="where the labs' folders go (default: a new temporary folder)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="print each lab's commands and exit")
    args = parser.parse_args()
    numbers = [lab(int(n)).number for n in args.labs.split(",")]
    if args.dry_run:
        for number in numbers:
            print(f"# ---- lab {number} ----\n{lab_commands(number)}")
        return 0
    cores = pin(args.cores)
    load = os.getloadavg()[0]
    print(f"running labs {numbers} on CPUs {cores}; load average {load:.2f}"
          + (" (the machine is not idle: the wall times overstate)" if load > 0.5 else ""), flush=True)
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vacnn-labs-timing-"))
    budget = args.budget_minutes * 60
    results = []
    for number in numbers:
        result = run_lab(number, base / f"lab{number}", timeout=4 * budget)
        result["within_budget"] = result["wall_s"] <= budget
        results.append(result)
        status = "ok" if result["exit"] == 0 else f"FAILED (exit {result['exit']}, see {result['output']})"
        print(f"lab {number}: wall {result['wall_s'] / 60:5.1f} min, CPU {result['cpu_s'] / 60:5.1f} min, "
              f"{'within' if result['within_budget'] else 'OVER'} {args.budget_minutes:g} min, {status}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"cores": cores, "load_average": load, "labs": results}, indent=2) + "\n")
    return 0 if all(r["exit"] == 0 and r["within_budget"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
